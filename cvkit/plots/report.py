"""Pictures of ``cvkit report``'s run page that no other command draws: a dataset image enlarged so that
28-32 px images stay legible in the page, as a PIL image the page writer encodes.

The page's other pictures are the commands' own (evaluate's confusion matrix, train's curves, cam's
overlays) or drawn by their plots functions (curves, reliability diagrams, the augmentation preview).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

TILE = 112  # pixels on the longer side of an image shown in the page (small images are enlarged)


def tile(image: np.ndarray, side: int = TILE) -> Image.Image:
    """A dataset image (H x W x 1|3 uint8) scaled so that its longer side is ``side`` pixels: enlarged by
    whole-pixel blocks (nearest neighbour, so a 28 px digit stays sharp), shrunk smoothly."""
    array = np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3):
        raise ValueError(f"image must be H x W x 1 or H x W x 3 uint8, got {array.shape}")
    picture = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
    h, w = array.shape[:2]
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size == (w, h):
        return picture
    return picture.resize(size, Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.LANCZOS)
