"""Pictures of segmentations: label maps as palette PNGs, overlays, and evaluate's worst images beside
their true and predicted masks.

Class ``c`` has the colour of Pascal VOC's palette (background black); ignored pixels (255) are white.
Label maps are written as palette ("P") PNGs whose pixel values are the class indices, so a label map
is itself a mask ``cvkit prepare --masks`` reads back.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from cvkit.files.atomic import atomic_path
from cvkit.files.dataset import IGNORE_INDEX
from cvkit.plots import _figure, _save

OVERLAY_ALPHA = 0.5  # the colour's weight where a class other than the background is predicted


def palette() -> np.ndarray:
    """256 x 3 uint8: Pascal VOC's colours (bit-interleaved class index), 255 white."""
    colours = np.zeros((256, 3), dtype=np.uint8)
    for c in range(256):
        r = g = b = 0
        value = c
        for bit in range(8):
            r |= ((value >> 0) & 1) << (7 - bit)
            g |= ((value >> 1) & 1) << (7 - bit)
            b |= ((value >> 2) & 1) << (7 - bit)
            value >>= 3
        colours[c] = (r, g, b)
    colours[IGNORE_INDEX] = (255, 255, 255)
    return colours


def colourize(labels: np.ndarray) -> np.ndarray:
    """H x W class indices -> H x W x 3 uint8 colours."""
    return palette()[np.asarray(labels, dtype=np.int64).clip(0, 255)]


def write_label_map(labels: np.ndarray, path: str | os.PathLike) -> None:
    """A palette PNG of H x W class indices (values are the classes; the palette only shows them)."""
    from PIL import Image

    picture = Image.fromarray(np.asarray(labels, dtype=np.uint8), "P")
    picture.putpalette(palette().reshape(-1).tolist())
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG")


def overlay(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``image`` (H x W x 1 or 3 uint8) with each non-background pixel tinted by its class's colour."""
    image = np.asarray(image)
    rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image
    tint = (labels != 0)[..., None] * OVERLAY_ALPHA
    return np.rint(rgb * (1 - tint) + colourize(labels) * tint).astype(np.uint8)


def write_overlay(image: np.ndarray, labels: np.ndarray, path: str | os.PathLike) -> None:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(overlay(image, labels)).save(tmp, format="PNG")


def plot_worst(images: np.ndarray, true: np.ndarray, predicted: np.ndarray, classes: Sequence[str],
               titles: Sequence[str], path: str | os.PathLike) -> None:
    """One row per image: the image, its true mask and the predicted one, with a legend of the classes."""
    from matplotlib.patches import Patch

    n = len(images)
    if not n == len(true) == len(predicted) == len(titles):
        raise ValueError("images, true, predicted and titles must have the same length")
    fig = _figure(7.5, 2.3 * n + 0.8)
    colours = palette()
    for i in range(n):
        image = images[i]
        for j, (picture, name) in enumerate(((image[:, :, 0] if image.shape[2] == 1 else image, "image"),
                                             (colourize(true[i]), "true"), (colourize(predicted[i]), "predicted"))):
            ax = fig.add_subplot(n, 3, 3 * i + j + 1)
            ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(titles[i] if j == 0 else name, fontsize=8)
    handles = [Patch(color=colours[c] / 255, label=name) for c, name in enumerate(classes)]
    fig.legend(handles=handles, loc="lower center", ncol=min(6, len(classes)), fontsize=7, frameon=False)
    _save(fig, path)
