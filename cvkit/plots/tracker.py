"""Pictures ``train --log`` sends to a tracker each epoch, as H x W x 3 uint8 arrays: cheap to draw.

The confusion matrix is drawn with Pillow, cell by cell, not with matplotlib: a tracker receives one
per epoch, and the annotated figure of ``plot_confusion_matrix`` takes about as long as a few hundred
training steps of a small net to lay out.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cvkit.plots import confusion_rates
from cvkit.plots.visualize import colour, mosaic

GRID_GAP = (40, 90, 160)  # a colour of its own between a batch's tiles: the images may be black or white
NAME_CHARS = 14  # a class name is cut to this many characters beside its row


def batch_grid(x: np.ndarray, cols: int = 8) -> np.ndarray:
    """N x C x H x W values in [0, 1] as one mosaic, ``cols`` a row: three channels as colour, else the first
    as grey."""
    tiles = np.asarray(x).transpose(0, 2, 3, 1)
    tiles = tiles if tiles.shape[3] == 3 else tiles[..., 0]
    return mosaic(tiles, max(1, min(cols, len(tiles))), cmap="gray", gap=GRID_GAP)


def confusion_pixels(matrix: np.ndarray, classes: list[str], title: str = "") -> np.ndarray:
    """Rows the true class, columns the predicted one (numbered as the rows), each cell coloured by its
    share of its row (the true class's recall on the diagonal) and, up to 20 classes, holding its count."""
    matrix, rates = confusion_rates(matrix, classes)
    k = len(classes)
    cell = int(np.clip(720 // max(k, 1), 4, 36))
    font = _font(min(14, cell - 1))  # the names' rows are a cell high
    names = [f"{i} {str(name)[:NAME_CHARS]}" for i, name in enumerate(classes)]
    heading = f"{title}  (rows: true, columns: predicted)".strip()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength
    left = int(max(measure(n, font=font) for n in names)) + 8
    top = 44
    width = max(left + k * cell, int(measure(heading, font=_font(14))) + 4) + 8
    canvas = Image.new("RGB", (width, top + k * cell + 8), (255, 255, 255))
    cells = np.repeat(np.repeat(colour(rates, "Blues"), cell, axis=0), cell, axis=1)
    canvas.paste(Image.fromarray(cells), (left, top))
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 2), heading, fill=(0, 0, 0), font=_font(14))
    for i, name in enumerate(names):
        draw.text((4, top + i * cell + cell // 2), name, fill=(0, 0, 0), font=font, anchor="lm")
        if cell >= 14:
            draw.text((left + i * cell + cell // 2, top - 4), str(i), fill=(0, 0, 0), font=font, anchor="mb")
    if k <= 20 and cell >= 24:
        for (t, p), count in np.ndenumerate(matrix):
            if count:
                draw.text((left + p * cell + cell // 2, top + t * cell + cell // 2), str(int(count)), font=font,
                          fill=(255, 255, 255) if rates[t, p] > 0.5 else (0, 0, 0), anchor="mm")
    return np.asarray(canvas)


@cache
def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=max(4, size))
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()
