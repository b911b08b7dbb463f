"""Every picture cvkit draws: training curves, the lr range test, confusion matrices, top losses.

matplotlib is imported inside each function so that importing a command stays light. Figures
are built on the Agg canvas directly (no pyplot), so there is no global backend or figure registry
to leak memory or clash with a user's own plotting; each PNG is written atomically.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from cvkit.files.atomic import atomic_path

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

DPI = 100


def _figure(width: float, height: float) -> "Figure":
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # Text is drawn as written: a class name or file name with dollar signs is not TeX (mathtext would
    # render "$x$" as maths, and fail on "$\\frac$").
    matplotlib.rcParams["text.parse_math"] = False

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: "Figure", path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def confusion_rates(matrix: np.ndarray, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The K x K count matrix and each cell's share of its row (the true class); a class absent from the
    labels has an all-zero row, shown as zeros instead of NaN."""
    matrix = np.asarray(matrix)
    k = len(classes)
    if matrix.shape != (k, k):
        raise ValueError(f"matrix must be ({k}, {k}) for {k} classes, got {matrix.shape}")
    rows = matrix.sum(axis=1, keepdims=True)
    return matrix, np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)


def short_label(name: str, limit: int = 24) -> str:
    """A class name for an axis: cut to ``limit`` characters with an ellipsis."""
    return name if len(name) <= limit else name[: limit - 1] + "\u2026"


def plot_confusion_matrix(matrix: np.ndarray, classes: list[str], path: str | os.PathLike,
                          title: str | None = None) -> None:
    """Counts and row-normalized rates (each row = recall of that true class) side by side.

    Cells are annotated up to 20 classes; beyond that the figure and font scale with K so every
    class name stays legible up to about 100 classes.
    """
    matrix, rates = confusion_rates(matrix, classes)
    k = len(classes)
    classes = [short_label(c) for c in classes]  # a long name would squeeze the matrix into a strip

    panel = min(max(4.0, 0.16 * k + 2.0), 18.0)  # inches per panel
    font = min(10.0, max(4.0, 0.7 * 72 * (panel - 1.5) / k))  # points: about one name per cell
    fig = _figure(2 * panel + 1.5, panel)
    ticks = np.arange(k)
    for ax, values, name, fmt in ((fig.add_subplot(1, 2, 1), matrix, "counts", "d"),
                                  (fig.add_subplot(1, 2, 2), rates, "normalized by true class", ".2f")):
        image = ax.imshow(values, cmap="Blues", interpolation="nearest", vmin=0,
                          vmax=1.0 if values is rates else max(1, int(values.max())))
        fig.colorbar(image, ax=ax, shrink=0.8)
        ax.set_title(name)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_xticks(ticks, classes, rotation=90, fontsize=font)
        ax.set_yticks(ticks, classes, fontsize=font)
        if k <= 20:
            threshold = image.norm.vmax / 2  # white text on dark cells
            for (t, p), v in np.ndenumerate(values):
                if values is rates and v == 0:
                    continue  # empty cells stay blank: the non-zero rates are what the eye looks for
                ax.text(p, t, format(v, fmt), ha="center", va="center", fontsize=font,
                        color="white" if v > threshold else "black")
    if title:
        fig.suptitle(title)
    _save(fig, path)


def _image_grid(images: np.ndarray, cols: int, extra_height: float = 0.0) -> tuple[Any, list[Any]]:
    """A figure of ``images`` (N x H x W x 1 or 3 uint8) in a grid of ``cols`` columns, each shown pixel for
    pixel with room for a two-line title; its axes, one per image ("no images" written when N is 0)."""
    n = len(images)
    cols = max(1, min(cols, n))
    rows = max(1, math.ceil(n / cols))
    h, w = images.shape[1:3] if n else (1, 1)
    cell = 2.5  # inches per image, room for a two-line title
    fig = _figure(cols * cell, rows * cell * h / w + 0.5 * rows + extra_height)
    axes = []
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        image = images[i]
        if image.shape[2] == 1:
            ax.imshow(image[:, :, 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        else:
            ax.imshow(image, interpolation="nearest")
        axes.append(ax)
    if n == 0:
        fig.text(0.5, 0.5, "no images", ha="center", va="center")
    return fig, axes


def plot_top_losses(images: np.ndarray, labels: Sequence[int], predicted: Sequence[int], probs_true: Sequence[float],
                    probs_pred: Sequence[float], classes: list[str], path: str | os.PathLike, cols: int = 4) -> None:
    """A grid of the worst-predicted images, each titled ``label / predicted / p(pred) / p(true)``."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[3] not in (1, 3):
        raise ValueError(f"images must be (n, H, W, 1 or 3) uint8, got {images.shape}")
    n = len(images)
    if not n == len(labels) == len(predicted) == len(probs_true) == len(probs_pred):
        raise ValueError("images, labels, predicted, probs_true and probs_pred must have the same length")
    fig, axes = _image_grid(images, cols)
    for i, ax in enumerate(axes):
        ax.set_title(f"{classes[labels[i]]} / {classes[predicted[i]]}\n{probs_pred[i]:.2f} / {probs_true[i]:.2f}",
                     fontsize=8)
        ax.axis("off")
    fig.suptitle("label / predicted / p(pred) / p(true)", fontsize=9)
    _save(fig, path)


def plot_curves(metrics: "pd.DataFrame", path: str | os.PathLike, best_epoch: int | None = None,
                title: str | None = None) -> None:
    """Loss and accuracy per epoch from a ``metrics.csv`` frame, train (solid) against val (dashed);
    validation lines only where they exist. ``best_epoch`` (the weights the run kept) is marked by a
    vertical line and a ring on each validation curve. With an ``errors`` column (``--optimizer perceptron``)
    a third panel shows the mistakes the rule made in each epoch."""
    if "epoch" not in metrics.columns:
        raise ValueError("metrics must have an 'epoch' column (metrics.csv written by 'cvkit train')")
    from matplotlib.ticker import MaxNLocator

    panels = 3 if "errors" in metrics.columns else 2
    fig = _figure(5.5 * panels, 4.5 if title else 4)
    # the task's val metric: val_acc, val_map, ... (train_acc is the training figure of every task)
    score = next((c for c in metrics.columns if c.startswith("val_") and c != "val_loss"), "val_acc")
    if panels == 3:
        ax = fig.add_subplot(1, 3, 3)
        values = metrics[["epoch", "errors"]].astype(np.float64).dropna()
        ax.plot(values["epoch"], values["errors"], "-", marker="o", markersize=3, color="tab:purple")
        ax.set_title("perceptron rule: mistakes per epoch (train)")
        ax.set_xlabel("epoch")
        ax.set_ylim(bottom=0)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for i, quantity in enumerate(("loss", score[4:])):
        ax = fig.add_subplot(1, panels, i + 1)
        for split, style in (("train", "-"), ("val", "--")):
            column = f"{split}_{quantity}" if split == "val" or quantity == "loss" else "train_acc"
            if column not in metrics.columns:
                continue
            values = metrics[["epoch", column]].astype(np.float64).dropna()
            if len(values):
                # markers keep a single epoch (or an isolated validation point) visible
                ax.plot(values["epoch"], values[column], style, marker="o", markersize=3, label=split)
                at = values[values["epoch"] == best_epoch]
                if split == "val" and len(at):
                    ax.plot(at["epoch"], at[column], "o", markersize=10, markerfacecolor="none",
                            markeredgecolor="tab:red", markeredgewidth=1.5)
        if best_epoch is not None:
            ax.axvline(best_epoch, color="tab:red", linestyle=":", linewidth=1, label=f"best epoch {best_epoch}")
        ax.set_title({"acc": "accuracy", "loss": "loss", "map": "mAP (train: label accuracy)"}.get(quantity, quantity))
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    _save(fig, path)


def plot_lr_find(lrs: Sequence[float], losses: Sequence[float], suggestion: float | None,
                 path: str | os.PathLike) -> None:
    """Loss against learning rate on a log axis, marking the suggested rate when there is one."""
    lrs = np.asarray(lrs, dtype=np.float64)
    losses = np.asarray(losses, dtype=np.float64)
    if lrs.shape != losses.shape or lrs.ndim != 1:
        raise ValueError(f"lrs and losses must be 1-D of the same length; got {lrs.shape} and {losses.shape}")
    keep = np.isfinite(losses) & (lrs > 0)  # a diverged run ends in inf/NaN losses
    lrs, losses = lrs[keep], losses[keep]
    order = np.argsort(lrs, kind="stable")
    lrs, losses = lrs[order], losses[order]

    fig = _figure(7, 4.5)
    ax = fig.add_subplot()
    ax.plot(lrs, losses)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3, which="both")
    if len(losses) and losses.max() > 2 * losses[0] > losses.min():
        # the explosion at the end would flatten the part of the curve worth reading
        low, high = losses.min(), 2 * losses[0]
        ax.set_ylim(low - 0.05 * (high - low), high)
    if suggestion is not None and len(lrs):
        y = np.interp(np.log(suggestion), np.log(lrs), losses)
        ax.axvline(suggestion, color="tab:red", linestyle=":", linewidth=1)
        ax.plot([suggestion], [y], "o", color="tab:red", label=f"suggested {suggestion:.2e}")
        ax.legend()
    _save(fig, path)


def plot_augment_preview(originals: np.ndarray, labels: Sequence[str], versions: np.ndarray,
                         titles: Sequence[Sequence[Sequence[str]]], policy: str, path: str | os.PathLike) -> None:
    """One row per training image: the original (titled with its label), then its augmented versions
    (each titled with its label, or its soft label under mixup / cutmix)."""
    n, k = versions.shape[:2]
    h, w = originals.shape[1:3]
    cell = 1.6
    fig = _figure((k + 1) * cell, n * cell * h / w + 0.35 * n + 0.6)
    for i in range(n):
        row = [(originals[i], [f"{labels[i]} (original)"])] + [(versions[i, j], titles[i][j]) for j in range(k)]
        for j, (image, title) in enumerate(row):
            ax = fig.add_subplot(n, k + 1, i * (k + 1) + j + 1)
            if image.shape[2] == 1:
                ax.imshow(image[:, :, 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            else:
                ax.imshow(image, interpolation="nearest")
            ax.set_title("\n".join(short_label(t, 20) for t in title), fontsize=7,
                         fontweight="bold" if j == 0 else "normal")
            ax.axis("off")
    import textwrap

    fig.suptitle("\n".join(textwrap.wrap(f"augmentation: {policy}", width=int((k + 1) * cell * 11))), fontsize=9)
    _save(fig, path)


def plot_crossval(names: Sequence[str], means: Sequence[float], stds: Sequence[float],
                  fold_values: Sequence[Sequence[float]], monitor: str, path: str | os.PathLike) -> None:
    """Each configuration's mean validation metric with its standard deviation over folds as error bars
    and each fold as a dot; the first (best) configuration on top, in colour."""
    n = len(names)
    if not n == len(means) == len(stds) == len(fold_values):
        raise ValueError("names, means, stds and fold_values must have the same length")
    fig = _figure(8, min(40.0, 1.4 + 0.45 * max(1, n)))
    ax = fig.add_subplot()
    y = np.arange(n)[::-1]  # the first name at the top
    for i in range(n):
        values = np.asarray(fold_values[i], dtype=np.float64)
        ax.plot(values, np.full(len(values), y[i]), "o", color="0.6", markersize=3, zorder=1)
        std = stds[i] if stds[i] is not None and np.isfinite(stds[i]) else 0.0
        if means[i] is not None and np.isfinite(means[i]):
            ax.errorbar([means[i]], [y[i]], xerr=[std], fmt="o", capsize=4, zorder=2,
                        color="tab:red" if i == 0 else "tab:blue")
    ax.set_yticks(y, list(names), fontsize=8)
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_xlabel(f"{monitor} (mean ± std over folds; dots: folds)")
    ax.grid(alpha=0.3, axis="x")
    if n == 0:
        fig.text(0.5, 0.5, "no finished folds", ha="center", va="center")
    _save(fig, path)


def plot_precision_recall(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str | os.PathLike) -> None:
    """One precision-recall curve per class (``{class: (precision, recall)}``), in a grid of small panels."""
    from matplotlib.ticker import MaxNLocator

    names = list(curves)
    cols = min(4, max(1, len(names)))
    rows = max(1, math.ceil(len(names) / cols))
    fig = _figure(3 * cols, 2.6 * rows)
    for i, name in enumerate(names):
        precision, recall = curves[name]
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.step(np.r_[0.0, recall], np.r_[precision[:1] if len(precision) else [1.0], precision], where="post")
        ax.set_title(name, fontsize=9)
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
        ax.xaxis.set_major_locator(MaxNLocator(3))
        ax.set_xlabel("recall", fontsize=8)
        ax.set_ylabel("precision", fontsize=8)
        ax.grid(alpha=0.3)
    _save(fig, path)
