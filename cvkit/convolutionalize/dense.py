"""Score maps of a :class:`~cvkit.models.convolutional.DenseNet`: plain, shift-and-stitch, and in the image's frame."""

from __future__ import annotations

import numpy as np
import torch

from cvkit.models.receptive import ReceptiveField
from cvkit.models.scoremaps import stitch  # noqa: F401 - convolutionalize's score maps use it from here


def _axis(n: int, centre: float, stride: float, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each pixel of an axis: the two cells whose centres surround it and the weight of the second
    (pixels beyond the first or last centre take that cell's value)."""
    u = np.clip((np.arange(length) - centre) / stride, 0, n - 1)
    i0 = np.floor(u).astype(np.int64)
    i1 = np.minimum(i0 + 1, n - 1)
    return i0, i1, (u - i0).astype(np.float32)


def upsample(maps: np.ndarray, rf: ReceptiveField, size: tuple[int, int], stride: tuple[float, float] | None = None,
             ) -> np.ndarray:
    """(K, n, m) cell scores -> (K, H, W) in the image's frame: each cell's score placed at the centre of
    its receptive field (``rf.centre`` + index x stride) and linearly interpolated between, so pixel (y, x)
    holds the score of the window centred there. ``stride`` overrides ``rf.stride`` (stitched maps)."""
    sy, sx = stride or rf.stride
    y0, y1, wy = _axis(maps.shape[1], rf.centre[0], sy, size[0])
    x0, x1, wx = _axis(maps.shape[2], rf.centre[1], sx, size[1])
    rows = maps[:, y0] * (1 - wy)[None, :, None] + maps[:, y1] * wy[None, :, None]
    return rows[:, :, x0] * (1 - wx) + rows[:, :, x1] * wx
