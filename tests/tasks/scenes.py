"""Tiny real scenes for semantic segmentation tests and benchmarks (no download).

Each scene is an RGB textured canvas (:func:`canvases.texture`) holding 1 to ``max_items`` Fashion-MNIST
items, each resized (PIL bilinear) to a random side in ``[lo, hi]`` px, tinted and pasted at a random place
fully inside the canvas; a pasted square overlaps an earlier one by at most ``OVERLAP`` of the smaller's area,
and a later item covers an earlier one. Its mask (mode ``L``) holds class indices: the item's label + 1 where
the resized item is at least ``high`` bright, 255 (ignore) on its faint edge (``low`` <= value < ``high``),
0 (background) elsewhere. The item is composited with opacity ``clip((value - low) / (high - low), 0, 1)``, so
the pixels labelled with a class show the item opaquely, the ignored ones are a blend, and below ``low`` the
canvas is untouched: a 0 pixel is exactly the background (or an earlier item's pixel).

Classes are ``background`` then the item classes: the ten Fashion-MNIST names in label order (``CLASSES``)
when every item name is one of them, else the items' own order. Items come from ``mosaics.fashion_items()``,
looked up at call time so that a benchmark may monkeypatch it, unless passed in. Scene ``i`` of seed ``s``
draws from ``np.random.default_rng([s, i])`` only: its background is ``canvases.texture`` of that generator,
and a set of ``n`` scenes starts with the same scenes as a smaller one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tests.tasks import mosaics
from tests.tasks.canvases import Placed, texture

# Fashion-MNIST's class names in label order (sample_data/README.md); a mask holds label + 1.
CLASSES = ["tshirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle_boot"]
BACKGROUND = "background"
IGNORE = 255
LOW, HIGH = 10, 40  # item pixels in [LOW, HIGH) are its faint edge: ignored in the mask, blended in the image
OVERLAP = 0.2  # at most this share of the smaller square may lie under another item's square
TRIES = 20  # placements tried per item before taking the least overlapping one

Items = dict[str, list[np.ndarray]]


@dataclass(frozen=True)
class Scene:
    """One scene: its image, mask, the canvas under the items, and each item with its class index (1-based)."""

    image: np.ndarray  # height x width x 3 uint8
    mask: np.ndarray  # height x width uint8: 0 background, 1..K classes, 255 ignore
    background: np.ndarray  # height x width x 3 uint8: the canvas before any item
    placed: list[tuple[Placed, int]]


def class_names(items: Items | None = None) -> list[str]:
    """The mask's class names, index = mask value: ``background`` first, then the item classes."""
    items = mosaics.fashion_items() if items is None else items
    names = CLASSES if set(items) <= set(CLASSES) else list(items)
    return [BACKGROUND, *names]


def _overlap(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    """The area two squares ``(x, y, side)`` share, over the smaller one's area."""
    (ax, ay, as_), (bx, by, bs) = a, b
    w = min(ax + as_, bx + bs) - max(ax, bx)
    h = min(ay + as_, by + bs) - max(ay, by)
    return max(w, 0) * max(h, 0) / min(as_, bs) ** 2


def _place(rng: np.random.Generator, s: int, height: int, width: int,
           earlier: list[tuple[int, int, int]]) -> tuple[int, int]:
    """A top-left corner for an ``s`` px square inside the canvas, overlapping ``earlier`` squares little."""
    best, best_overlap = (0, 0), np.inf
    for _ in range(TRIES):
        x, y = int(rng.integers(0, width - s + 1)), int(rng.integers(0, height - s + 1))
        worst = max((_overlap((x, y, s), e) for e in earlier), default=0.0)
        if worst < best_overlap:
            best, best_overlap = (x, y), worst
        if worst <= OVERLAP:
            break
    return best


def make_scene(rng: np.random.Generator, height: int = 64, width: int = 64, count: int = 1,
               items: Items | None = None, lo: int = 20, hi: int = 36, low: int = LOW, high: int = HIGH) -> Scene:
    """A scene of ``count`` items drawn with ``rng`` (classes uniform over the item classes that have items)."""
    if not 1 <= lo <= hi <= min(height, width):
        raise ValueError(f"need 1 <= lo <= hi <= the canvas side, got lo={lo}, hi={hi}, {width}x{height}")
    if not 0 <= low < high <= 255:
        raise ValueError(f"need 0 <= low < high <= 255, got low={low}, high={high}")
    items = mosaics.fashion_items() if items is None else items
    names = class_names(items)
    drawable = [k for k, name in enumerate(names) if items.get(name)]
    background = np.clip(texture(rng, height, width), 0, 255).astype(np.uint8)
    canvas = background.astype(np.float32)
    mask = np.zeros((height, width), np.uint8)
    placed: list[tuple[Placed, int]] = []
    for _ in range(count):
        k = drawable[int(rng.integers(len(drawable)))]
        source = items[names[k]][int(rng.integers(len(items[names[k]])))]
        s = int(rng.integers(lo, hi + 1))
        item = np.asarray(Image.fromarray(source).resize((s, s), Image.BILINEAR))
        x, y = _place(rng, s, height, width, [(p.x, p.y, p.item.shape[0]) for p, _ in placed])
        tint = rng.uniform(0.6, 1.0, 3).astype(np.float32)
        value = item.astype(np.float32)
        alpha = np.clip((value - low) / (high - low), 0, 1)[..., None]
        region = canvas[y:y + s, x:x + s]
        region[:] = (1 - alpha) * region + alpha * (value[..., None] * tint)
        cells = mask[y:y + s, x:x + s]
        cells[(item >= low) & (item < high)] = IGNORE
        cells[item >= high] = k
        placed.append((Placed(item, x, y), k))
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return Scene(image, mask, background, placed)


def scene(seed: int = 0, index: int = 0, size: int = 64, items: Items | None = None, max_items: int = 3,
          lo: int = 20, hi: int = 36, low: int = LOW, high: int = HIGH) -> Scene:
    """Scene ``index`` of ``seed``: ``size`` x ``size`` with 1 to ``max_items`` items, as :func:`write_segment`
    writes it."""
    # The count has a generator of its own, so that make_scene draws the texture first from [seed, index].
    count = int(np.random.default_rng([seed, index, 1]).integers(1, max_items + 1))
    return make_scene(np.random.default_rng([seed, index]), size, size, count, items, lo, hi, low, high)


def scene_image(seed: int = 0, index: int = 0, size: int = 64, items: Items | None = None, max_items: int = 3,
                lo: int = 20, hi: int = 36, low: int = LOW, high: int = HIGH) -> tuple[np.ndarray, np.ndarray]:
    """``(image, mask)`` of :func:`scene`: ``size`` x ``size`` x 3 and ``size`` x ``size`` uint8 arrays."""
    s = scene(seed, index, size, items, max_items, lo, hi, low, high)
    return s.image, s.mask


def large_scene(width: int = 160, height: int = 112, seed: int = 0, items: Items | None = None,
                count: int | None = None, lo: int = 20, hi: int = 36) -> tuple[np.ndarray, np.ndarray]:
    """``(image, mask)`` of a larger ``height`` x ``width`` scene with ``count`` items (default: one per
    2,500 px, at least 2: 7 at 160 x 112), for prediction on images larger than the training size."""
    count = max(2, width * height // 2500) if count is None else count
    s = make_scene(np.random.default_rng([seed, 1 << 20]), height, width, count, items, lo, hi)
    return s.image, s.mask


def _write_scenes(folder: Path, items: Items | None, n: int, size: int, seed: int, max_items: int, lo: int,
                  hi: int, low: int, high: int) -> list[tuple[str, str]]:
    items = mosaics.fashion_items() if items is None else items
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    pairs = []
    for i in range(n):
        image, mask = scene_image(seed, i, size, items, max_items, lo, hi, low, high)
        image_rel, mask_rel = f"images/{i:04d}.png", f"masks/{i:04d}.png"
        Image.fromarray(image, "RGB").save(folder / image_rel)
        Image.fromarray(mask, "L").save(folder / mask_rel)
        pairs.append((image_rel, mask_rel))
    (folder / "classes.txt").write_text("\n".join(class_names(items)) + "\n")
    return pairs


def write_segment(folder: str | Path, items: Items | None = None, n: int = 60, size: int = 64, seed: int = 0,
                  max_items: int = 3, lo: int = 20, hi: int = 36, low: int = LOW, high: int = HIGH) -> Path:
    """Write ``n`` scenes as ``folder/images/NNNN.png`` (RGB) and ``folder/masks/NNNN.png`` (mode ``L``, same
    name) and ``folder/classes.txt`` (the mask's class names, one a line, ``background`` first: the file for
    ``prepare --mask-classes``); returns ``folder``."""
    folder = Path(folder)
    _write_scenes(folder, items, n, size, seed, max_items, lo, hi, low, high)
    return folder


def write_segment_csv(folder: str | Path, items: Items | None = None, n: int = 60, size: int = 64, seed: int = 0,
                      max_items: int = 3, lo: int = 20, hi: int = 36, low: int = LOW, high: int = HIGH) -> Path:
    """As :func:`write_segment`, plus ``folder/pairs.csv`` (``path,mask``, paths relative to the CSV); returns
    the CSV's path."""
    import pandas as pd

    folder = Path(folder)
    pairs = _write_scenes(folder, items, n, size, seed, max_items, lo, hi, low, high)
    csv = folder / "pairs.csv"
    pd.DataFrame(pairs, columns=["path", "mask"]).to_csv(csv, index=False)
    return csv
