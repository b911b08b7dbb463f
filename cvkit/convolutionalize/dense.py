"""Score maps of a :class:`~cvkit.models.convolutional.DenseNet`: plain, shift-and-stitch, and in the image's frame."""

from __future__ import annotations

import numpy as np
import torch

from cvkit.models.receptive import ReceptiveField


def stitch(model: torch.nn.Module, x: torch.Tensor, factor: tuple[int, int], batch_size: int = 16) -> torch.Tensor:
    """Shift-and-stitch: the (1, C, H, W) input shifted by every (dy, dx) below ``factor``, each copy cut
    to the same size, through the net; the outputs interleaved into a map ``factor`` times denser.
    Cell (i*fy + dy, j*fx + dx) of the result is cell (i, j) of the copy shifted by (dy, dx): the window
    whose centre lies dy, dx pixels past that of cell (i, j) of the unshifted image."""
    fy, fx = factor
    h, w = x.shape[2] - fy + 1, x.shape[3] - fx + 1
    shifts = [(dy, dx) for dy in range(fy) for dx in range(fx)]
    outs = []
    for b in range(0, len(shifts), batch_size):
        crops = torch.cat([x[:, :, dy:dy + h, dx:dx + w] for dy, dx in shifts[b:b + batch_size]])
        outs.append(model.score_maps(crops))
    maps = torch.cat(outs)  # (fy * fx, K, n, m)
    k, n, m = maps.shape[1:]
    return maps.view(fy, fx, k, n, m).permute(2, 3, 0, 4, 1).reshape(k, n * fy, m * fx)


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
