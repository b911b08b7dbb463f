"""The pictures of ``cvkit visualize``: training curves with the best epoch, tile grids (filters,
feature maps, top patches), a synthesized input, saliency maps and 2-D embeddings.

A grid of small images is drawn as one mosaic array shown once, not one subplot per tile: a
64-tile grid costs one imshow instead of 64 axes (each about 15 ms to lay out and draw).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from cvkit.plots import _figure, _save

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

GAP = 1  # pixels between the tiles of a mosaic
WIDTH = 8.0  # inches: the width of a grid picture, whatever the number of tiles


def colour(values: np.ndarray, cmap: str = "viridis") -> np.ndarray:
    """Values in [0, 1] (any shape) as RGB uint8 through a colour map; NaN becomes white."""
    from matplotlib import colormaps

    table = (colormaps[cmap](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)
    rgb = table[np.clip(np.nan_to_num(values, nan=0.0) * 255, 0, 255).astype(np.uint8)]
    rgb[np.isnan(values)] = 255
    return rgb


def scale_each(tiles: np.ndarray) -> np.ndarray:
    """Each tile (first axis) min-max scaled to [0, 1] over all its values; a constant tile (a dead
    channel) is 0."""
    tiles = np.asarray(tiles, dtype=np.float64)
    flat = tiles.reshape(len(tiles), -1)
    lo, hi = flat.min(1), flat.max(1)
    span = np.where(hi > lo, hi - lo, 1.0)
    out = (flat - lo[:, None]) / span[:, None]
    out[hi <= lo] = 0.0
    return out.reshape(tiles.shape)


def mosaic(tiles: np.ndarray, cols: int, cmap: str = "gray", gap: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """(n, h, w) or (n, h, w, 3) tiles in [0, 1] as one RGB uint8 image, ``cols`` tiles a row, with
    gaps of colour ``gap`` (white; a colour of its own where the tiles are images that may be white);
    (n, h, w) tiles go through ``cmap``."""
    tiles = np.asarray(tiles, dtype=np.float64)
    rgb = colour(tiles, cmap) if tiles.ndim == 3 else (np.clip(tiles, 0, 1) * 255).round().astype(np.uint8)
    n, h, w = rgb.shape[:3]
    rows = max(1, math.ceil(n / cols))
    canvas = np.empty((rows * (h + GAP) - GAP, cols * (w + GAP) - GAP, 3), np.uint8)
    canvas[:] = gap
    for i in range(n):
        r, c = divmod(i, cols)
        canvas[r * (h + GAP):r * (h + GAP) + h, c * (w + GAP):c * (w + GAP) + w] = rgb[i]
    return canvas


def wrap(text: str, width_in: float, fontsize: float = 10) -> str:
    """``text`` broken into lines that fit ``width_in`` inches at ``fontsize`` points."""
    import textwrap

    chars = max(20, int(width_in * 72 / (0.55 * fontsize)))  # an average character is about 0.55 em wide
    return "\n".join(line for part in text.split("\n") for line in textwrap.wrap(part, chars) or [""])


def _suptitle(fig: Figure, text: str, fontsize: float = 10) -> None:
    fig.suptitle(wrap(text, fig.get_figwidth() - 0.2, fontsize), fontsize=fontsize)


def _show(ax: Axes, picture: np.ndarray, title: str | None = None, fontsize: float = 10, width_in: float = 3.0) -> None:
    ax.imshow(picture, interpolation="nearest",
              **({} if picture.ndim == 3 else {"cmap": "gray", "vmin": 0, "vmax": 255}))
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(wrap(title, width_in, fontsize), fontsize=fontsize)


def _image(image: np.ndarray) -> np.ndarray:
    """An H x W x 1|3 uint8 image as imshow takes it."""
    return image[:, :, 0] if image.shape[2] == 1 else image


def plot_grid(picture: np.ndarray, title: str, path: str | os.PathLike, beside: np.ndarray | None = None,
              beside_title: str = "", row_labels: Sequence[str] = (), col_labels: Sequence[str] = (),
              tile: tuple[int, int] = (0, 0)) -> None:
    """A mosaic (from :func:`mosaic`) under ``title``, optionally with an image ``beside`` it on the
    left (the input of a feature-map grid) and labels on its rows and columns of ``tile`` (h, w) cells."""
    h, w = picture.shape[:2]
    left = 0.3 * WIDTH if beside is not None else 0.0
    top = 0.7 + (0.3 if col_labels else 0.0)
    fig = _figure(WIDTH + left, min(30.0, max(2.5, WIDTH * h / w + top)))
    grid = fig.add_gridspec(1, 2, width_ratios=[left, WIDTH]) if beside is not None else fig.add_gridspec(1, 1)
    if beside is not None:
        _show(fig.add_subplot(grid[0, 0]), _image(beside), beside_title, 9, left - 0.2)
    ax = fig.add_subplot(grid[0, -1])
    _show(ax, picture)
    th, tw = tile
    if row_labels:
        ax.set_yticks([r * (th + GAP) + (th - 1) / 2 for r in range(len(row_labels))], list(row_labels), fontsize=8)
    if col_labels:
        ax.xaxis.tick_top()
        ax.set_xticks([c * (tw + GAP) + (tw - 1) / 2 for c in range(len(col_labels))], list(col_labels), fontsize=8)
    _suptitle(fig, title)
    _save(fig, path)


def plot_images(panels: Sequence[tuple[np.ndarray, str]], title: str, path: str | os.PathLike,
                cmap: str = "inferno") -> None:
    """Images side by side, each with its own title: uint8 H x W x 1|3 images as they are, float
    H x W maps in [0, 1] through ``cmap`` (saliency maps beside their image, a synthesized input)."""
    n = len(panels)
    side = 3.2
    fig = _figure(max(4.0, side * n), side + 0.9)
    for i, (picture, name) in enumerate(panels):
        ax = fig.add_subplot(1, n, i + 1)
        _show(ax, _image(picture) if picture.dtype == np.uint8 else colour(picture, cmap), name, 9, side - 0.2)
    _suptitle(fig, title)
    _save(fig, path)


def plot_embedding(points: np.ndarray, labels: np.ndarray, classes: list[str], title: str,
                   path: str | os.PathLike) -> None:
    """2-D points coloured by class, with a legend of the classes present."""
    from matplotlib import colormaps

    points = np.asarray(points, dtype=np.float64)
    k = len(classes)
    cmap = colormaps["tab10" if k <= 10 else "tab20" if k <= 20 else "turbo"]
    fig = _figure(8.5, 7)
    ax = fig.add_subplot()
    size = max(2.0, min(25.0, 4000.0 / max(1, len(points))))
    for c in range(k):
        mine = labels == c
        if mine.any():
            ax.scatter(points[mine, 0], points[mine, 1], s=size, color=cmap(c / max(1, k - 1) if k > 20 else c),
                       label=classes[c], alpha=0.8, linewidths=0)
    ax.set_xlabel("component 1")
    ax.set_ylabel("component 2")
    ax.grid(alpha=0.3)
    if k <= 30:
        ax.legend(fontsize=7, markerscale=max(1.0, 12 / size), loc="best")
    ax.set_title(wrap(title, 8.0), fontsize=10)
    _save(fig, path)


def plot_images_and_bars(panels: Sequence[tuple[np.ndarray, str]],
                         bars: Sequence[tuple[Sequence[tuple[str, float]], str]], title: str,
                         path: str | os.PathLike) -> None:
    """Images side by side (as :func:`plot_images` draws them) over horizontal bar charts of
    probabilities, each a list of (class name, probability), most probable on top: an adversarial
    example's clean image, perturbation and perturbed image over its top classes before and after."""
    n, m = len(panels), max(1, len(bars))
    side = 3.2
    rows = max(len(b) for b, _ in bars) if bars else 1
    fig = _figure(max(4.0, side * n), side + 0.9 + 0.9 + 0.28 * rows)
    grid = fig.add_gridspec(2, n * m, height_ratios=[side, 0.5 + 0.28 * rows])
    for i, (picture, name) in enumerate(panels):
        ax = fig.add_subplot(grid[0, i * m:(i + 1) * m])
        _show(ax, _image(picture) if picture.dtype == np.uint8 else colour(picture, "inferno"), name, 9, side - 0.2)
    for j, (pairs, name) in enumerate(bars):
        ax = fig.add_subplot(grid[1, j * n:(j + 1) * n])
        labels, values = [p[0] for p in pairs], [float(p[1]) for p in pairs]
        ax.barh(range(len(values)), values, color="tab:blue" if j == 0 else "tab:red")
        ax.set_yticks(range(len(values)), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        for y, v in enumerate(values):
            ax.text(min(v, 0.8) + 0.01, y, f"{v:.3f}", va="center", fontsize=8)
        ax.set_title(wrap(name, side * n / m - 0.2, 9), fontsize=9)
        ax.tick_params(axis="x", labelsize=8)
    _suptitle(fig, title)
    _save(fig, path)
