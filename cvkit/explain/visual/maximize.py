"""The input a unit (or a class) likes best: gradient ascent on the image itself (Erhan et al., 2009;
Simonyan et al., 2014), regularized so that the result looks like an image rather than noise."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cvkit.errors import OptionError
from cvkit.explain.gradients import class_scores
from cvkit.explain.visual.common import layer_shape, pixel_bounds, to_pixels
from cvkit.models.hooks import forward_to
from cvkit.runtime import LoadedRun

LR = 0.05  # Adam's step on the normalized image: about 1% of its range per step
START_STD = 1.0  # the random start: noise of the data's spread (in normalized units) around its mean
STARTS = 8  # random starts drawn; the ascent begins from the best (a unit dead on all of them cannot move)
JITTER = 1 / 16  # largest random shift each step, as a fraction of the side (2 px at 32 px)
BLUR_EVERY = 8  # steps between two Gaussian blurs, which damp the high frequencies ascent favours
# The blur's sigma in px is the image side / BLUR_SCALE, within BLUR_SIGMA. A sigma of 0.5 px every
# 4 steps drove 28 px Fashion-MNIST units to zero (dead) from most starts; 0.35 px every 8 steps
# let them rise 3-5 fold.
BLUR_SCALE = 80
BLUR_SIGMA = (0.35, 1.0)
L2 = 1e-2  # weight of the mean squared (normalized) pixel: keeps the image near the mean


@dataclass
class Maximized:
    """The synthesized image (H x W x C uint8, pixel space), and the objective (the unit's mean
    activation or the class score) at the random start and at the end, both without jitter."""

    image: np.ndarray
    start: float
    final: float


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """A separable Gaussian blur of each channel, reflecting at the border."""
    radius = max(1, round(2 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    g = torch.exp(-t**2 / (2 * sigma**2))
    g = g / g.sum()
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def check_unit(loaded: LoadedRun, layer: str, unit: int) -> None:
    """Refuse a ``unit`` that is not a channel of ``layer``."""
    channels = layer_shape(loaded, layer)[0]
    if not 0 <= unit < channels:
        raise OptionError(f"--unit {unit} is not a channel of layer {layer}, which has {channels} (0 to {channels - 1})")


def maximize(loaded: LoadedRun, *, layer: str | None = None, unit: int | None = None, target: int | None = None,
             steps: int = 200, seed: int = 0) -> Maximized:
    """Gradient ascent from a random image (the best of STARTS) on the mean activation of channel ``unit`` of
    ``layer`` or, with ``target``, on that class's score (its logit), for ``steps`` steps; each step
    shifts the image by a random jitter, every BLUR_EVERY steps it is blurred, an L2 penalty pulls
    it towards the mean, and it is kept inside the range of real pixels. Seeded by ``seed``."""
    if (unit is None) == (target is None):
        raise OptionError("--maximize needs --unit U (a channel of --layer) or --class NAME")
    if steps < 1:
        raise OptionError(f"--steps {steps} must be at least 1")
    if unit is not None:
        check_unit(loaded, layer, unit)
    model, device = loaded.model, loaded.device
    targets = None if target is None else torch.tensor([target], device=device)

    def objective(x: torch.Tensor) -> torch.Tensor:
        if targets is None:
            return forward_to(model, layer, x)[:, unit].float().mean()
        return class_scores(model(x), targets).sum()

    gen = torch.Generator().manual_seed(seed)
    h, w = loaded.input_size
    lo, hi = pixel_bounds(loaded)
    starts = (torch.randn(STARTS, loaded.in_chans, h, w, generator=gen) * START_STD).to(device)
    starts = torch.maximum(torch.minimum(starts, hi), lo)
    with torch.no_grad():
        scores = torch.stack([objective(starts[i:i + 1]) for i in range(STARTS)])
    best = int(scores.argmax())
    x, start = starts[best:best + 1].clone(), float(scores[best])
    shift = max(1, round(JITTER * min(h, w)))
    sigma = min(max(min(h, w) / BLUR_SCALE, BLUR_SIGMA[0]), BLUR_SIGMA[1])
    with torch.inference_mode(False), torch.enable_grad():
        x.requires_grad_(True)
        # Adam on the image alone; the weights get no .grad (autograd.grad asks for the image's only)
        optimizer = torch.optim.Adam([x], lr=LR)
        for step in range(steps):
            dy, dx = (int(v) for v in torch.randint(-shift, shift + 1, (2,), generator=gen))
            value = objective(torch.roll(x, (dy, dx), (2, 3)))
            loss = -value + L2 * x.pow(2).mean()
            (x.grad,) = torch.autograd.grad(loss, x)
            optimizer.step()
            with torch.no_grad():
                if (step + 1) % BLUR_EVERY == 0 and step + 1 < steps:
                    x.copy_(_blur(x, sigma))
                x.copy_(torch.maximum(torch.minimum(x, hi), lo))
    x = x.detach()
    with torch.no_grad():
        final = float(objective(x))
    return Maximized(to_pixels(loaded, x), start, final)
