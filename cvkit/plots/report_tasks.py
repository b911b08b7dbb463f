"""The report's pictures of one image and what a run predicted on it: true against predicted boxes, true
against predicted keypoints, and class masks, drawn with Pillow at a size a page shows well.

The report's images are the cache's (often 28 to 64 pixels), so each is first enlarged by a whole factor
(nearest neighbour: the pixels stay sharp) and then drawn on, with lines that stay thin at any factor.
Boxes are ``(x0, y0, x1, y1)`` and points ``(x, y)`` in the image's own continuous pixel coordinates
(pixel column j spans [j, j + 1)), as the localize and regress tasks give them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from cvkit.plots.boxes import HIT_COLOUR, MISS_COLOUR, TRUE_COLOUR
from cvkit.plots.segment import colourize

MIN_SIDE = 160  # an image is enlarged until its shorter side reaches this many pixels


def enlarge(image: np.ndarray, min_side: int = MIN_SIDE) -> tuple[Image.Image, int]:
    """``image`` (H x W x 1 or 3 uint8, or H x W) as an RGB picture enlarged by a whole factor, and the factor."""
    image = np.asarray(image)
    if image.ndim == 3:
        image = image[:, :, 0] if image.shape[2] == 1 else image
    factor = max(1, -(-min_side // max(1, min(image.shape[:2]))))
    picture = Image.fromarray(np.ascontiguousarray(image)).convert("RGB")
    if factor > 1:
        picture = picture.resize((picture.width * factor, picture.height * factor), Image.NEAREST)
    return picture, factor


def _outline(draw: ImageDraw.ImageDraw, box: Sequence[float], factor: int, colour: str, size: tuple[int, int],
             dashed: bool = False) -> None:
    w, h = size
    x0, y0, x1, y1 = (float(v) * factor for v in box)
    # the last pixel inside an exclusive edge x1 is x1 - 1 (Pillow draws both end pixels)
    left, top = min(max(x0, 0), w - 1), min(max(y0, 0), h - 1)
    right, bottom = max(min(x1 - 1, w - 1), left), max(min(y1 - 1, h - 1), top)
    width = 2
    if not dashed:
        draw.rectangle((left, top, right, bottom), outline=colour, width=width)
        return
    dash = 6
    for a, b, horizontal, at in ((left, right, True, top), (left, right, True, bottom - width + 1),
                                 (top, bottom, False, left), (top, bottom, False, right - width + 1)):
        start = a
        while start <= b:
            end = min(start + dash - 1, b)
            shape = (start, at, end, at + width - 1) if horizontal else (at, start, at + width - 1, end)
            draw.rectangle(shape, fill=colour)
            start += 2 * dash


def boxes_picture(image: np.ndarray, true_box: Sequence[float], pred_box: Sequence[float], hit: bool) -> Image.Image:
    """``image`` enlarged with its true box (green, solid) and the predicted one (dashed: blue when it
    ``hits``, at IoU >= 0.5, red otherwise): the colours of evaluate's boxes.png."""
    picture, factor = enlarge(image)
    draw = ImageDraw.Draw(picture)
    _outline(draw, true_box, factor, TRUE_COLOUR, picture.size)
    _outline(draw, pred_box, factor, HIT_COLOUR if hit else MISS_COLOUR, picture.size, dashed=True)
    return picture


def points_picture(image: np.ndarray, true_points: np.ndarray, pred_points: np.ndarray) -> Image.Image:
    """``image`` enlarged with each true keypoint (green disc) joined by a line to its prediction (red
    ring); ``true_points`` and ``pred_points``: P x 2 pixels, x then y. A point that is not finite is left out."""
    picture, factor = enlarge(image)
    draw = ImageDraw.Draw(picture)
    radius = max(3.0, min(picture.size) / 40)
    pairs = zip(np.asarray(true_points, dtype=np.float64) * factor, np.asarray(pred_points, dtype=np.float64) * factor)
    for (tx, ty), (px, py) in pairs:
        true_ok, pred_ok = np.isfinite([tx, ty]).all(), np.isfinite([px, py]).all()
        if true_ok and pred_ok:
            draw.line((tx, ty, px, py), fill="white", width=1)
        if true_ok:
            draw.ellipse((tx - radius, ty - radius, tx + radius, ty + radius), fill=TRUE_COLOUR)
        if pred_ok:
            draw.ellipse((px - radius, py - radius, px + radius, py + radius), outline=MISS_COLOUR, width=2)
    return picture


def mask_picture(labels: np.ndarray) -> Image.Image:
    """An H x W map of class indices in the segmentation palette (plots/segment.py), enlarged."""
    return enlarge(colourize(labels))[0]
