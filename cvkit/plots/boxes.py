"""Pictures of boxes: evaluate's grid of true and predicted boxes (``boxes.png``), and one image with its
predicted box and class for predict (drawn with Pillow: one small PNG per image, fast).

Boxes are ``(x0, y0, x1, y1)`` in the image's continuous pixel coordinates (pixel column j spans
[j, j + 1), ``x1``/``y1`` exclusive).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from cvkit.files.atomic import atomic_path
from cvkit.plots import _image_grid, _save

TRUE_COLOUR = "limegreen"
HIT_COLOUR = "deepskyblue"  # a predicted box with IoU >= 0.5
MISS_COLOUR = "red"
OVERLAY_RGB = (255, 48, 48)


def plot_boxes(images: np.ndarray, true_boxes: np.ndarray, pred_boxes: np.ndarray, titles: Sequence[str],
               hits: Sequence[bool], path: str | os.PathLike, cols: int = 4) -> None:
    """A grid of images (N x H x W x 1 or 3 uint8), each with its true box (green) and predicted box
    (blue when it ``hits``, red otherwise), titled with ``titles``."""
    from matplotlib.patches import Rectangle

    images = np.asarray(images)
    n = len(images)
    if not n == len(true_boxes) == len(pred_boxes) == len(titles) == len(hits):
        raise ValueError("images, true_boxes, pred_boxes, titles and hits must have the same length")
    h, w = images.shape[1:3] if n else (1, 1)
    fig, axes = _image_grid(images, cols, extra_height=0.3)
    for i, ax in enumerate(axes):
        for box, colour, style in ((true_boxes[i], TRUE_COLOUR, "-"),
                                   (pred_boxes[i], HIT_COLOUR if hits[i] else MISS_COLOUR, "--")):
            x0, y0, x1, y1 = (float(v) for v in box)
            # imshow centres pixel j on j, so its edges are at j - 0.5 and j + 0.5
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor=colour,
                                   linewidth=1.5, linestyle=style))
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
        ax.set_title(titles[i], fontsize=8)
        ax.axis("off")
    fig.suptitle("label / predicted; green: true box, blue: predicted (IoU >= 0.5), red: predicted (IoU < 0.5)",
                 fontsize=8)
    _save(fig, path)


def draw_box_overlay(image: np.ndarray, box: Sequence[float], text: str, path: str | os.PathLike) -> None:
    """``image`` (H x W x 1 or 3 uint8) with ``box`` outlined and ``text`` (the class and its score)
    written above it, as a PNG at ``path``."""
    from PIL import Image, ImageDraw

    image = np.asarray(image)
    picture = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image).convert("RGB")
    h, w = image.shape[:2]
    width = max(1, round(min(h, w) / 150))
    x0, y0, x1, y1 = (float(v) for v in box)
    # Pillow's rectangle covers both end pixels: the last pixel inside an exclusive edge x1 is x1 - 1
    left, top = min(max(x0, 0), w - 1), min(max(y0, 0), h - 1)
    right, bottom = max(min(x1 - 1, w - 1), left), max(min(y1 - 1, h - 1), top)
    draw = ImageDraw.Draw(picture)
    draw.rectangle((left, top, right, bottom), outline=OVERLAY_RGB, width=width)
    tl, tt, tr, tb = draw.textbbox((0, 0), text)
    above = top - (tb - tt) - 3
    tx, ty = left, (above if above >= 0 else min(bottom + 2, max(h - (tb - tt) - 2, 0)))  # below when no room
    draw.rectangle((tx, ty, tx + tr - tl + 3, ty + tb - tt + 2), fill=OVERLAY_RGB)
    draw.text((tx + 2 - tl, ty + 1 - tt), text, fill=(255, 255, 255))
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG")
