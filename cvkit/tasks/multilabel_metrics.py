"""Multi-label metrics from 0/1 targets and per-class scores, in plain numpy.

Average precision follows scikit-learn's ``average_precision_score`` (precision at each distinct score,
weighted by the recall gained there), so the figures match what users compute elsewhere; precision,
recall and F1 use ``zero_division=0``. Everything returned is JSON-serialisable.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def average_precision(truth: np.ndarray, scores: np.ndarray) -> float | None:
    """AP of one class (None when it has no positive: AP is undefined there)."""
    truth = np.asarray(truth, dtype=bool)
    positives = int(truth.sum())
    if positives == 0:
        return None
    order = np.argsort(-scores, kind="stable")
    s, t = scores[order], truth[order]
    hits = np.cumsum(t)
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last row of each distinct score
    tp, seen = hits[last], last + 1
    precision, recall = tp / seen, tp / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def precision_recall_curve(truth: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, threshold) at each distinct score, highest threshold first."""
    truth = np.asarray(truth, dtype=bool)
    order = np.argsort(-scores, kind="stable")
    s, t = scores[order], truth[order]
    hits = np.cumsum(t)
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp, seen = hits[last], last + 1
    return tp / seen, tp / max(1, int(truth.sum())), s[last]


def best_f1_threshold(truth: np.ndarray, scores: np.ndarray, default: float = 0.5) -> float:
    """The score threshold that maximizes this class's F1 (halfway to the next lower score, so it is not
    tied to one image's score); ``default`` for a class with no positive."""
    if not np.asarray(truth, dtype=bool).any():
        return default
    precision, recall, thresholds = precision_recall_curve(truth, scores)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    i = int(np.argmax(f1))
    below = thresholds[i + 1] if i + 1 < len(thresholds) else 0.0
    return float((thresholds[i] + below) / 2)


def _prf(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    precision = np.divide(tp, tp + fp, out=np.zeros(tp.shape, float), where=(tp + fp) > 0)
    recall = np.divide(tp, tp + fn, out=np.zeros(tp.shape, float), where=(tp + fn) > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(tp.shape, float),
                   where=(precision + recall) > 0)
    return precision, recall, f1


def multilabel_metrics(truth: np.ndarray, scores: np.ndarray, thresholds: np.ndarray,
                       classes: list[str]) -> dict[str, Any]:
    """``map`` (macro AP over the classes with a positive), micro and macro precision/recall/F1 at the
    thresholds, ``exact_match`` (every label of an image right), ``hamming_loss`` and a per-class table."""
    truth = np.asarray(truth) > 0.5
    scores = np.asarray(scores, dtype=np.float64)
    predicted = scores >= np.asarray(thresholds)[None, :]
    tp = (predicted & truth).sum(0).astype(float)
    fp = (predicted & ~truth).sum(0).astype(float)
    fn = (~predicted & truth).sum(0).astype(float)
    precision, recall, f1 = _prf(tp, fp, fn)
    micro_p, micro_r, micro_f1 = (float(v[0]) for v in _prf(tp.sum(keepdims=True), fp.sum(keepdims=True),
                                                            fn.sum(keepdims=True)))
    ap = [average_precision(truth[:, k], scores[:, k]) for k in range(truth.shape[1])]
    defined = [a for a in ap if a is not None]
    support = truth.sum(0)
    return {
        "count": int(len(truth)),
        "map": float(np.mean(defined)) if defined else 0.0,
        "micro_precision": micro_p, "micro_recall": micro_r, "micro_f1": micro_f1,
        "macro_precision": float(precision.mean()), "macro_recall": float(recall.mean()),
        "macro_f1": float(f1.mean()),
        "exact_match": float((predicted == truth).all(1).mean()),
        "hamming_loss": float((predicted != truth).mean()),
        "labels_per_image": float(truth.sum(1).mean()),
        "per_class": [{"class": name, "ap": ap[k], "precision": float(precision[k]), "recall": float(recall[k]),
                       "f1": float(f1[k]), "support": int(support[k]), "threshold": float(thresholds[k])}
                      for k, name in enumerate(classes)],
    }
