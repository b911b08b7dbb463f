"""Augmented Grad-CAM (Morbidelli et al., ICASSP 2020): a Grad-CAM map at the input's resolution,
super-resolved from the low-resolution Grad-CAM maps of K known augmentations of each image.

Each copy k of an image is the image warped by a known affine transform W_k (a sub-pixel shift,
a horizontal flip, a small rotation; copy 0 is the image itself). A layer of stride s sees each copy
on a grid shifted and turned against the image, so the K low-resolution maps g_k sample the same
underlying map h at different places. h is found as the paper poses it:

    min_h  mean_k || D(W_k h) - g_k ||^2  +  lambda * TV(h),   h >= 0

with D the average pooling to the layer's grid, by projected gradient descent with momentum in
torch, batched over images. The K copies go through the net in batches too: a copy costs one
forward and one partial backward pass, so K sets the price (about K times a Grad-CAM).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from cvkit.errors import OptionError
from cvkit.explain.gradients import gradcam_raw, layer_pass

# Copies per image, the first the image itself: 16 random sub-unit shifts put ~4 x 4 distinct
# sampling offsets in each layer unit, the most the SR_FACTOR grid below can use.
AUGMENTATIONS = 16
BATCH = 64  # augmented copies per forward/backward pass
MAX_DEGREES = 10.0  # small turns: the evidence for the class stays where it was, only resampled
FLIP_P = 0.5  # half the copies are mirrored: a mirrored copy samples the map on a mirrored grid
# Solver constants, chosen on 30 shapes images (tests/explain_methods/test_augmented.py's model):
STEPS = 100  # from the back-projected mean, 100 accelerated steps end where 300 do
# TV weight: 0.01 leaves blocks and single-pixel spikes where the copies disagree; 0.1 rounds the
# shapes' corners back towards bilinear; 0.03 gave the sharpest maps whose boxes best fit the shapes.
TV = 0.03
CHARBONNIER = 0.01  # TV's smoothing, 1% of the peak: below the steps of a map, above rounding
# 16 copies shifted by random sub-unit offsets sample each layer unit at ~4 x 4 places, so more
# than 8 points per unit only interpolates; solving there and resizing is ~16x cheaper at 224 px.
SR_FACTOR = 8
DENSE_LIMIT = 16 * 2**20  # values of the dense warp-and-pool matrix (64 MiB); larger layers warp each step
PADDING = "reflection"  # what the warps bring in at the borders: mirrored content keeps the net's statistics


def random_affines(k: int, size: tuple[int, int], stride: tuple[float, float], seed: int,
                   device: torch.device) -> torch.Tensor:
    """K affine matrices (K, 2, 3) in ``F.affine_grid``'s normalized coordinates (output to input),
    the first the identity: shifts up to half the layer's stride, flips, rotations up to MAX_DEGREES.
    Built in pixel units, so a rotation stays a rotation on a non-square image."""
    gen = torch.Generator().manual_seed(int(seed))
    height, width = size
    angle = (torch.rand(k, generator=gen, dtype=torch.float64) * 2 - 1) * math.radians(MAX_DEGREES)
    flip = torch.where(torch.rand(k, generator=gen, dtype=torch.float64) < FLIP_P, -1.0, 1.0)
    shift = (torch.rand(k, 2, generator=gen, dtype=torch.float64) - 0.5) * torch.tensor([stride[1], stride[0]],
                                                                                          dtype=torch.float64)
    angle[0], flip[0], shift[0] = 0.0, 1.0, 0.0
    cos, sin = torch.cos(angle), torch.sin(angle)
    linear = torch.stack([torch.stack([cos * flip, -sin], 1), torch.stack([sin * flip, cos], 1)], 1)  # R @ diag(flip, 1)
    half = torch.tensor([width / 2, height / 2], dtype=torch.float64)
    linear = linear / half.view(1, 2, 1) * half.view(1, 1, 2)  # P^-1 A P, P = diag(W/2, H/2)
    offset = shift / half  # pixels to normalized units
    return torch.cat([linear, offset[:, :, None]], 2).float().to(device)


def invert_affines(theta: torch.Tensor) -> torch.Tensor:
    """The inverse transforms of (K, 2, 3) affine matrices."""
    full = torch.cat([theta, torch.tensor([0.0, 0.0, 1.0], device=theta.device).expand(len(theta), 1, 3)], 1)
    return torch.linalg.inv(full.double())[:, :2].to(theta.dtype)


def warp(images: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """``images`` (B, C, H, W) sampled on ``grid`` (B, H, W, 2): bilinear, borders mirrored."""
    return F.grid_sample(images, grid.to(images.dtype), mode="bilinear", padding_mode=PADDING, align_corners=False)


def augmented_gradcam(model: nn.Module, x: torch.Tensor, layer: str, targets: torch.Tensor | None,
                      precision: str = "fp32", augmentations: int = AUGMENTATIONS, batch_size: int = BATCH,
                      steps: int = STEPS, tv: float = TV, seed: int = 0,
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[int, int]]:
    """The super-resolved Grad-CAM (N, H, W) of ``x``, not yet min-max scaled; the logits and
    targets of the unaugmented images; and the layer's map size (h, w).

    Every copy explains the class the original image is explained for (its target or prediction).
    """
    k, batch_size, steps = int(augmentations), int(batch_size), int(steps)
    if k < 1 or batch_size < 1 or steps < 0 or tv < 0:
        raise OptionError(f"augmented-gradcam needs augmentations >= 1, batch_size >= 1, steps >= 0 and tv >= 0 "
                          f"(got {augmentations}, {batch_size}, {steps}, {tv})")
    n, size = len(x), (x.shape[-2], x.shape[-1])
    first = layer_pass(model, x, layer, targets, precision)
    low = gradcam_raw(first)  # copy 0, the image itself
    grid_size = (low.shape[-2], low.shape[-1])
    stride = (size[0] / grid_size[0], size[1] / grid_size[1])
    theta = random_affines(k, size, stride, seed, x.device)
    grids = F.affine_grid(theta, [k, 1, *size], align_corners=False)  # (K, H, W, 2), shared by all images
    maps = [low[:, None]]
    if k > 1:
        # copies ordered image-major: copy j of image i at i * (K - 1) + j - 1
        flat = torch.empty(n * (k - 1), *grid_size, device=x.device)
        for start in range(0, n * (k - 1), batch_size):
            index = torch.arange(start, min(start + batch_size, n * (k - 1)), device=x.device)
            image, copy = index // (k - 1), index % (k - 1) + 1
            copies = warp(x[image], grids[copy])
            flat[start:start + len(index)] = gradcam_raw(layer_pass(model, copies, layer, first.targets[image],
                                                                    precision))
        maps.append(flat.view(n, k - 1, *grid_size))
    high = super_resolve(torch.cat(maps, 1), theta, size, steps, float(tv))
    return high, first.logits, first.targets, grid_size


def super_resolve(low: torch.Tensor, theta: torch.Tensor, size: tuple[int, int], steps: int = STEPS,
                  tv: float = TV) -> torch.Tensor:
    """The map h (N, H, W) >= 0 whose warped and pooled copies D(W_k h) best match ``low`` (N, K, h, w).

    h is solved on a grid of at most SR_FACTOR points per layer unit, then resized bilinearly to
    ``size``. The maps of each image share one scale (their common maximum): the copies' relative
    strengths are data, but lambda must mean the same for a faint map as for a strong one.
    """
    n, k, h, w = low.shape
    fine = (min(size[0], SR_FACTOR * h), min(size[1], SR_FACTOR * w))
    with torch.inference_mode(False):  # the solver needs autograd even when the caller is in inference mode
        scale = low.flatten(1).amax(1).clamp_min(1e-12).view(n, 1, 1, 1)
        target = low / scale
        grids = F.affine_grid(theta, [k, 1, *fine], align_corners=False)
        back = F.affine_grid(invert_affines(theta), [k, 1, *fine], align_corners=False)
        # Start from the mean of each copy's bilinear upsampling warped back to the image's frame.
        up = F.interpolate(target.transpose(0, 1), size=fine, mode="bilinear", align_corners=False)
        start = warp(up, back).mean(0).clamp_min(0)  # (N, h', w')
        estimate = _descend(start, target, _warp_and_pool(grids, (h, w)), steps, tv)
        high = F.interpolate(estimate[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
        return high.clamp_min(0) * scale.view(n, 1, 1)


def _warp_and_pool(grids: torch.Tensor, low: tuple[int, int]) -> Callable[[torch.Tensor], torch.Tensor]:
    """The linear map h (N, h', w') -> D(W_k h) (N, K, h, w) for the K warps of ``grids``.

    When it fits in DENSE_LIMIT values it is built once as a matrix (its rows are grid_sample's own
    vector-Jacobian products, so it is exactly the same map): each solver step is then two small
    matmuls instead of K warps of every map and their backward pass, ~10x faster on a CPU.
    """
    k, rows, cols = grids.shape[:3]
    h, w = low

    def apply(maps: torch.Tensor) -> torch.Tensor:  # maps (B, C, h', w') -> (K, C, h, w), C maps per warp
        return F.interpolate(warp(maps.expand(k, -1, -1, -1), grids), size=low, mode="area")

    if k * h * w * rows * cols > DENSE_LIMIT:
        return lambda z: apply(z[None]).transpose(0, 1)
    basis = torch.zeros(k, h * w, rows, cols, device=grids.device, requires_grad=True)
    units = torch.eye(h * w, device=grids.device).view(1, h * w, h, w).expand(k, -1, -1, -1)
    with torch.enable_grad():
        (matrix,) = torch.autograd.grad(apply(basis), basis, units)  # (K, units, h', w'): row (k, unit) of D W_k
    matrix = matrix.reshape(k * h * w, rows * cols)
    return lambda z: (z.flatten(1) @ matrix.T).view(len(z), k, h, w)


def _descend(start: torch.Tensor, target: torch.Tensor, operator: Callable[[torch.Tensor], torch.Tensor],
             steps: int, tv: float) -> torch.Tensor:
    """Projected gradient descent with Nesterov momentum on mean_k,units (D W_k h - g_k)^2 + tv * TV(h).

    TV is the Charbonnier total variation (smooth, so plain gradient steps converge), in units of
    the layer's grid so that ``tv`` means the same at every SR factor. The step is 1 / L with L an
    upper bound of the gradient's Lipschitz constant: no learning rate to tune.
    """
    _, k, h, w = target.shape
    rows, cols = start.shape[-2:]
    per_unit = math.sqrt(rows * cols / (h * w))  # solver pixels per layer unit, along a side
    # data: D averages per_unit^2 pixels and each warp has norm ~1, so L <= 2 / (rows * cols), with
    # 25% to spare for the bilinear warps; TV: each difference's Charbonnier curvature is <= 1 / eps
    # and the difference operator's squared norm <= 8.
    step = rows * cols / (2.5 + 8 * tv * per_unit / CHARBONNIER)
    previous = current = start
    for i in range(steps):
        current = current.detach().requires_grad_(True)
        with torch.enable_grad():
            dy = current[:, 1:, :] - current[:, :-1, :]
            dx = current[:, :, 1:] - current[:, :, :-1]
            variation = torch.sqrt(dy * dy + CHARBONNIER**2).sum() + torch.sqrt(dx * dx + CHARBONNIER**2).sum()
            loss = ((operator(current) - target) ** 2).sum() / (k * h * w) + tv * per_unit * variation / (rows * cols)
            (grad,) = torch.autograd.grad(loss, current)
        following = (current - step * grad).clamp_min(0).detach()
        current = following + i / (i + 3) * (following - previous)  # Nesterov's momentum schedule
        previous = following
    return previous
