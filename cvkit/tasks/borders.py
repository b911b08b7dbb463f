"""U-Net's border weight map (Ronneberger et al. 2015, eq. 2), computed once per mask, never per step.

``w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2))``, with ``d1`` and ``d2`` the distances
from pixel ``x`` to the nearest and the second nearest object. An object is a connected region
(4-neighbourhood) of one foreground class (every class but the background, 0, and the ignored
value); two touching regions of different classes are two objects. The border term applies to
background pixels, the gaps the paper's weights make the network learn to keep open; a mask with
fewer than two objects has none.

:func:`border_planes` stores ``exp(...)`` as uint8 (0..255 for 0..1) beside each mask, so it moves
with the mask under augmentation; the loss multiplies it by ``w0``.
"""

from __future__ import annotations

import numpy as np

from cvkit.files.dataset import IGNORE_INDEX
from cvkit.progress import progress_bar

BACKGROUND = 0


def two_nearest(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``d1`` and ``d2`` of every pixel of one H x W mask, in pixels (inf where there are fewer objects)."""
    from scipy import ndimage

    h, w = mask.shape
    d1 = np.full((h, w), np.inf)
    d2 = np.full((h, w), np.inf)
    for value in np.unique(mask):
        if value in (BACKGROUND, IGNORE_INDEX):
            continue
        regions, count = ndimage.label(mask == value)
        for region in range(1, count + 1):
            # distance from each pixel to the nearest pixel of this object (0 on it)
            d = ndimage.distance_transform_edt(regions != region)
            d2 = np.where(d < d1, d1, np.minimum(d2, d))
            d1 = np.minimum(d1, d)
    return d1, d2


def border_term(mask: np.ndarray, sigma: float) -> np.ndarray:
    """``exp(-(d1 + d2)^2 / (2 sigma^2))`` on the background pixels of one mask, 0 elsewhere (float64)."""
    d1, d2 = two_nearest(mask)
    with np.errstate(invalid="ignore", over="ignore"):
        term = np.exp(-((d1 + d2) ** 2) / (2 * sigma**2))
    return np.where((mask == BACKGROUND) & np.isfinite(d2), term, 0.0)


def border_planes(masks: np.ndarray, sigma: float) -> np.ndarray:
    """N x H x W uint8: :func:`border_term` of each mask, scaled to 0..255."""
    out = np.zeros(masks.shape, dtype=np.uint8)
    with progress_bar("Border weights", total=len(masks)) as bar:
        for i in range(len(masks)):
            out[i] = np.rint(border_term(np.asarray(masks[i]), sigma) * 255)
            bar.advance(1)
    return out
