"""Tiny real images with one boxed item each, for localization and keypoint-regression tests (no download).

Each image is a ``size`` x ``size`` RGB textured canvas (a gradient in a random direction plus noise)
holding exactly one Fashion-MNIST item from ``sample_data/fashion``, resized (PIL bilinear) to a random
side in ``[lo, hi]`` px, tinted and pasted with ``np.maximum`` at a random place fully inside the canvas.
Its target is the item's class and the tight box of its resized pixels with value >= ``THRESHOLD``,
in continuous pixel coordinates (column ``j`` spans ``[j, j + 1)``, so columns ``a..b`` give
``x0 = a, x1 = b + 1``). Items come from ``mosaics.fashion_items()``, looked up at call time so that a
benchmark may monkeypatch it. Everything depends on the seed only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tests.tasks import mosaics

THRESHOLD = 30  # resized item pixels at least this bright define the tight box


@dataclass(frozen=True)
class Placed:
    """One pasted item: its resized grayscale pixels (``s`` x ``s``) and their top-left corner."""

    item: np.ndarray
    x: int
    y: int


def texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A float ``height`` x ``width`` x 3 canvas: a gradient in a random direction plus Gaussian noise."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    yy, xx = yy / max(height - 1, 1), xx / max(width - 1, 1)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * xx + np.sin(angle) * yy
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    low, high = rng.uniform(0, 60, 3), rng.uniform(60, 120, 3)
    return low + ramp[..., None] * (high - low) + rng.normal(0, 12, (height, width, 3))


def tight_box(item: np.ndarray, x: int = 0, y: int = 0) -> tuple[float, float, float, float]:
    """``(x0, y0, x1, y1)`` bounding the pixels of ``item`` >= ``THRESHOLD``, offset by ``(x, y)``
    (the whole item when none is that bright)."""
    rows, cols = np.nonzero(item >= THRESHOLD)
    if rows.size == 0:
        return float(x), float(y), float(x + item.shape[1]), float(y + item.shape[0])
    return (float(x + cols.min()), float(y + rows.min()), float(x + cols.max() + 1), float(y + rows.max() + 1))


def placed_rows(n: int, seed: int = 0, size: int = 64, lo: int = 20, hi: int = 40,
                classes: list[str] | None = None) -> tuple[list[np.ndarray], list[str], list[Placed]]:
    """As :func:`item_rows`, but with each image's :class:`Placed` item instead of its box."""
    if not 1 <= lo <= hi <= size:
        raise ValueError(f"need 1 <= lo <= hi <= size, got lo={lo}, hi={hi}, size={size}")
    items = mosaics.fashion_items()
    classes = list(classes or items)
    rng = np.random.default_rng(seed)
    images, labels, placed = [], [], []
    for _ in range(n):
        canvas = texture(rng, size, size)
        name = classes[int(rng.integers(len(classes)))]
        source = items[name][int(rng.integers(len(items[name])))]
        s = int(rng.integers(lo, hi + 1))
        item = np.asarray(Image.fromarray(source).resize((s, s), Image.BILINEAR))
        x, y = int(rng.integers(0, size - s + 1)), int(rng.integers(0, size - s + 1))
        tint = rng.uniform(0.6, 1.0, 3)
        region = canvas[y:y + s, x:x + s]
        np.maximum(region, item.astype(np.float32)[..., None] * tint, out=region)
        images.append(np.clip(canvas, 0, 255).astype(np.uint8))
        labels.append(name)
        placed.append(Placed(item, x, y))
    return images, labels, placed


def item_rows(n: int, seed: int = 0, size: int = 64, lo: int = 20, hi: int = 40,
              classes: list[str] | None = None) -> tuple[list[np.ndarray], list[str], list[tuple[float, ...]]]:
    """``n`` canvases with one item each, their class names and tight boxes ``(x0, y0, x1, y1)``.

    ``classes`` (default: all ten) are drawn uniformly."""
    images, labels, placed = placed_rows(n, seed, size, lo, hi, classes)
    return images, labels, [tight_box(p.item, p.x, p.y) for p in placed]


def _widen(image: np.ndarray, seed: int, index: int) -> np.ndarray:
    """``image`` with ``size // 2`` textured columns added on the right (its own seed: the left part is unchanged)."""
    size = image.shape[0]
    pad = texture(np.random.default_rng([seed, index, 1]), size, size // 2)
    return np.concatenate([image, np.clip(pad, 0, 255).astype(np.uint8)], axis=1)


def _write(folder: Path, images: list[np.ndarray], seed: int, scale: int, wide: bool) -> list[str]:
    if scale < 1 or int(scale) != scale:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    (folder / "images").mkdir(parents=True, exist_ok=True)
    paths = []
    for i, arr in enumerate(images):
        if wide:
            arr = _widen(arr, seed, i)
        im = Image.fromarray(arr)
        if scale > 1:
            im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
        rel = f"images/{i:04d}.png"
        im.save(folder / rel)
        paths.append(rel)
    return paths


def write_localize(folder: str | Path, n: int = 60, seed: int = 0, size: int = 64, scale: int = 1,
                   classes: list[str] | None = None, lo: int = 20, hi: int = 40, wide: bool = False) -> Path:
    """Write ``n`` canvases under ``folder/images/`` and ``folder/boxes.csv`` (``path,label,x0,y0,x1,y1``,
    paths relative to the CSV); returns the CSV's path.

    ``scale`` upscales each PNG by that integer factor (nearest) and multiplies the boxes by it;
    ``wide`` adds ``size // 2`` textured columns on the right (boxes unchanged)."""
    import pandas as pd

    folder = Path(folder)
    images, labels, boxes = item_rows(n, seed, size, lo, hi, classes)
    paths = _write(folder, images, seed, scale, wide)
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * scale
    csv = folder / "boxes.csv"
    pd.DataFrame({"path": paths, "label": labels, "x0": b[:, 0], "y0": b[:, 1],
                  "x1": b[:, 2], "y1": b[:, 3]}).to_csv(csv, index=False)
    return csv


def write_keypoints(folder: str | Path, n: int = 60, seed: int = 0, size: int = 64,
                    classes: list[str] | None = None, lo: int = 20, hi: int = 40, pairs: bool = False,
                    scale: int = 1, wide: bool = False) -> Path:
    """Write the images of :func:`write_localize` and ``folder/points.csv``; returns the CSV's path.

    Columns are ``path,label,cx,cy`` (the tight box's centre) or, with ``pairs``,
    ``path,label,lx,ly,rx,ry``: ``(x0, yc)`` and ``(x1, yc)``, a left/right pair a horizontal flip swaps.
    ``scale`` and ``wide`` act as in :func:`write_localize`."""
    import pandas as pd

    folder = Path(folder)
    images, labels, boxes = item_rows(n, seed, size, lo, hi, classes)
    paths = _write(folder, images, seed, scale, wide)
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * scale
    yc = (b[:, 1] + b[:, 3]) / 2
    if pairs:
        columns = {"lx": b[:, 0], "ly": yc, "rx": b[:, 2], "ry": yc}
    else:
        columns = {"cx": (b[:, 0] + b[:, 2]) / 2, "cy": yc}
    csv = folder / "points.csv"
    pd.DataFrame({"path": paths, "label": labels, **columns}).to_csv(csv, index=False)
    return csv
