"""Batched photometric augmentation: colour jitter, blur, noise and random erasing.

Brightness, contrast, saturation, hue and grayscale are all linear in the pixel values, so they
compose into one affine colour map per image (a C x C matrix and an offset), built from a few
numbers per image and applied in a single pass over the batch (ColorJitter makes one pass per
factor, and an RGB -> HSV -> RGB round trip for hue). Hue turns the chroma plane of YIQ, the
cheap linear stand-in for the HSV hue rotation. Colour-only ops leave 1-channel batches alone.
Values are clamped to [0, 1] once, after noise (ColorJitter clamps after every factor).

Random numbers come from the CPU generator ``gen``. The full-size draws (noise, erase fill) come,
on a GPU, from a device generator seeded from ``gen``: copying a batch of noise from the CPU would
cost more than the rest of the augmentation.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from cvkit.transforms.draws import log_uniform, uniform
from cvkit.transforms.policy import AugmentPolicy

# Luma weights of ITU-R BT.601, the Y row of YIQ (torchvision's rgb_to_grayscale uses the same).
LUMA = (0.299, 0.587, 0.114)
# RGB -> YIQ (FCC NTSC); hue turns (I, Q) about the gray axis Y.
YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=torch.float64)
# Random erasing (Zhong et al. 2017): area fraction and aspect ratio (height / width) of the rectangle.
ERASE_AREA = (0.02, 0.33)
ERASE_RATIO = (0.3, 3.3)
BLUR_MIN_SIGMA = 0.1  # as torchvision's GaussianBlur default range (0.1, 2.0)


def photometric(x: torch.Tensor, policy: AugmentPolicy, gen: torch.Generator, owned: bool = False) -> torch.Tensor:
    """The photometric part of ``policy``, in a fixed order: colour map, blur, noise, clamp to [0, 1], erase.

    ``owned``: ``x`` is a temporary of the caller's that may be overwritten (saves a copy). The colour
    matrix and blur work on NCHW planes and return them so (``augment`` restores the memory format).
    """
    colour_on = policy.brightness or policy.contrast or (x.shape[1] == 3 and (
        policy.saturation or policy.hue or policy.grayscale))
    start = x
    if colour_on:
        x = colour(x, policy, gen)
    if policy.blur:
        x = blur(x, policy.blur, gen)
    if policy.noise:
        x = noise(x, policy.noise, gen)
    owned = owned or x is not start
    if colour_on or policy.noise:  # the other ops keep values in range
        x = x.clamp_(0.0, 1.0)  # a new tensor here: in place spares an allocation
    if policy.erase:
        x = erase(x, policy.erase, gen, inplace=owned)
    return x



def _draw_on(device: torch.device, gen: torch.Generator) -> torch.Generator:
    """The generator for full-size draws: ``gen`` on the CPU, else a device generator seeded from it."""
    if device.type == "cpu":
        return gen
    return torch.Generator(device).manual_seed(int(torch.randint(0, 2**62, (1,), generator=gen)))


def _luma(c: int, **where: Any) -> torch.Tensor:
    """Gray-level weights of the channels: BT.601 luma for RGB, a plain mean otherwise."""
    return torch.tensor(LUMA if c == 3 else (1.0 / c,) * c, **where)


def colour_map(n: int, c: int, policy: AugmentPolicy, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image (matrix N x C x C, gray weight N), float64 on the CPU, such that the colour ops give
    ``matrix @ pixel + weight * mean_gray`` on every channel, ``mean_gray`` being the image's mean luma.

    Brightness, contrast, saturation, hue and grayscale, in this order. Contrast blends towards
    the mean gray of the image as brightness left it (the weight); the three later maps keep gray
    pixels gray, so they carry that constant through unchanged. Nothing here reads the pixels: on a
    GPU the map is built without waiting for the batch.
    """
    eye = torch.eye(c, dtype=torch.float64)
    to_gray = torch.ones(c, 1, dtype=torch.float64) * _luma(c, dtype=torch.float64)  # C x C: all channels to luma
    scale = torch.ones(n, dtype=torch.float64)
    weight = torch.zeros(n, dtype=torch.float64)
    if policy.brightness:  # multiply, as ColorJitter: black stays black
        scale = uniform(n, 1 - policy.brightness, 1 + policy.brightness, gen)
    if policy.contrast:  # blend with the mean gray: f * y + (1 - f) * mean_gray(y), y = scale * x
        f = uniform(n, 1 - policy.contrast, 1 + policy.contrast, gen)
        weight, scale = (1 - f) * scale, f * scale
    m = scale.view(n, 1, 1) * eye
    if c == 3 and policy.saturation:  # blend with the grayscale image
        f = uniform(n, 1 - policy.saturation, 1 + policy.saturation, gen).view(n, 1, 1)
        m = (f * eye + (1 - f) * to_gray) @ m
    if c == 3 and policy.hue:
        angle = uniform(n, -2 * math.pi * policy.hue, 2 * math.pi * policy.hue, gen)
        turn = torch.zeros(n, 3, 3, dtype=torch.float64)
        turn[:, 0, 0] = 1
        turn[:, 1, 1], turn[:, 1, 2], turn[:, 2, 1], turn[:, 2, 2] = angle.cos(), -angle.sin(), angle.sin(), angle.cos()
        m = torch.linalg.inv(YIQ) @ turn @ YIQ @ m
    if c == 3 and policy.grayscale:
        chosen = (torch.rand(n, generator=gen) < policy.grayscale).view(n, 1, 1)
        m = torch.where(chosen, to_gray, eye) @ m
    return m, weight


def colour(x: torch.Tensor, policy: AugmentPolicy, gen: torch.Generator) -> torch.Tensor:
    """Apply the per-image colour map of ``policy`` in one pass over the batch."""
    n, c, h, w = x.shape
    m, weight = colour_map(n, c, policy, gen)
    m = m.to(x.device, x.dtype)
    if policy.contrast:
        b = (x.mean(dim=(2, 3)) @ _luma(c, device=x.device, dtype=x.dtype)) * weight.to(x.device, x.dtype)  # N
    else:
        b = torch.zeros(n, device=x.device, dtype=x.dtype)
    if c == 1 or not (policy.saturation or policy.hue or policy.grayscale):
        # brightness and contrast scale all channels alike: a multiply and an in-place add (measured
        # 5x faster at 224 px than one addcmul, whose broadcast first operand takes a slow path)
        return x.mul(m[:, 0, 0].view(n, 1, 1, 1)).add_(b.view(n, 1, 1, 1))
    # A C x C matrix product per image over the pixels. Channels-last goes to planes (and ``augment``
    # back): measured 2x faster than a batched matmul, or nine multiply-adds, over interleaved channels.
    planes = x.contiguous().view(n, c, h * w)
    return torch.baddbmm(b.view(n, 1, 1), m, planes).view(n, c, h, w)


def blur(x: torch.Tensor, largest: float, gen: torch.Generator) -> torch.Tensor:
    """Gaussian blur, sigma per image uniform in [0.1, largest] pixels, reflected at the borders.

    Separable: per-image kernels N x k applied as a grouped (depthwise) convolution over the
    N*C planes, one along each axis. The kernel spans 3 sigma either side of the largest sigma,
    shortened to fit the image.
    """
    n, c, h, w = x.shape
    sigma = uniform(n, min(BLUR_MIN_SIGMA, largest), largest, gen)
    radius = min(math.ceil(3 * largest), (min(h, w) - 1) // 2)
    if radius < 1:
        return x
    taps = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-taps**2 / (2 * sigma.view(n, 1) ** 2))
    kernel = (kernel / kernel.sum(1, keepdim=True)).to(x.device, x.dtype).repeat_interleave(c, 0)  # N*C x k
    planes = F.pad(x.contiguous().view(1, n * c, h, w), (radius, radius, radius, radius), mode="reflect")
    planes = F.conv2d(planes, kernel.view(n * c, 1, -1, 1), groups=n * c)
    planes = F.conv2d(planes, kernel.view(n * c, 1, 1, -1), groups=n * c)
    return planes.view(n, c, h, w)  # NCHW-contiguous: ``augment`` restores the input's memory format


def noise(x: torch.Tensor, largest: float, gen: torch.Generator) -> torch.Tensor:
    """Additive Gaussian noise, standard deviation per image uniform in [0, largest]."""
    n = x.shape[0]
    std = uniform(n, 0.0, largest, gen).to(x.device, x.dtype).view(n, 1, 1, 1)
    z = torch.randn(x.shape, generator=_draw_on(x.device, gen), device=x.device, dtype=x.dtype)
    return torch.addcmul(x, z, std)


def erase(x: torch.Tensor, p: float, gen: torch.Generator, inplace: bool = False) -> torch.Tensor:
    """Random erasing: with probability ``p`` per image, one rectangle of 2-33% of the area, aspect
    ratio 0.3-3.3, filled with uniform random values. A rectangle taller or wider than the image is
    clipped to it (Zhong et al. draw again). ``inplace`` writes into ``x`` instead of a copy."""
    n, c, h, w = x.shape
    chosen = torch.rand(n, generator=gen) < p
    area = uniform(n, *ERASE_AREA, gen) * h * w
    ratio = log_uniform(n, *ERASE_RATIO, gen)
    eh = torch.sqrt(area * ratio).round().clamp(1, h).long()
    ew = torch.sqrt(area / ratio).round().clamp(1, w).long()
    y0 = (torch.rand(n, generator=gen, dtype=torch.float64) * (h - eh + 1)).long()
    x0 = (torch.rand(n, generator=gen, dtype=torch.float64) * (w - ew + 1)).long()
    sizes = torch.where(chosen, eh * ew, 0)
    total = int(sizes.sum())
    if total == 0:
        return x
    # Fill values are drawn for the rectangles' pixels only and written by index: measured 2.5-3x
    # faster at 224 px (erase 0.25) than a full-size mask with masked_scatter or torch.where.
    # Every count is known on the CPU, so a GPU never reports one back.
    dev = x.device
    sizes, ew, y0, x0 = (v.to(dev) for v in (sizes, ew, y0, x0))
    owner = torch.repeat_interleave(torch.arange(n, device=dev), sizes, output_size=total)  # image of each pixel
    within = torch.arange(total, device=dev) - (torch.cumsum(sizes, 0) - sizes)[owner]
    width = ew[owner]
    out = x if inplace else x.clone()  # clone keeps the memory format
    fill = torch.rand((total, c), generator=_draw_on(dev, gen), device=dev, dtype=x.dtype)
    out[owner, :, y0[owner] + within // width, x0[owner] + within % width] = fill
    return out
