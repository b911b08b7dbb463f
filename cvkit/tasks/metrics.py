"""Classification metrics from labels and predicted probabilities, in plain numpy.

The definitions follow scikit-learn (``zero_division=0``) so numbers match what users compute
elsewhere, without making scikit-learn a dependency. Everything returned is JSON-serialisable.
"""

from __future__ import annotations

from typing import Any

import numpy as np

LOG_CLIP = 1e-15  # p_true is clipped to [LOG_CLIP, 1] so one confident mistake cannot make log_loss infinite
TOP_CONFUSED = 10


def _check(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or labels.shape != (probs.shape[0],):
        raise ValueError(f"labels must be (N,) and probs (N, K); got {labels.shape} and {probs.shape}")
    if len(labels) == 0:
        raise ValueError("no images to evaluate: labels and probs are empty")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= probs.shape[1]:
        raise ValueError(f"labels must be integer class indices in [0, {probs.shape[1]})")
    return labels.astype(np.int64), probs


def _ranking(probs: np.ndarray) -> np.ndarray:
    """Classes of each row from most to least probable; ties go to the lower index, as ``argmax`` does."""
    return np.argsort(-probs, axis=1, kind="stable")


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, k: int) -> np.ndarray:
    """Counts of (true, predicted) pairs as an int64 (K, K) matrix; rows are the true class."""
    labels = np.asarray(labels, dtype=np.int64)
    predicted = np.asarray(predicted, dtype=np.int64)
    if labels.shape != predicted.shape or labels.ndim != 1:
        raise ValueError(f"labels and predicted must be 1-D of equal length; got {labels.shape} and {predicted.shape}")
    if len(labels) and (min(labels.min(), predicted.min()) < 0 or max(labels.max(), predicted.max()) >= k):
        raise ValueError(f"class indices must lie in [0, {k})")
    return np.bincount(labels * k + predicted, minlength=k * k).reshape(k, k).astype(np.int64)


def top_losses(labels: np.ndarray, probs: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` images with the largest ``-log p_true``, worst first; equal losses keep input order."""
    labels, probs = _check(labels, probs)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    p_true = probs[np.arange(len(labels)), labels]
    # -log is decreasing, so the smallest p_true is the largest loss; sorting p itself avoids log(0).
    return np.argsort(p_true, kind="stable")[:n]


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, n_bins: int = 15) -> float:
    """Mean |accuracy - confidence| over equal-width bins (lo, hi] of the max probability, weighted by bin size."""
    labels, probs = _check(labels, probs)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    gap = np.abs(np.bincount(bins, correct, n_bins) - np.bincount(bins, confidence, n_bins))
    # per bin: |sum(correct) - sum(conf)| / N == (n_bin / N) * |acc_bin - conf_bin|
    return float(gap[count > 0].sum() / len(labels))


def _most_confused(matrix: np.ndarray, classes: list[str]) -> list[dict[str, Any]]:
    pairs = [(int(matrix[t, p]), classes[t], classes[p]) for t, p in zip(*np.nonzero(matrix)) if t != p]
    pairs.sort(key=lambda x: (-x[0], x[1], x[2]))
    return [{"true": t, "predicted": p, "count": c} for c, t, p in pairs[:TOP_CONFUSED]]


def classification_metrics(labels: np.ndarray, probs: np.ndarray, classes: list[str], n_bins: int = 15) -> dict:
    """Every summary number ``cvkit evaluate`` reports for one split, as a JSON-serialisable dict.

    ``labels`` are class indices (N,), ``probs`` the predicted probabilities (N, K), ``classes``
    the K names. Keys: count, accuracy, top5_accuracy (K >= 5 only), balanced_accuracy,
    macro_precision, macro_recall, macro_f1, log_loss, ece, per_class, most_confused.
    """
    labels, probs = _check(labels, probs)
    k = probs.shape[1]
    if len(classes) != k:
        raise ValueError(f"probs has {k} columns but there are {len(classes)} class names")
    ranking = _ranking(probs)
    predicted = ranking[:, 0]
    matrix = confusion_matrix(labels, predicted, k)

    tp = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1)
    n_predicted = matrix.sum(axis=0)
    # zero_division=0: a class never predicted has precision 0, a class never present has recall 0.
    precision = np.divide(tp, n_predicted, out=np.zeros(k), where=n_predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    f1_denominator = support + n_predicted  # 2tp + fp + fn
    f1 = np.divide(2 * tp, f1_denominator, out=np.zeros(k), where=f1_denominator > 0)

    p_true = np.clip(probs[np.arange(len(labels)), labels], LOG_CLIP, 1.0)
    result: dict[str, Any] = {"count": int(len(labels)), "accuracy": float(tp.sum() / len(labels))}
    if k >= 5:
        result["top5_accuracy"] = float((ranking[:, :5] == labels[:, None]).any(axis=1).mean())
    result.update({
        # over the classes present in labels only: an absent class has no recall to average
        "balanced_accuracy": float(recall[support > 0].mean()),
        # macro over all K classes, absent ones included (scikit-learn's average="macro")
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
        "macro_f1": float(f1.mean()),
        "log_loss": float(-np.log(p_true).mean()),
        "ece": expected_calibration_error(labels, probs, n_bins),
        "per_class": [{"class": name, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
                      for name, p, r, f, s in zip(classes, precision, recall, f1, support)],
        "most_confused": _most_confused(matrix, classes),
    })
    return result
