"""Does a saliency map point at what the model uses? Deletion, insertion and average drop.

Deletion and insertion (Petsiuk et al., "RISE", BMVC 2018): pixels are taken in order of decreasing
map value, ``steps`` equal fractions at a time. *Deletion* replaces them by a baseline; a faithful
map makes the target class probability fall fast (a low area under the curve). *Insertion* puts
them back into a baseline image; a faithful map makes it rise fast (a high area).

Baselines, chosen as RISE does: deletion replaces pixels by **0 in normalized space**, i.e. the
training set's mean colour (or mean image with ``normalize --mode pixel``): the value that carries
no information for the net, where black or white would be a strong signal of its own. Insertion
starts from a **heavily blurred copy** of the image (Gaussian, sigma = 1/16 of the longer side by
default): a flat mean would put sharp edges around every inserted pixel, a blur keeps the image
natural while removing the object's shape.

Average drop and increase in confidence (Chattopadhay et al., "Grad-CAM++", WACV 2018): the image
is multiplied by its map (in [0, 1]) and the drop of the target probability measured, as
``max(0, p - p_masked) / p`` in percent. The product is taken in normalized space, so unexplained
regions fade to the mean colour, the same "no information" value as deletion; the paper
multiplies pixel values, fading to black.

Everything runs batched on the model's device under ``torch.inference_mode``: one argsort per map,
then every step of every image is a mask by comparing pixel ranks with a count, built chunk by
chunk so memory is bounded by ``batch_size`` images whatever ``steps`` is.
"""

from __future__ import annotations

from collections.abc import Callable

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cvkit.device import autocast
from cvkit.errors import OptionError
from cvkit.models.losses import as_probabilities

# Insertion's starting image: sigma as a fraction of the longer side. RISE used sigma 5 on 224 px,
# which leaves shapes readable on small images; 1/16 (2 px at 32, 14 px at 224) blurs the object
# into its surroundings at any size.
BLUR_FRACTION = 1 / 16


@dataclass
class FaithfulnessResult:
    """Per-image figures (arrays of length N) and curves (N x steps+1, fraction 0..1 of pixels)."""

    deletion_auc: np.ndarray
    insertion_auc: np.ndarray
    deletion_curve: np.ndarray
    insertion_curve: np.ndarray
    probability: np.ndarray  # the target class probability of the image itself
    masked_probability: np.ndarray  # ... of the image multiplied by its map
    drop: np.ndarray  # percent, max(0, p - p_masked) / p * 100
    increase: np.ndarray  # bool: p_masked > p

    def per_image(self) -> dict[str, np.ndarray]:
        """The figures that are averaged over images; ``increase_in_confidence`` is 0 or 100 per image,
        so that its mean is the percentage of images, like ``average_drop``."""
        return {"deletion_auc": self.deletion_auc, "insertion_auc": self.insertion_auc,
                "average_drop": self.drop, "increase_in_confidence": self.increase.astype(np.float64) * 100}

    def summary(self) -> dict[str, float | int]:
        """Means over the images (``count`` of them), ready for faithfulness.json."""
        means = {k: float(np.mean(v)) if len(v) else float("nan") for k, v in self.per_image().items()}
        return {"count": len(self.deletion_auc), **means}


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """A separable Gaussian blur of an N x C x H x W batch, edges reflected; the kernel is cut at 3
    sigma or at the image's side, whichever is shorter (reflection needs a pad below the side)."""
    if sigma <= 0:
        return x.clone()
    c, h, w = x.shape[1:]
    for dim, side in ((3, w), (2, h)):
        r = min(math.ceil(3 * sigma), side - 1)
        if r == 0:
            continue
        t = torch.arange(-r, r + 1, dtype=torch.float32, device=x.device)
        k = torch.exp(-0.5 * (t / sigma) ** 2)
        k = (k / k.sum()).to(x.dtype)
        shape = (1, 1, 1, 2 * r + 1) if dim == 3 else (1, 1, 2 * r + 1, 1)
        pad = (r, r, 0, 0) if dim == 3 else (0, 0, r, r)
        x = F.conv2d(F.pad(x, pad, mode="reflect"), k.view(shape).expand(c, -1, -1, -1).contiguous(), groups=c)
    return x


def _target_probs(model: nn.Module, x: torch.Tensor, targets: torch.Tensor, loss: "str | Callable",
                  precision: str) -> torch.Tensor:
    with autocast(x.device, precision):
        out = model(x)
    return as_probabilities(loss)(out.float()).gather(1, targets.view(-1, 1)).view(-1)


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.cpu().double().numpy()


def _check(x: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor, steps: int, batch_size: int) -> None:
    if x.ndim != 4:
        raise ValueError(f"x must be a normalized N x C x H x W batch, not {tuple(x.shape)}")
    n, _, h, w = x.shape
    if tuple(maps.shape) != (n, h, w):
        raise ValueError(f"maps must be N x H x W at the input's size {(n, h, w)}, not {tuple(maps.shape)}")
    if tuple(targets.shape) != (n,):
        raise ValueError(f"targets must hold one class per image ({n}), not {tuple(targets.shape)}")
    if steps < 1:
        raise OptionError(f"steps {steps} must be at least 1")
    if batch_size < 1:
        raise OptionError(f"--batch-size {batch_size} must be at least 1")


@torch.inference_mode()
def faithfulness(model: nn.Module, x: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor, loss: "str | Callable",
                 steps: int = 20, batch_size: int = 64, precision: str = "fp32",
                 blur_sigma: float | None = None) -> FaithfulnessResult:
    """Deletion/insertion curves and AUCs, and average drop, of ``maps`` (N x H x W in [0, 1], at the
    input's size) for the normalized images ``x`` (N x C x H x W) and classes ``targets`` (N,).

    ``loss`` is the run's task's map from outputs to probabilities (or a classify loss's name); ``batch_size`` images go through
    the model at a time; ``blur_sigma`` (pixels) overrides insertion's blur. The model is put in
    eval mode for the call.
    """
    _check(x, maps, targets, steps, batch_size)
    n, _, h, w = x.shape
    device = x.device
    maps = maps.detach().to(device, torch.float32).reshape(n, h * w)
    targets = targets.detach().to(device, torch.long)
    x = x.detach()
    sigma = max(h, w) * BLUR_FRACTION if blur_sigma is None else float(blur_sigma)
    blurred = gaussian_blur(x, sigma)
    # rank[i, p]: where pixel p of image i comes in the order of decreasing map value (ties: raster order)
    order = torch.argsort(maps, dim=1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(h * w, device=device).expand(n, -1))
    # pixels changed at each step; float64 on the CPU, which every device can take (MPS has no float64)
    counts = torch.round(torch.arange(steps + 1, dtype=torch.float64) * (h * w) / steps).long().to(device)
    total = n * (steps + 1)
    deletion = torch.empty(total, device=device)
    insertion = torch.empty(total, device=device)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, total, batch_size):
            pair = torch.arange(start, min(start + batch_size, total), device=device)
            image, step = pair // (steps + 1), pair % (steps + 1)
            changed = (rank[image] < counts[step, None]).view(-1, 1, h, w)
            originals, goals = x[image], targets[image]
            deletion[start:start + len(pair)] = _target_probs(
                model, originals.masked_fill(changed, 0.0), goals, loss, precision)
            insertion[start:start + len(pair)] = _target_probs(
                model, torch.where(changed, originals, blurred[image]), goals, loss, precision)
        masked = torch.empty(n, device=device)
        weights = maps.view(n, 1, h, w)
        for start in range(0, n, batch_size):
            part = slice(start, start + batch_size)
            masked[part] = _target_probs(model, x[part] * weights[part], targets[part], loss, precision)
    finally:
        model.train(was_training)
    deletion, insertion = deletion.view(n, steps + 1), insertion.view(n, steps + 1)
    p = deletion[:, 0]  # no pixel deleted yet: the image itself
    drop = (p - masked).clamp_min(0) / p.clamp_min(1e-12) * 100
    return FaithfulnessResult(
        deletion_auc=_numpy(torch.trapezoid(deletion, dx=1.0 / steps, dim=1)),
        insertion_auc=_numpy(torch.trapezoid(insertion, dx=1.0 / steps, dim=1)),
        deletion_curve=_numpy(deletion), insertion_curve=_numpy(insertion), probability=_numpy(p),
        masked_probability=_numpy(masked), drop=_numpy(drop), increase=(masked > p).cpu().numpy())
