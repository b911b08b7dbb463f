"""Mixup and cutmix: each image blended with, or patched from, a partner in the shuffled batch,
with soft targets weighted like the pixels (Zhang et al. 2018; Yun et al. 2019)."""

from __future__ import annotations

import math

import numpy as np
import torch

from cvkit.transforms.policy import AugmentPolicy


def _beta(alpha: float, gen: torch.Generator) -> float:
    """A Beta(alpha, alpha) draw from the augmentation generator, so the same seed mixes the same way
    (torch.distributions samples from the global RNG)."""
    seed = int(torch.randint(0, 2**62, (1,), generator=gen))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def mix(x: torch.Tensor, targets: torch.Tensor, policy: AugmentPolicy, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup or cutmix (one of them per batch, half the time each when both are on).

    ``targets`` are one-hot (or smoothed) N x K; the mixed targets are weighted the same way as the pixels.
    Per-pixel targets (N x P x H x W, segment's) take cutmix only: the pasted box's targets are pasted too.
    """
    dense = targets.dim() == 4
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
        if dense:
            targets = targets.clone()
            targets[:, :, y0:y1, x0:x1] = targets[perm, :, y0:y1, x0:x1]
            return x, targets
        lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)
    elif dense:
        raise ValueError("mixup cannot blend per-pixel class targets; the task refuses it before training")
    else:
        x = x * lam + x[perm] * (1 - lam)
    return x, targets * lam + targets[perm] * (1 - lam)
