"""Per-pixel probabilities of an image of any size from a dense (segmentation) run: overlapping tiles.

The image is cut into tiles of the run's input size, placed evenly so that neighbours overlap by at
least ``OVERLAP`` of a tile; each tile's probabilities are weighted by a window that falls towards the
tile's edges (where a convolution saw padding instead of the neighbouring pixels) and the weighted
sum is divided by the summed weights. An image smaller than a tile is mirror-padded to one. Tiles go
through the model in batches.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from cvkit.device import autocast

OVERLAP = 0.25  # the least share of a tile its neighbour covers too
EDGE_WEIGHT = 0.1  # the window's weight at a tile's edge (1 at its centre)


def tile_starts(length: int, tile: int) -> list[int]:
    """Where tiles of ``tile`` pixels start to cover ``length`` pixels with the overlap (the last ends at the end)."""
    if length <= tile:
        return [0]
    stride = max(1, int(tile * (1 - OVERLAP)))
    count = math.ceil((length - tile) / stride) + 1
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def window(h: int, w: int) -> torch.Tensor:
    """H x W blending weights: a tent from ``EDGE_WEIGHT`` at the edges to 1 at the centre, per axis."""
    def ramp(n: int) -> torch.Tensor:
        x = (torch.arange(n, dtype=torch.float32) + 0.5) / n
        return EDGE_WEIGHT + (1 - EDGE_WEIGHT) * (1 - (2 * x - 1).abs())
    return ramp(h)[:, None] * ramp(w)[None, :]


def _mirror_to(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Pad a 1 x C x h' x w' image by reflection (repeatedly, for a small one) to at least h x w."""
    while x.shape[2] < h or x.shape[3] < w:
        dh = min(h - x.shape[2], x.shape[2] - 1) if x.shape[2] < h else 0
        dw = min(w - x.shape[3], x.shape[3] - 1) if x.shape[3] < w else 0
        if dh <= 0 and dw <= 0:  # a 1-pixel side cannot be reflected: repeat it
            return F.pad(x, (0, max(0, w - x.shape[3]), 0, max(0, h - x.shape[2])), mode="replicate")
        x = F.pad(x, (0, max(dw, 0), 0, max(dh, 0)), mode="reflect")
    return x


@torch.no_grad()
def predict_tiled(model: torch.nn.Module, image: np.ndarray, pre, tile: tuple[int, int], probabilities,
                  precision: str = "fp32", batch_size: int = 32, flip_back=None) -> np.ndarray:
    """K x H x W float32 probabilities of one H x W x C uint8 image (``probabilities``: the task's map from
    outputs; ``flip_back``: with it, each tile is averaged with its mirror, predict --tta)."""
    h, w = image.shape[:2]
    th, tw = tile
    x = pre.to_unit(torch.from_numpy(np.array(image))[None])  # a writable copy
    x = _mirror_to(x, th, tw)
    ph, pw = x.shape[2:]
    weights = window(th, tw).to(pre.device)
    total, norm = None, torch.zeros(ph, pw, device=pre.device)
    corners = [(y, z) for y in tile_starts(ph, th) for z in tile_starts(pw, tw)]
    for i in range(0, len(corners), batch_size):
        chunk = corners[i:i + batch_size]
        batch = pre.normalize(torch.cat([x[:, :, y:y + th, z:z + tw] for y, z in chunk]))
        with autocast(pre.device, precision):
            p = probabilities(model(batch)).float()
            if flip_back is not None:
                p = (p + flip_back(probabilities(model(batch.flip(3)))).float()) / 2
        if total is None:
            total = torch.zeros(p.shape[1], ph, pw, device=pre.device)
        for (y, z), part in zip(chunk, p):
            total[:, y:y + th, z:z + tw] += part * weights
            norm[y:y + th, z:z + tw] += weights
    return (total / norm)[:, :h, :w].cpu().numpy()
