"""``--whiten``: the first convolution starts as a whitening of the train images' patches, and stays so.

airbench's whitening initialization (Keller Jordan, "94% on CIFAR-10 in 3.29 seconds"): the first
convolution's C filters are set to the top C/2 eigenvectors of the covariance of the normalized train
images' k x k patches, each scaled by 1/sqrt(eigenvalue + eps) and paired with its negative (a ReLU after
it then passes both signs), and they are never trained. The net starts from decorrelated inputs instead of
random projections, and the backward pass skips the first layer's weight gradient (the slow 1-channel
convolution on grey images). The filters are computed once, before the speed probe, from a fixed sample of
train images chosen by the seed: every process of a torchrun job computes the same ones.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cvkit.errors import OptionError
from cvkit.progress import info

SAMPLE = 4096  # train images the patches are taken from
EPS = 1e-2  # added to each eigenvalue: no division by a near-zero variance
AUTO_ARCHS = ("smallcnn",)  # --whiten auto turns it on for these nets trained from scratch (bench/results/whiten_val.json)


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d] | None:
    """The convolution that sees the input: the first Conv2d the model registers."""
    return next(((name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)


def why_not(model: nn.Module) -> str | None:
    """Why the first convolution cannot be whitened (None: it can)."""
    found = first_conv(model)
    if found is None:
        return "the net has no convolution"
    name, conv = found
    out, cin, kh, kw = conv.weight.shape
    if conv.groups != 1 or conv.dilation != (1, 1):
        return f"its first convolution {name} is grouped or dilated"
    if out % 2:
        return f"its first convolution {name} has an odd number of filters ({out}); whitening pairs each with its negative"
    if out // 2 > cin * kh * kw:
        return (f"its first convolution {name} has {out} filters, more than twice the {cin * kh * kw} values of its "
                f"{kh}x{kw} patches")
    return None


def wanted(setting: str, arch: str, starts_trained: bool) -> bool:
    """Whether ``--whiten`` (auto, on or off) whitens this run's first convolution."""
    if setting == "off":
        return False
    if setting == "on" and starts_trained:
        raise OptionError("--whiten on would overwrite the first layer of --pretrained/--weights; drop one of them")
    return setting == "on" or (arch in AUTO_ARCHS and not starts_trained)


@torch.no_grad()
def whitening_filters(images: np.ndarray, pre, kernel: tuple[int, int], count: int, seed: int) -> torch.Tensor:
    """``count`` filters (count/2 eigenvectors and their negatives) of the k x k patches of up to SAMPLE
    of ``images`` (N x H x W x C uint8), normalized by ``pre`` as training normalizes them."""
    gen = np.random.default_rng(seed)
    pick = np.sort(gen.choice(len(images), size=min(SAMPLE, len(images)), replace=False))
    cov, n, total = None, 0, None
    for start in range(0, len(pick), 512):
        x = pre(torch.from_numpy(np.ascontiguousarray(images[pick[start:start + 512]]))).float().contiguous()
        p = nn.functional.unfold(x, kernel).transpose(1, 2).reshape(-1, x.shape[1] * kernel[0] * kernel[1]).double()
        cov = p.T @ p if cov is None else cov + p.T @ p
        total = p.sum(0) if total is None else total + p.sum(0)
        n += len(p)
    mean = total / n
    cov = cov / n - torch.outer(mean, mean)
    values, vectors = torch.linalg.eigh(cov)
    order = values.argsort(descending=True)[: count // 2]
    filters = (vectors[:, order] / (values[order].clamp(min=0) + EPS).sqrt()).T
    filters = filters.reshape(-1, x.shape[1], *kernel).float()
    return torch.cat([filters, -filters])


def whiten(model: nn.Module, images: np.ndarray, pre, seed: int) -> str:
    """Set the first convolution to the whitening filters of ``images``; returns its name (to freeze)."""
    reason = why_not(model)
    if reason is not None:
        raise OptionError(f"--whiten on: {reason}; use --whiten off")
    name, conv = first_conv(model)
    filters = whitening_filters(images, pre, tuple(conv.kernel_size), conv.out_channels, seed)
    conv.weight.data.copy_(filters.to(conv.weight))
    info(f"--whiten: {name} holds the whitening of the train images' {conv.kernel_size[0]}x{conv.kernel_size[1]} "
         f"patches ({conv.out_channels // 2} components and their negatives), frozen")
    return name
