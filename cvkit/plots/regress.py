"""Predicted against true values of numeric targets (``evaluate`` of a ``--task regress`` run)."""

from __future__ import annotations

import math
import os

import numpy as np

from cvkit.plots import _figure, _save


def plot_regression(names: list[str], labels: np.ndarray, predicted: np.ndarray, path: str | os.PathLike) -> None:
    """One scatter panel per target (``labels`` and ``predicted``: N x T), true value across, predicted
    up, with the diagonal where a perfect prediction lies; each panel titled with its MAE."""
    labels = np.asarray(labels, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    if labels.shape != predicted.shape or labels.ndim != 2 or labels.shape[1] != len(names):
        raise ValueError(f"labels and predicted must both be N x {len(names)}; got {labels.shape} and "
                         f"{predicted.shape}")
    cols = min(4, max(1, len(names)))
    rows = max(1, math.ceil(len(names) / cols))
    fig = _figure(3.2 * cols, 3.0 * rows)
    for k, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, k + 1)
        true, pred = labels[:, k], predicted[:, k]
        ax.scatter(true, pred, s=8, alpha=0.6, edgecolors="none")
        if len(true):
            low = float(min(true.min(), pred.min()))
            high = float(max(true.max(), pred.max()))
            pad = 0.05 * (high - low) or 0.5  # a constant target still gets a visible diagonal
            ax.plot([low - pad, high + pad], [low - pad, high + pad], ":", color="tab:red", linewidth=1)
            ax.set_xlim(low - pad, high + pad)
            ax.set_ylim(low - pad, high + pad)
            mae = float(np.abs(pred - true).mean())
            ax.set_title(f"{name} (MAE {mae:.3g})", fontsize=9)
        else:
            ax.set_title(name, fontsize=9)
        ax.set_xlabel("true", fontsize=8)
        ax.set_ylabel("predicted", fontsize=8)
        ax.grid(alpha=0.3)
    if not names:
        fig.text(0.5, 0.5, "no targets", ha="center", va="center")
    _save(fig, path)


def draw_points_overlay(image: np.ndarray, points: np.ndarray, names: list[str], path: str | os.PathLike) -> None:
    """``image`` (H x W x 1 or 3 uint8) with each keypoint (``points``: P x 2 pixels, x then y) marked by a
    small disc and its name (the x column's), as a PNG at ``path``."""
    from PIL import Image, ImageDraw

    from cvkit.files.atomic import atomic_path
    from cvkit.plots.boxes import OVERLAY_RGB

    image = np.asarray(image)
    picture = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image).convert("RGB")
    radius = max(1.5, min(image.shape[:2]) / 40)
    draw = ImageDraw.Draw(picture)
    for (x, y), name in zip(np.asarray(points, dtype=np.float64), names):
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=OVERLAY_RGB)
        draw.text((x + radius + 1, y - radius), name, fill=OVERLAY_RGB)
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG")
