"""A convolutionalized classifier as a segmenter, with no training: its score maps, upsampled to the image.

The first way to segment the subject teaches: slide the classifier over the image (a
:class:`~cvkit.models.convolutional.DenseNet` gives one cell of class scores per window), then put
each cell's scores at the centre of its window and interpolate linearly between centres ("upsample"),
or first make the map as dense as the input by shift-and-stitch ("stitch": the input shifted by every
offset below the output stride, the outputs interleaved). The result, N x K x H x W, is what a
segmentation net outputs, so ``evaluate`` and ``predict`` score and draw it as they do a U-Net's.
``cvkit convolutionalize RUN --segmenter upsample|stitch`` writes such a run.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MODES = ("upsample", "stitch")


def stitch(model: nn.Module, x: torch.Tensor, factor: tuple[int, int], batch_size: int = 16) -> torch.Tensor:
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


def _axis(n: int, centre: float, stride: float, length: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """For each pixel of an axis: the two cells whose centres surround it and the weight of the second
    (pixels beyond the first or last centre take that cell's value)."""
    u = ((torch.arange(length, device=device, dtype=torch.float32) - centre) / stride).clamp(0, n - 1)
    i0 = u.floor().long()
    return i0, (i0 + 1).clamp(max=n - 1), u - i0


def place(maps: torch.Tensor, centre: tuple[float, float], stride: tuple[float, float],
          size: tuple[int, int]) -> torch.Tensor:
    """(N, K, n, m) cell scores -> (N, K, H, W) in the image's frame: cell (i, j) at ``centre + (i, j) *
    stride``, linearly interpolated between centres."""
    y0, y1, wy = _axis(maps.shape[2], centre[0], stride[0], size[0], maps.device)
    x0, x1, wx = _axis(maps.shape[3], centre[1], stride[1], size[1], maps.device)
    rows = maps[:, :, y0] * (1 - wy)[:, None] + maps[:, :, y1] * wy[:, None]
    return rows[..., x0] * (1 - wx) + rows[..., x1] * wx


class ScoreMapSegmenter(nn.Module):
    """N x C x H x W -> N x K x H x W logits from a convolutionalized classifier's score maps. An image
    smaller than the classifier's input (``min_size``) is mirror-padded to it and the maps cut back."""

    dense = True

    def __init__(self, net: nn.Module, mode: str, stride: tuple[int, int], centre: tuple[float, float],
                 min_size: tuple[int, int], order: list[int] | None = None) -> None:
        """``order``: the classifier's output of each class of the segmenter (its classes in another order)."""
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} must be one of {', '.join(MODES)}")
        self.net, self.mode = net, mode
        self.order = None if order is None else [int(i) for i in order]
        self.stride, self.centre, self.min_size = tuple(stride), tuple(centre), tuple(min_size)
        self.num_features = getattr(net, "num_features", 0)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.net.forward_head(x, pre_logits)

    def get_classifier(self) -> nn.Module:
        return self.net.get_classifier()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        padded = x
        while padded.shape[2] < self.min_size[0] or padded.shape[3] < self.min_size[1]:
            dh = min(max(0, self.min_size[0] - padded.shape[2]), padded.shape[2] - 1)
            dw = min(max(0, self.min_size[1] - padded.shape[3]), padded.shape[3] - 1)
            padded = F.pad(padded, (0, dw, 0, dh), mode="reflect")
        size = (int(padded.shape[2]), int(padded.shape[3]))
        if self.mode == "stitch":  # a cell per input pixel: stride 1, the same centre
            maps = torch.stack([stitch(self.net, padded[i:i + 1], self.stride) for i in range(len(padded))])
            out = place(maps, self.centre, (1.0, 1.0), size)
        else:
            out = place(self.net.score_maps(padded), self.centre, self.stride, size)
        out = out[:, :, :h, :w]
        return out if self.order is None else out[:, self.order]
