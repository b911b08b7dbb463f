"""Batched, on-device preprocessing and augmentation: uint8 NHWC batches in, float NCHW batches out.

:class:`Preprocess` scales and normalizes; :func:`augment` runs the policy on whole batches on the
training device, with no per-image Python: ``autoaugment`` (RandAugment, TrivialAugment, AutoAugment),
``geometric`` (flips, shifts, one resampling grid), then ``photometric`` (one colour map, blur, noise, erasing). ``mix`` (mixup, cutmix) needs the
targets and runs after. The policy comes from the training options and the dataset's ``augment.json``.
"""

from __future__ import annotations

import numpy as np
import torch

from cvkit.transforms.autoaugment import auto_augment
from cvkit.transforms.geometric import geometric, geometric_planes
from cvkit.transforms.mixing import mix
from cvkit.transforms.photometric import photometric
from cvkit.transforms.policy import AugmentPolicy

__all__ = ["AugmentPolicy", "Preprocess", "augment", "augment_planes", "from_unit", "mix", "to_unit"]


def to_unit(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 N x H x W x C -> float N x C x H x W in [0, 1] on ``device`` (channels-last in memory)."""
    return batch.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)


def from_unit(x: torch.Tensor) -> np.ndarray:
    """The inverse of :func:`to_unit`: float N x C x H x W in [0, 1] -> uint8 N x H x W x C on the CPU."""
    return x.mul(255.0).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


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
        if self.channels_last:
            return to_unit(batch, self.device)
        # NCHW: convert while reordering, one pass into a new tensor (measured 6x faster on 32 x 224 x
        # 224 x 3 than converting then reordering with .contiguous(): 2.9 ms against 18 ms)
        n, h, w, c = batch.shape
        x = torch.empty(n, c, h, w, device=self.device)
        return x.copy_(batch.to(self.device, non_blocking=True).permute(0, 3, 1, 2)).div_(255.0)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return self.normalize(self.to_unit(batch))


def augment(x: torch.Tensor, policy: AugmentPolicy, gen: torch.Generator,
            track: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Augment a float batch in [0, 1] (N x C x H x W) on its device: the automatic policy (if any), the
    geometric transforms, then the photometric ones, in a fixed order; random draws come from ``gen`` (CPU), so a seed repeats a batch.

    Shape, dtype and memory format are kept; with every transform off, ``x`` itself comes back.
    ``track``: also return each image's geometric matrix (``geometric``), for targets that move with it.
    """
    start, x = x, auto_augment(x, policy, gen)  # the automatic policy first, as torchvision's pipelines do
    moved, matrices = geometric(x, policy, gen, track=True) if track else (geometric(x, policy, gen), None)
    out = keep_format(photometric(moved, policy, gen, owned=moved is not start), start)
    return (out, matrices) if track else out


def augment_planes(x: torch.Tensor, planes: torch.Tensor, fill: list[float], policy: AugmentPolicy,
                   gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`augment` for per-pixel targets (N x P x H x W): the geometric transforms move the images and
    ``planes`` together (``geometric_planes``: nearest neighbour, ``fill`` outside), the photometric ones
    touch the images only. The automatic policies are refused for per-pixel targets (``check_policy``)."""
    if policy.auto != "none":
        raise ValueError(f"the automatic policy {policy.auto} moves pixels without tracking: not for per-pixel targets")
    moved, planes = geometric_planes(x, planes, fill, policy, gen)
    return keep_format(photometric(moved, policy, gen, owned=moved is not x), x), planes


def keep_format(out: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``out`` laid out in memory as ``like`` is, to the strides.

    A batch whose layout differs from the model's makes every convolution reorder it (measured: 40%
    slower steps). Strides matter even where the elements lie in the same order: a 1-channel batch
    from :meth:`Preprocess.to_unit` has channels-last strides, which convolutions follow, and the same
    bytes with NCHW strides made a smallcnn step on 28 px images 25-30% slower (bench/bench_augment.py).
    """
    if out is like or out.stride() == like.stride():
        return out
    if all(a == b for a, b, size in zip(out.stride(), like.stride(), like.shape) if size > 1):
        return out.as_strided(like.shape, like.stride())  # same order, only size-1 dims differ: no copy
    return torch.empty_like(like).copy_(out)  # empty_like keeps a dense tensor's strides
