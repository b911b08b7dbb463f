"""Per-image random numbers for the batched augmentation ops: one float64 tensor per parameter, drawn
on the CPU from the augmentation generator, so a seed gives the same batch on any device."""

from __future__ import annotations

import math

import torch


def uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    """``n`` draws, uniform in [lo, hi)."""
    return torch.rand(n, generator=gen, dtype=torch.float64).mul_(hi - lo).add_(lo)


def log_uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    """``n`` draws whose logarithm is uniform (aspect ratios: 1/2 as likely as 2)."""
    return torch.exp(uniform(n, math.log(lo), math.log(hi), gen))
