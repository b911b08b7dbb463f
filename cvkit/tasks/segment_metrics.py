"""Per-pixel figures of a segmentation: the pixel confusion matrix and what it gives (IoU per class, mIoU,
pixel accuracy, frequency-weighted IoU, Dice), as in Long et al. (FCN, 2015), section 5.

Pixels whose true value is ``IGNORE_INDEX`` (255) count nowhere. A class that is neither in the labels
nor in the predictions has no IoU (None) and is left out of the means, as in Pascal VOC's evaluation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cvkit.files.dataset import IGNORE_INDEX

# Rows of label maps compared at once: the confusion of a large split is built in bounded memory.
CHUNK_PIXELS = 1 << 24


def label_maps(probs: np.ndarray) -> np.ndarray:
    """N x H x W class indices (uint8 up to 255 classes) of N x K x H x W probabilities."""
    out = np.empty((probs.shape[0], *probs.shape[2:]), dtype=np.uint8 if probs.shape[1] <= 255 else np.int64)
    step = max(1, CHUNK_PIXELS // max(1, int(np.prod(probs.shape[1:]))))
    for i in range(0, len(probs), step):
        out[i:i + step] = probs[i:i + step].argmax(1)
    return out


def confusion(true: np.ndarray, predicted: np.ndarray, k: int) -> np.ndarray:
    """K x K int64 pixel counts (rows: true class, columns: predicted) of label maps of any equal shape."""
    true, predicted = np.asarray(true).reshape(-1), np.asarray(predicted).reshape(-1)
    valid = true != IGNORE_INDEX
    if (true[valid] >= k).any():
        raise ValueError(f"a true class index is {int(true[valid].max())}, beyond the {k} classes")
    index = true[valid].astype(np.int64) * k + predicted[valid].astype(np.int64)
    return np.bincount(index, minlength=k * k).reshape(k, k)


def per_image_confusions(true: np.ndarray, predicted: np.ndarray, k: int) -> np.ndarray:
    """N x K x K: each image's confusion matrix (one bincount for the whole batch)."""
    n = len(true)
    true, predicted = true.reshape(n, -1).astype(np.int64), predicted.reshape(n, -1).astype(np.int64)
    valid = true != IGNORE_INDEX
    index = (np.arange(n)[:, None] * k * k + true * k + predicted)[valid]
    return np.bincount(index, minlength=n * k * k).reshape(n, k, k)


def ious(matrix: np.ndarray) -> np.ndarray:
    """Each class's IoU (NaN for a class absent from labels and predictions)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    hits = np.diagonal(matrix, axis1=-2, axis2=-1)
    union = matrix.sum(-1) + matrix.sum(-2) - hits
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, hits / union, np.nan)


def mean_iou(matrix: np.ndarray) -> float:
    """The mean IoU over the classes present in the labels or the predictions (0 for no pixels)."""
    values = ious(matrix)
    return float(np.nanmean(values)) if np.isfinite(values).any() else 0.0


def image_scores(matrices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image (N x K x K confusions): pixel accuracy and mean IoU (over the classes it or its
    prediction holds); NaN for an image whose pixels are all ignored."""
    total = matrices.sum((1, 2)).astype(np.float64)
    right = np.trace(matrices, axis1=1, axis2=2)
    values = ious(matrices)
    present = np.isfinite(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(total > 0, right / np.maximum(total, 1), np.nan)
        miou = np.where(present.any(1), np.nansum(np.where(present, values, 0), 1) / np.maximum(present.sum(1), 1),
                        np.nan)
    return accuracy, miou


def segmentation_metrics(matrix: np.ndarray, classes: list[str], images: int) -> dict[str, Any]:
    """metrics.json's figures of a pixel confusion matrix: ``miou``, ``pixel_accuracy``, ``mean_accuracy``
    (per class, averaged), ``fw_iou`` (IoU weighted by each class's share of the true pixels),
    ``mean_dice``, ``per_class_iou`` (class -> IoU or None) and ``per_class`` rows."""
    matrix = np.asarray(matrix, dtype=np.int64)
    total = int(matrix.sum())
    true_pixels, predicted_pixels = matrix.sum(1), matrix.sum(0)
    hits = np.diagonal(matrix)
    values = ious(matrix)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(true_pixels > 0, hits / np.maximum(true_pixels, 1), np.nan)
        dice = np.where(true_pixels + predicted_pixels > 0, 2 * hits / np.maximum(true_pixels + predicted_pixels, 1),
                        np.nan)
    freq = true_pixels / max(total, 1)

    def value(x: float) -> float | None:
        return float(x) if np.isfinite(x) else None

    return {
        "count": int(images), "pixels": total,
        "miou": mean_iou(matrix),
        "pixel_accuracy": float(hits.sum() / total) if total else 0.0,
        "mean_accuracy": float(np.nanmean(accuracy)) if np.isfinite(accuracy).any() else 0.0,
        "fw_iou": float(np.nansum(freq * np.nan_to_num(values))),
        "mean_dice": float(np.nanmean(dice)) if np.isfinite(dice).any() else 0.0,
        "per_class_iou": {name: value(values[c]) for c, name in enumerate(classes)},
        "per_class": [{"class": name, "iou": value(values[c]), "accuracy": value(accuracy[c]), "dice": value(dice[c]),
                       "true_pixels": int(true_pixels[c]), "predicted_pixels": int(predicted_pixels[c])}
                      for c, name in enumerate(classes)],
    }
