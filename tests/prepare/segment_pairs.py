"""Small image + mask pairs for ``prepare --masks`` tests: scikit-learn's 8 x 8 handwritten digits (bundled
with scikit-learn, no download) scaled up and pasted on a noisy RGB background.

The mask of each image holds, for each pasted digit ``d`` (0 to ``CLASSES - 2``), the class ``d + 1``
where the scaled digit is at least ``HIGH`` bright, 255 (ignore) on its faint edge (``LOW`` <= value <
``HIGH``), 0 (background) elsewhere. Image ``i`` draws from ``default_rng([seed, i])`` only.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

NAMES = ["background", "zero", "one", "two", "three"]  # mask value = index; digit d is class d + 1
LOW, HIGH = 3.0, 8.0  # on the digits' 0-16 scale


@lru_cache(maxsize=1)
def digits() -> dict[int, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return {d: data.images[data.target == d].astype(np.float32) for d in range(len(NAMES) - 1)}


def pair(seed: int, i: int, size: tuple[int, int] = (48, 48), count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(image, mask)``: an H x W x 3 uint8 image and its H x W uint8 mask (``size`` is height, width)."""
    rng = np.random.default_rng([seed, i])
    h, w = size
    canvas = rng.normal(90, 25, (h, w, 3)).clip(0, 255).astype(np.float32)
    mask = np.zeros((h, w), np.uint8)
    for _ in range(int(rng.integers(1, 3)) if count is None else count):
        d = int(rng.integers(len(NAMES) - 1))
        bank = digits()[d]
        side = int(rng.integers(16, min(h, w, 28) + 1))
        glyph = np.asarray(Image.fromarray(bank[int(rng.integers(len(bank)))], "F").resize((side, side), Image.BILINEAR))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        colour = rng.uniform(150, 255, 3).astype(np.float32)
        alpha = np.clip((glyph - LOW) / (HIGH - LOW), 0, 1)[..., None]
        region = canvas[y:y + side, x:x + side]
        region[:] = (1 - alpha) * region + alpha * colour
        cells = mask[y:y + side, x:x + side]
        cells[(glyph >= LOW) & (glyph < HIGH)] = 255
        cells[glyph >= HIGH] = d + 1
    return np.rint(canvas).astype(np.uint8), mask


def save_mask(path: Path, mask: np.ndarray, mode: str = "L") -> Path:
    """Write ``mask`` as a grayscale (``L``) or palette (``P``, colours unrelated to the index) PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "P":
        img = Image.fromarray(mask, "P")
        palette = np.random.default_rng(7).integers(0, 256, (256, 3), dtype=np.uint8)  # colour != index
        img.putpalette(palette.ravel().tolist())
        img.save(path)
    else:
        Image.fromarray(mask, "L").save(path)
    return path


def write_pairs(folder: Path, n: int = 32, seed: int = 0, size: tuple[int, int] = (48, 48),
                sub: str = "") -> Path:
    """``folder/images[/sub]/NNN.png`` and ``folder/masks[/sub]/NNN.png`` (every third mask a palette PNG),
    plus ``folder/classes.txt``; returns ``folder``."""
    for i in range(n):
        image, mask = pair(seed, i, size)
        target = folder / "images" / sub / f"{i:03d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, "RGB").save(target)
        save_mask(folder / "masks" / sub / f"{i:03d}.png", mask, "P" if i % 3 == 0 else "L")
    (folder / "classes.txt").write_text("\n".join(NAMES) + "\n")
    return folder
