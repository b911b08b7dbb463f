"""Generated images where the object's position is known: a bright shape on a textured background.

The class is the shape (disc, square, cross), so a classifier must look at the object to be right,
and its CAM can be checked against the true box. Used by the cam and visualize tests and by
bench/bench_cam.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SHAPES = ("disc", "square", "cross")


def shape_mask(kind: str, size: int, rng: np.random.Generator, canvas: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A boolean mask of one ``kind`` of shape, ``size`` px across, at a random place; and its box
    (x0, y0, x1, y1), x1 and y1 exclusive."""
    y0, x0 = (int(v) for v in rng.integers(0, canvas - size + 1, 2))
    yy, xx = np.mgrid[0:canvas, 0:canvas]
    cy, cx, r = y0 + (size - 1) / 2, x0 + (size - 1) / 2, size / 2
    inside = (yy >= y0) & (yy < y0 + size) & (xx >= x0) & (xx < x0 + size)
    if kind == "disc":
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
    elif kind == "square":
        mask = inside
    else:  # a plus sign, arms a third of the size wide
        arm = max(1, size // 3)
        mask = inside & ((np.abs(yy - cy) < arm / 2 + 0.5) | (np.abs(xx - cx) < arm / 2 + 0.5))
    ys, xs = np.nonzero(mask)
    return mask, (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


def shape_image(kind: str, rng: np.random.Generator, canvas: int = 32,
                sizes: tuple[int, int] = (10, 16)) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """One RGB image (canvas x canvas x 3, uint8) and the shape's box."""
    texture = rng.normal(0.35, 0.12, (canvas, canvas, 1)) + rng.normal(0, 0.05, (canvas, canvas, 3))
    stripes = 0.08 * np.sin(np.arange(canvas) * rng.uniform(0.5, 1.5) + rng.uniform(0, 6))[None, :, None]
    image = texture + stripes
    mask, box = shape_mask(kind, int(rng.integers(sizes[0], sizes[1] + 1)), rng, canvas)
    colour = rng.uniform(0.8, 1.0, 3)
    image[mask] = colour + rng.normal(0, 0.03, (int(mask.sum()), 3))
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8), box


def write_shapes(root: Path, per_class: int, canvas: int = 32, seed: int = 0,
                 sizes: tuple[int, int] = (10, 16)) -> Path:
    """``root/images/<shape>/<i>.png`` for every shape, and ``root/boxes.csv`` (path,x0,y0,x1,y1,
    paths relative to root, as ``cam --boxes`` reads them). Returns ``root/images``, a class-folder
    source for ``cvkit prepare``."""
    rng = np.random.default_rng(seed)
    lines = ["path,x0,y0,x1,y1"]
    for kind in SHAPES:
        (root / "images" / kind).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image, box = shape_image(kind, rng, canvas, sizes)
            Image.fromarray(image).save(root / "images" / kind / f"{i:03d}.png")
            lines.append(f"images/{kind}/{i:03d}.png,{box[0]},{box[1]},{box[2]},{box[3]}")
    (root / "boxes.csv").write_text("\n".join(lines) + "\n")
    return root / "images"
