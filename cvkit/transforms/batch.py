"""Batched, on-device preprocessing: uint8 NHWC batches in, normalized float NCHW batches out.

Augmentation runs on whole batches on the training device (no per-image Python): flips with
``torch.where``, translation / rotation / scaling with one ``affine_grid`` + ``grid_sample``,
photometric jitter with per-sample factors, mixup and cutmix with a shuffled partner batch.
The policy comes from the training options and the dataset's ``augment.json``.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
import torch.nn.functional as F

from cvkit.transforms.policy import AugmentPolicy


class Preprocess:
    """uint8 N x H x W x C -> float N x C x H x W, scaled to [0, 1] then normalized with stats.json.

    The permute of an NHWC batch is already channels-last in memory; ``contiguous`` asks for NCHW.
    """

    def __init__(self, mean: list[float], std: list[float], device: torch.device,
                 mean_image: np.ndarray | None = None, channels_last: bool = True) -> None:
        c = len(mean)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, c, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, c, 1, 1)
        if mean_image is not None:  # per-pixel zero-centering (normalize --mode pixel)
            self.mean = torch.as_tensor(mean_image, dtype=torch.float32, device=device).permute(2, 0, 1)[None]
        self.device = device
        self.channels_last = channels_last

    def to_unit(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
        return x if self.channels_last else x.contiguous()

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return self.normalize(self.to_unit(batch))


def _uniform(n: int, bound: float, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    return (torch.rand(n, generator=gen) * 2 - 1).mul_(bound).to(device)


def augment(x: torch.Tensor, policy: AugmentPolicy, gen: torch.Generator) -> torch.Tensor:
    """Augment a float batch in [0, 1] (N x C x H x W) on its device; random draws come from ``gen`` (CPU)."""
    n, _, h, w = x.shape
    dev = x.device
    if policy.hflip:
        flip = (torch.rand(n, generator=gen) < policy.hflip).to(dev).view(n, 1, 1, 1)
        x = torch.where(flip, x.flip(3), x)
    if policy.vflip:
        flip = (torch.rand(n, generator=gen) < policy.vflip).to(dev).view(n, 1, 1, 1)
        x = torch.where(flip, x.flip(2), x)
    if policy.geometric:
        x = _affine(x, policy, gen)
    if policy.brightness:
        x = x + _uniform(n, policy.brightness, gen, dev).view(n, 1, 1, 1)
    if policy.contrast:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * (1 + _uniform(n, policy.contrast, gen, dev)).view(n, 1, 1, 1) + mean
    if policy.brightness or policy.contrast:
        x = x.clamp_(0.0, 1.0)
    return x


def _shift(x: torch.Tensor, max_dy: int, max_dx: int, gen: torch.Generator) -> torch.Tensor:
    """Pad-and-crop: shift each image by whole pixels, zeros coming in, as two gathers (no resampling)."""
    n, c, h, w = x.shape
    dy = torch.randint(0, 2 * max_dy + 1, (n,), generator=gen).to(x.device)
    dx = torch.randint(0, 2 * max_dx + 1, (n,), generator=gen).to(x.device)
    padded = F.pad(x, (max_dx, max_dx, max_dy, max_dy))
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None].expand(n, c, h, w + 2 * max_dx)
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :].expand(n, c, h, w)
    out = padded.gather(2, rows).gather(3, cols)  # NCHW-contiguous
    # Keep the input's memory format: a channels-last batch reaching a contiguous model (or the
    # reverse) makes every convolution reorder its weights (measured: 40% slower steps).
    return out if x.is_contiguous() else out.contiguous(memory_format=torch.channels_last)


def _affine(x: torch.Tensor, policy: AugmentPolicy, gen: torch.Generator) -> torch.Tensor:
    n, _, h, w = x.shape
    if policy.translate and not (policy.rotate or policy.scale != [1.0, 1.0]):
        return _shift(x, round(policy.translate * h), round(policy.translate * w), gen)
    cpu = torch.device("cpu")
    angle = _uniform(n, math.radians(policy.rotate), gen, cpu)
    lo, hi = policy.scale
    zoom = lo + torch.rand(n, generator=gen) * (hi - lo)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    shift_x, shift_y = _uniform(n, 2 * policy.translate, gen, cpu), _uniform(n, 2 * policy.translate, gen, cpu)
    theta = torch.stack([torch.stack([cos, -sin * h / w, shift_x], 1), torch.stack([sin * w / h, cos, shift_y], 1)], 1)
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _beta(alpha: float, gen: torch.Generator) -> float:
    """A Beta(alpha, alpha) draw from the augmentation generator, so the same seed mixes the same way
    (torch.distributions samples from the global RNG)."""
    seed = int(torch.randint(0, 2**62, (1,), generator=gen))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def mix(x: torch.Tensor, targets: torch.Tensor, policy: AugmentPolicy, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup or cutmix (one of them per batch, half the time each when both are on).

    ``targets`` are one-hot (or smoothed) N x K; the mixed targets are weighted the same way as the pixels.
    """
    use_cutmix = policy.cutmix and (not policy.mixup or torch.rand(1, generator=gen).item() < 0.5)
    alpha = policy.cutmix if use_cutmix else policy.mixup
    lam = _beta(alpha, gen) if alpha else 1.0
    perm = torch.randperm(x.shape[0], generator=gen).to(x.device)
    if use_cutmix:
        h, w = x.shape[2:]
        ch, cw = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
        cy, cx = torch.randint(h, (1,), generator=gen).item(), torch.randint(w, (1,), generator=gen).item()
        y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
        x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
        x = x.clone()
        x[:, :, y0:y1, x0:x1] = x[perm, :, y0:y1, x0:x1]
        lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)
    else:
        x = x * lam + x[perm] * (1 - lam)
    return x, targets * lam + targets[perm] * (1 - lam)
