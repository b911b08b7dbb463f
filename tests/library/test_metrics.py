"""cvkit.tasks.metrics: classification metrics checked against scikit-learn, and the PNGs the plot functions write."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn import metrics as skm

from cvkit.tasks.metrics import classification_metrics, confusion_matrix, top_losses
from cvkit.plots import plot_confusion_matrix, plot_curves, plot_lr_find, plot_top_losses

# ----------------------------------------------------------------------------- inputs


def softmax_probs(rng: np.random.Generator, n: int, k: int, scale: float = 2.0) -> np.ndarray:
    logits = rng.normal(scale=scale, size=(n, k))
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def confident(predicted: np.ndarray, k: int, p: float = 0.9) -> np.ndarray:
    """Probabilities putting ``p`` on the predicted class and the rest evenly elsewhere."""
    probs = np.full((len(predicted), k), (1 - p) / (k - 1))
    probs[np.arange(len(predicted)), predicted] = p
    return probs


def random_case(n: int, k: int, seed: int):
    rng = np.random.default_rng(seed)
    return rng.integers(0, k, n), softmax_probs(rng, n, k)


def never_predicted():
    labels, probs = random_case(300, 4, 1)
    probs[:, 3] *= 1e-3  # class 3 is present but never the argmax
    return labels, probs / probs.sum(axis=1, keepdims=True)


def absent_from_labels():
    rng = np.random.default_rng(2)
    labels = rng.choice([0, 1, 3, 4, 5], 300)  # class 2 is predicted but never true
    return labels, softmax_probs(rng, 300, 6)


def absent_and_never_predicted():
    labels, probs = random_case(200, 7, 3)
    labels[labels == 6] = 0
    probs[:, 6] = 1e-6
    return labels, probs / probs.sum(axis=1, keepdims=True)


def perfect():
    labels = np.random.default_rng(4).integers(0, 6, 100)
    return labels, np.eye(6)[labels]


def tied_top():
    """Rows whose two best classes tie: the argmax tie goes to the lower index, as numpy's does."""
    rng = np.random.default_rng(5)
    labels, probs = rng.integers(0, 8, 200), softmax_probs(rng, 200, 8)
    best = np.argsort(-probs, axis=1)[:, :2]
    rows = np.arange(200)
    probs[rows, best[:, 1]] = probs[rows, best[:, 0]]
    return labels, probs / probs.sum(axis=1, keepdims=True)


CASES = {
    "random_k10": lambda: random_case(500, 10, 0),
    "k2": lambda: random_case(200, 2, 6),
    "k3_no_top5": lambda: random_case(200, 3, 7),
    "k5_top5": lambda: random_case(200, 5, 8),
    "never_predicted": never_predicted,
    "absent_from_labels": absent_from_labels,
    "absent_and_never_predicted": absent_and_never_predicted,
    "perfect": perfect,
    "tied_top": tied_top,
    "single_image": lambda: random_case(1, 6, 9),
}

# ----------------------------------------------------------------------------- metrics vs sklearn


def reference_ece(labels: np.ndarray, probs: np.ndarray, n_bins: int) -> float:
    confidence, predicted = probs.max(axis=1), probs.argmax(axis=1)
    edges = np.linspace(0, 1, n_bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (confidence > lo) & (confidence <= hi)
        if in_bin.any():
            gap = abs((predicted[in_bin] == labels[in_bin]).mean() - confidence[in_bin].mean())
            total += in_bin.mean() * gap
    return total


@pytest.mark.parametrize("case", CASES)
def test_metrics_match_sklearn(case):
    labels, probs = CASES[case]()
    k = probs.shape[1]
    classes = [f"class{i}" for i in range(k)]
    m = classification_metrics(labels, probs, classes)
    predicted = probs.argmax(axis=1)
    everything = list(range(k))
    approx = lambda x: pytest.approx(x, abs=1e-12)  # noqa: E731

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns about classes present in y_pred only
        assert m["balanced_accuracy"] == approx(skm.balanced_accuracy_score(labels, predicted))
    assert m["count"] == len(labels)
    assert m["accuracy"] == approx(skm.accuracy_score(labels, predicted))
    p, r, f, s = skm.precision_recall_fscore_support(labels, predicted, labels=everything, zero_division=0)
    assert [c["class"] for c in m["per_class"]] == classes
    assert [c["precision"] for c in m["per_class"]] == approx(list(p))
    assert [c["recall"] for c in m["per_class"]] == approx(list(r))
    assert [c["f1"] for c in m["per_class"]] == approx(list(f))
    assert [c["support"] for c in m["per_class"]] == list(s)
    macro = skm.precision_recall_fscore_support(labels, predicted, labels=everything, average="macro", zero_division=0)
    assert (m["macro_precision"], m["macro_recall"], m["macro_f1"]) == approx(macro[:3])
    # sklearn clips to [eps, 1 - eps] instead of [1e-15, 1]: equal unless some p_true < 1e-15
    assert m["log_loss"] == pytest.approx(skm.log_loss(labels, probs, labels=everything), abs=1e-9)
    if k >= 5:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # k == n_classes warns that the score is trivially 1
            assert m["top5_accuracy"] == approx(skm.top_k_accuracy_score(labels, probs, k=5, labels=everything))
    else:
        assert "top5_accuracy" not in m
    assert m["ece"] == approx(reference_ece(labels, probs, 15))
    assert classification_metrics(labels, probs, classes, n_bins=7)["ece"] == approx(reference_ece(labels, probs, 7))
    json.dumps(m, allow_nan=False)


def test_confusion_matrix_matches_sklearn():
    rng = np.random.default_rng(10)
    labels, predicted = rng.integers(0, 7, 400), rng.integers(0, 5, 400)
    matrix = confusion_matrix(labels, predicted, 9)
    assert matrix.dtype == np.int64 and matrix.shape == (9, 9)
    np.testing.assert_array_equal(matrix, skm.confusion_matrix(labels, predicted, labels=range(9)))
    assert matrix[3].sum() == (labels == 3).sum()  # rows are the true class
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        confusion_matrix(labels, predicted, 5)


def test_perfect_predictions():
    labels, probs = perfect()
    m = classification_metrics(labels, probs, list("abcdef"))
    assert m["accuracy"] == m["top5_accuracy"] == m["balanced_accuracy"] == m["macro_f1"] == 1.0
    assert m["log_loss"] == 0.0 and m["ece"] == 0.0 and m["most_confused"] == []


def test_log_loss_clips_zero_probability():
    labels = np.array([0, 1])
    probs = np.array([[0.0, 1.0], [0.0, 1.0]])  # the first image gets p_true = 0
    assert classification_metrics(labels, probs, ["a", "b"])["log_loss"] == pytest.approx(-math.log(1e-15) / 2)


def test_top5_ties_rank_like_argmax():
    """Exact ties at the top-5 boundary rank the lower class index first, as argmax does, so top-5 >= top-1.

    sklearn's top_k_accuracy_score ranks tied classes highest index first; we differ there on purpose.
    """
    probs = np.full((3, 10), 0.1)
    m = classification_metrics(np.array([0, 4, 5]), probs, [str(i) for i in range(10)])
    assert m["accuracy"] == pytest.approx(1 / 3)  # argmax of a uniform row is class 0
    assert m["top5_accuracy"] == pytest.approx(2 / 3)  # classes 0..4 are the top five
    rng = np.random.default_rng(11)
    labels, probs = rng.integers(0, 12, 500), rng.integers(0, 3, (500, 12)) + 1.0  # many ties
    probs /= probs.sum(axis=1, keepdims=True)
    p_true = probs[np.arange(500), labels][:, None]
    index = np.arange(12)
    rank = (probs > p_true).sum(axis=1) + ((probs == p_true) & (index < labels[:, None])).sum(axis=1)
    m = classification_metrics(labels, probs, [str(i) for i in range(12)])
    assert m["top5_accuracy"] == pytest.approx((rank < 5).mean())
    assert m["top5_accuracy"] >= m["accuracy"]


def test_most_confused_sorted_by_count_then_names():
    classes = ["zebra", "ant", "cat", "dog"]
    pairs = [(0, 1)] * 3 + [(1, 0)] * 3 + [(2, 1)] * 3 + [(3, 2)] + [(1, 2)] * 2 + [(i, i) for i in range(4)] * 5
    labels, predicted = np.array(pairs).T
    m = classification_metrics(labels, confident(predicted, 4), classes)
    assert m["most_confused"] == [
        {"true": "ant", "predicted": "zebra", "count": 3},
        {"true": "cat", "predicted": "ant", "count": 3},
        {"true": "zebra", "predicted": "ant", "count": 3},
        {"true": "ant", "predicted": "cat", "count": 2},
        {"true": "dog", "predicted": "cat", "count": 1},
    ]


def test_most_confused_keeps_top_ten():
    k = 6
    pairs = np.array([(t, p) for t in range(k) for p in range(k) if t != p] + [(5, 0)])
    classes = ["f", "e", "d", "c", "b", "a"]
    m = classification_metrics(pairs[:, 0], confident(pairs[:, 1], k), classes)
    got = [(c["true"], c["predicted"], c["count"]) for c in m["most_confused"]]
    assert got[0] == ("a", "f", 2)
    ones = sorted((classes[t], classes[p]) for t in range(k) for p in range(k) if t != p and (t, p) != (5, 0))
    assert got[1:] == [(t, p, 1) for t, p in ones[:9]]


def test_top_losses_worst_first_and_stable():
    probs = confident(np.array([0, 0, 0, 0, 0, 0]), 2, p=0.5)
    probs[:, 0] = [0.5, 0.1, 0.9, 0.1, 0.0, 0.5]
    probs[:, 1] = 1 - probs[:, 0]
    labels = np.zeros(6, dtype=int)
    np.testing.assert_array_equal(top_losses(labels, probs, 3), [4, 1, 3])
    np.testing.assert_array_equal(top_losses(labels, probs, 100), [4, 1, 3, 0, 5, 2])
    assert len(top_losses(labels, probs, 0)) == 0


def test_bad_inputs_are_refused():
    labels, probs = random_case(10, 3, 12)
    with pytest.raises(ValueError, match="3 columns but there are 2 class names"):
        classification_metrics(labels, probs, ["a", "b"])
    with pytest.raises(ValueError, match="empty"):
        classification_metrics(labels[:0], probs[:0], ["a", "b", "c"])
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        classification_metrics(labels + 3, probs, ["a", "b", "c"])


# ----------------------------------------------------------------------------- plots


def open_png(path):
    """The written PNG's pixel size, after checking it is the only file in its folder (no temp file left)."""
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    assert path.stat().st_size > 0
    with Image.open(path) as img:
        assert img.format == "PNG"
        img.load()
        return img.size


def test_import_does_not_load_matplotlib():
    code = "import sys, cvkit.evaluate; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("k", [2, 30])
def test_plot_confusion_matrix(tmp_path, k):
    rng = np.random.default_rng(k)
    labels = rng.integers(0, k, 20 * k)
    labels[labels == k - 1] = 0  # one class absent: its normalized row must not break the plot
    matrix = confusion_matrix(labels, rng.integers(0, k, 20 * k), k)
    path = tmp_path / "confusion.png"
    plot_confusion_matrix(matrix, [f"class_{i}" for i in range(k)], path)
    width, height = open_png(path)
    assert 300 < height < width < 4500


@pytest.mark.parametrize("channels", [1, 3])
def test_plot_top_losses(tmp_path, channels):
    rng = np.random.default_rng(channels)
    images = rng.integers(0, 256, (5, 24, 32, channels), dtype=np.uint8)
    path = tmp_path / "top_losses.png"
    plot_top_losses(images, [0, 1, 2, 0, 1], [1, 2, 0, 2, 0], rng.random(5), rng.random(5),
                    ["cat", "dog", "bird"], path, cols=4)
    width, height = open_png(path)
    assert 200 < width < 2000 and 200 < height < 2000


@pytest.mark.parametrize("columns", ["all", "val_nan", "no_val"])
def test_plot_curves(tmp_path, columns):
    frame = pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [2.0, 1.5, 1.2], "train_acc": [0.3, 0.5, 0.6],
                          "val_loss": [2.1, np.nan, 1.4], "val_acc": [0.25, np.nan, 0.55], "lr": [0.1] * 3})
    if columns == "val_nan":
        frame[["val_loss", "val_acc"]] = np.nan
    elif columns == "no_val":
        frame = frame.drop(columns=["val_loss", "val_acc"])
    path = tmp_path / "curves.png"
    plot_curves(frame, path)
    width, height = open_png(path)
    assert 200 < height < width < 2000


@pytest.mark.parametrize("suggestion", [3e-3, None])
def test_plot_lr_find(tmp_path, suggestion):
    lrs = np.logspace(-6, 0, 60)
    losses = 2.3 - np.log10(lrs / 1e-6) * 0.2 + np.where(lrs > 0.05, 50.0, 0.0)
    losses[-2:] = [np.inf, np.nan]  # diverged
    path = tmp_path / "lr_find.png"
    plot_lr_find(lrs, losses, suggestion, path)
    width, height = open_png(path)
    assert 200 < height < width < 2000


def test_failed_plot_keeps_old_file(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    path = tmp_path / "curves.png"
    path.write_bytes(b"old")

    def broken(self, *args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken)
    with pytest.raises(RuntimeError):
        plot_lr_find([1e-3, 1e-2], [1.0, 0.9], None, path)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]
