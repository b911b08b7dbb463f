"""Multi-label metrics checked against scikit-learn, and the thresholds chosen on val."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from cvkit.tasks.multilabel_metrics import average_precision, best_f1_threshold, multilabel_metrics


def _data(seed: int = 0, n: int = 200, k: int = 6):
    rng = np.random.default_rng(seed)
    truth = rng.random((n, k)) < np.linspace(0.05, 0.6, k)
    scores = np.clip(truth * 0.35 + rng.random((n, k)) * 0.7, 0, 1).round(2)  # ties on purpose
    return truth.astype(np.float32), scores


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_average_precision_matches_scikit_learn(seed):
    truth, scores = _data(seed)
    for k in range(truth.shape[1]):
        assert average_precision(truth[:, k], scores[:, k]) == pytest.approx(
            skm.average_precision_score(truth[:, k], scores[:, k]), abs=1e-12)
    assert average_precision(np.zeros(5), np.arange(5.0)) is None


def test_metrics_match_scikit_learn_at_the_thresholds():
    truth, scores = _data(3)
    thresholds = np.array([0.3, 0.4, 0.5, 0.5, 0.6, 0.7])
    got = multilabel_metrics(truth, scores, thresholds, [f"c{k}" for k in range(6)])
    predicted = scores >= thresholds
    assert got["map"] == pytest.approx(skm.average_precision_score(truth, scores, average="macro"))
    for avg in ("micro", "macro"):
        assert got[f"{avg}_f1"] == pytest.approx(skm.f1_score(truth, predicted, average=avg, zero_division=0))
        assert got[f"{avg}_precision"] == pytest.approx(skm.precision_score(truth, predicted, average=avg,
                                                                            zero_division=0))
        assert got[f"{avg}_recall"] == pytest.approx(skm.recall_score(truth, predicted, average=avg, zero_division=0))
    assert got["exact_match"] == pytest.approx(skm.accuracy_score(truth, predicted))
    assert got["hamming_loss"] == pytest.approx(skm.hamming_loss(truth, predicted))
    assert [row["support"] for row in got["per_class"]] == truth.sum(0).astype(int).tolist()


def test_the_val_threshold_maximizes_each_classes_f1():
    truth, scores = _data(4)
    for k in range(truth.shape[1]):
        t = best_f1_threshold(truth[:, k], scores[:, k])
        best = skm.f1_score(truth[:, k], scores[:, k] >= t)
        for other in np.unique(scores[:, k]):
            assert skm.f1_score(truth[:, k], scores[:, k] >= other, zero_division=0) <= best + 1e-12
    assert best_f1_threshold(np.zeros(4), np.arange(4.0)) == 0.5
