"""Tiny real images with several labels each, for multi-label tests (no download).

Each image is a 56 x 56 RGB 2 x 2 mosaic: 1 to 3 Fashion-MNIST items from ``sample_data/fashion``
(10 classes x 20 PNGs of 28 x 28) pasted into distinct cells of a textured canvas (a gradient in a
random direction plus noise), so no two images share bytes and the empty cells are not blank. Its
labels are the classes of the items pasted. Classes are drawn with unequal weights, so the labels
have different frequencies, as in real multi-label sets. Everything depends on the seed only.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from PIL import Image

FASHION = Path(__file__).resolve().parents[2] / "sample_data" / "fashion"
SIZE = 56  # 2 x 2 cells of 28 x 28
CELL = 28


@functools.cache
def fashion_items() -> dict[str, list[np.ndarray]]:
    """The sample Fashion-MNIST items: class name -> its 28 x 28 uint8 images, in file order."""
    return {d.name: [np.asarray(Image.open(f).convert("L")) for f in sorted(d.glob("*.png"))]
            for d in sorted(FASHION.iterdir()) if d.is_dir()}


def _canvas(rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / (SIZE - 1)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * xx + np.sin(angle) * yy
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    low, high = rng.uniform(0, 60, 3), rng.uniform(60, 120, 3)
    canvas = low + ramp[..., None] * (high - low) + rng.normal(0, 12, (SIZE, SIZE, 3))
    return canvas


def mosaic_rows(n: int, seed: int = 0, classes: list[str] | None = None, weights: list[float] | None = None,
                max_items: int = 3) -> tuple[list[np.ndarray], list[list[str]]]:
    """``n`` mosaics and their labels (class names, sorted by ``classes`` order, without repeats).

    ``classes`` (default: all ten) are drawn with ``weights`` (default: falling as 1/(rank+1)), so
    the first classes are the most frequent labels."""
    items = fashion_items()
    classes = list(classes or items)
    p = np.array(weights if weights is not None else [1.0 / (r + 1) for r in range(len(classes))], dtype=np.float64)
    p /= p.sum()
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for _ in range(n):
        k = int(rng.integers(1, min(max_items, len(classes), 4) + 1))
        picked = sorted(rng.choice(len(classes), size=k, replace=False, p=p).tolist())
        canvas = _canvas(rng)
        for c, cell in zip(picked, rng.permutation(4)[:k]):
            item = items[classes[c]][int(rng.integers(len(items[classes[c]])))].astype(np.float32)
            tint = rng.uniform(0.6, 1.0, 3)
            y, x = divmod(int(cell), 2)
            region = canvas[y * CELL:(y + 1) * CELL, x * CELL:(x + 1) * CELL]
            np.maximum(region, item[..., None] * tint, out=region)
        images.append(np.clip(canvas, 0, 255).astype(np.uint8))
        labels.append([classes[c] for c in picked])
    return images, labels


def _write_images(folder: Path, images: list[np.ndarray]) -> list[str]:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    paths = []
    for i, arr in enumerate(images):
        rel = f"images/{i:04d}.png"
        Image.fromarray(arr).save(folder / rel)
        paths.append(rel)
    return paths


def write_mosaics(folder: str | Path, n: int = 60, seed: int = 0, classes: list[str] | None = None,
                  weights: list[float] | None = None, delim: str = " ") -> Path:
    """Write ``n`` mosaics under ``folder/images/`` and ``folder/labels.csv`` (``path,labels``, the labels
    joined by ``delim``, paths relative to the CSV); returns the CSV's path."""
    import pandas as pd

    folder = Path(folder)
    images, labels = mosaic_rows(n, seed, classes, weights)
    paths = _write_images(folder, images)
    csv = folder / "labels.csv"
    pd.DataFrame({"path": paths, "labels": [delim.join(names) for names in labels]}).to_csv(csv, index=False)
    return csv


def write_mosaics_onehot(folder: str | Path, n: int = 60, seed: int = 0, classes: list[str] | None = None,
                         weights: list[float] | None = None) -> Path:
    """As :func:`write_mosaics`, but ``folder/onehot.csv`` has ``path`` and one 0/1 column per class."""
    import pandas as pd

    folder = Path(folder)
    classes = list(classes or fashion_items())
    images, labels = mosaic_rows(n, seed, classes, weights)
    paths = _write_images(folder, images)
    csv = folder / "onehot.csv"
    columns = {c: [int(c in names) for names in labels] for c in classes}
    pd.DataFrame({"path": paths, **columns}).to_csv(csv, index=False)
    return csv
