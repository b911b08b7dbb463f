"""evaluate's figures for numeric targets: errors and R² per target, and PCK for keypoints.

Every figure is finite, so metrics.json never holds NaN: a target that does not vary in the split
has R² 1 when it is predicted exactly and 0 otherwise (scikit-learn's ``force_finite``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

PCK_FRACTION = 0.1  # a keypoint is found within this share of the network input's longer side


def r2_scores(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """R² = 1 - SS_res / SS_tot of each column (N x T arrays)."""
    residual = ((labels - probs) ** 2).sum(0)
    total = ((labels - labels.mean(0)) ** 2).sum(0) if len(labels) else np.zeros(labels.shape[1])
    constant = np.where(residual == 0, 1.0, 0.0)
    return np.where(total > 0, 1.0 - residual / np.where(total > 0, total, 1.0), constant)


def point_distances(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """N x P distances between predicted and true keypoints (columns x1, y1, x2, y2, ...)."""
    diff = (probs - labels).reshape(len(labels), -1, 2)
    return np.sqrt((diff ** 2).sum(-1))


def pck(probs: np.ndarray, labels: np.ndarray, radius: float) -> float:
    """The share of keypoints predicted within ``radius`` pixels of the truth (PCK)."""
    distances = point_distances(probs, labels)
    return float((distances <= radius).mean()) if distances.size else 0.0


def regression_metrics(labels: np.ndarray, probs: np.ndarray, names: list[str],
                       radius: float | None = None) -> dict[str, Any]:
    """metrics.json's figures: ``mae``, ``rmse`` and ``r2`` (means over the targets, in target units),
    ``pck`` (keypoints within ``radius`` pixels; only with a radius), ``count`` and ``per_target``."""
    labels = np.asarray(labels, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    n = len(labels)
    error = probs - labels
    mae = np.abs(error).mean(0) if n else np.zeros(len(names))
    rmse = np.sqrt((error ** 2).mean(0)) if n else np.zeros(len(names))
    r2 = r2_scores(labels, probs)
    figures: dict[str, Any] = {"mae": float(mae.mean()), "rmse": float(rmse.mean()), "r2": float(r2.mean())}
    if radius is not None:
        figures["pck"] = pck(probs, labels, radius)
    figures["count"] = int(n)
    figures["per_target"] = [{"name": name, "mae": float(mae[k]), "rmse": float(rmse[k]), "r2": float(r2[k])}
                             for k, name in enumerate(names)]
    return figures
