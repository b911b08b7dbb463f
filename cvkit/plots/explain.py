"""CAM pictures: a heatmap over the image, the box from the map, and the class and score above.

Drawn with Pillow and a colour table instead of a matplotlib figure per image: ``cam`` writes one
overlay per image and map, and on a folder of thousands a figure each would cost more than the maps.
"""

from __future__ import annotations

import os
from functools import cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cvkit.files.atomic import atomic_path

MIN_SIDE = 256  # small images (28-64 px) are enlarged to this side so the map and title are legible
ALPHA = 0.5  # weight of the heatmap over the image
TITLE_HEIGHT = 22
BOX_COLOUR = (255, 255, 255)


@cache
def _colours(name: str = "jet") -> np.ndarray:
    """256 x 3 uint8: the colour of each map level."""
    from matplotlib import colormaps

    return (colormaps[name](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)


def heatmap(m: np.ndarray) -> np.ndarray:
    """A map in [0, 1] (H x W) as an RGB image (H x W x 3 uint8)."""
    return _colours()[np.clip(np.nan_to_num(m) * 255, 0, 255).astype(np.uint8)]


def overlay(image: np.ndarray, m: np.ndarray) -> np.ndarray:
    """The heatmap of ``m`` blended over ``image`` (H x W x 1|3 uint8, same H x W as ``m``)."""
    rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image
    return (rgb * (1 - ALPHA) + heatmap(m) * ALPHA).round().astype(np.uint8)


def write_cam_overlay(image: np.ndarray, m: np.ndarray, box: tuple[int, int, int, int] | None, title: str,
                      path: str | os.PathLike) -> None:
    """The overlay PNG of one map: heatmap over the image, ``box`` (x0, y0, x1, y1 in the image's
    pixels, x1/y1 exclusive) drawn on it, ``title`` above."""
    h, w = m.shape
    scale = max(1, -(-MIN_SIDE // max(h, w)))  # ceil
    picture = Image.fromarray(overlay(image, m)).resize((w * scale, h * scale), Image.Resampling.NEAREST
                                                         if scale > 1 else Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (w * scale, h * scale + TITLE_HEIGHT), (255, 255, 255))
    canvas.paste(picture, (0, TITLE_HEIGHT))
    draw = ImageDraw.Draw(canvas)
    if box is not None:
        x0, y0, x1, y1 = box
        draw.rectangle([x0 * scale, y0 * scale + TITLE_HEIGHT, x1 * scale - 1, y1 * scale - 1 + TITLE_HEIGHT],
                       outline=BOX_COLOUR, width=2)
    draw.text((4, 3), title, fill=(0, 0, 0), font=_font())
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG", compress_level=1)


@cache
def _font() -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=14)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()
