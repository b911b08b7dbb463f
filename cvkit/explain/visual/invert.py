"""What a layer's representation keeps of an image: the image rebuilt from the layer's features alone
(Mahendran & Vedaldi, 2015, "Understanding deep image representations by inverting them").

From noise, Adam changes an image (in pixel space, [0, 1]) so that its features at the layer match
the target image's, relative to their size, under a prior that natural images satisfy: small total
variation and no extreme pixel (an L-alpha norm around mid-gray). What an early layer keeps comes
back nearly whole; a deep layer keeps what tells the classes apart, and the rest is left to the prior.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cvkit.errors import OptionError
from cvkit.models.hooks import forward_to, layer_names
from cvkit.runtime import LoadedRun
from cvkit.runtime.features import named_layer

LR = 0.05  # Adam's step in pixel units: 5% of the range per step, then smaller as its moments settle
START_STD = 0.25  # the random start: Gaussian noise of this spread (pixel units) around mid-gray
ALPHA = 6  # the L-alpha prior's exponent (the paper's): it barely touches mid-range pixels, and stops extreme ones
ALPHA_WEIGHT = 1.0  # the L-alpha prior's weight on the mean of |2x - 1|^alpha (1 at black or white)
TV_WEIGHT = 0.5  # total variation's weight on the mean squared difference of neighbouring pixels (beta 2)


@dataclass
class Inverted:
    """The reconstruction and the noise it started from (H x W x C uint8), and the relative feature
    error ||f(x) - f(x0)||^2 / ||f(x0)||^2 at the start and at the end."""

    image: np.ndarray
    start: np.ndarray
    error_start: float
    error_final: float


def check_layer(loaded: LoadedRun, layer: str) -> str:
    """``layer`` when it names a module of the model (any, as 'cvkit inspect' lists them: a feature map or
    a fully connected layer), else an error with the close matches and the layers."""
    return named_layer(layer, layer_names(loaded.model), see=f" ('cvkit inspect {loaded.run}' shows them)")


def check_steps(steps: int) -> None:
    if steps < 1:
        raise OptionError(f"--steps {steps} must be at least 1")


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """The mean squared difference between neighbouring pixels (the paper's TV with beta 2)."""
    return (x[:, :, 1:, :] - x[:, :, :-1, :]).pow(2).mean() + (x[:, :, :, 1:] - x[:, :, :, :-1]).pow(2).mean()


def alpha_norm(x: torch.Tensor) -> torch.Tensor:
    """The mean of |2x - 1|^ALPHA: 0 at mid-gray, 1 at black or white."""
    return (2 * x - 1).abs().pow(ALPHA).mean()


def _pixels(x: torch.Tensor) -> np.ndarray:
    return (x.detach()[0].permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


def invert(loaded: LoadedRun, image: np.ndarray, layer: str, steps: int = 200, seed: int = 0) -> Inverted:
    """Rebuild one uint8 image (1 x H x W x C, at the run's input size) from its features at ``layer``:
    ``steps`` Adam steps from Gaussian noise (seeded by ``seed``) on the relative feature error plus
    the total variation and L-alpha priors, the image kept in [0, 1]."""
    check_steps(steps)
    check_layer(loaded, layer)
    model, pre = loaded.model, loaded.pre

    def features(x: torch.Tensor) -> torch.Tensor:
        return forward_to(model, layer, pre.normalize(x)).float()

    with torch.no_grad():
        clean = pre.to_unit(torch.from_numpy(np.ascontiguousarray(image))).float()
        wanted = features(clean)
        scale = wanted.pow(2).sum().clamp_min(1e-12)
        gen = torch.Generator().manual_seed(seed)
        start = (0.5 + START_STD * torch.randn(clean.shape, generator=gen)).clamp(0, 1).to(clean.device)
        error_start = float((features(start) - wanted).pow(2).sum() / scale)

    def error(x: torch.Tensor) -> torch.Tensor:
        return (features(x) - wanted).pow(2).sum() / scale

    x = start.clone()
    with torch.inference_mode(False), torch.enable_grad():
        x.requires_grad_(True)
        optimizer = torch.optim.Adam([x], lr=LR)  # on the image alone: autograd.grad leaves the weights' .grad
        for _ in range(steps):
            loss = error(x) + TV_WEIGHT * total_variation(x) + ALPHA_WEIGHT * alpha_norm(x)
            (x.grad,) = torch.autograd.grad(loss, x)
            optimizer.step()
            with torch.no_grad():
                x.clamp_(0, 1)
    with torch.no_grad():
        final = x.detach()
        error_final = float(error(final))
    return Inverted(_pixels(final), _pixels(start), error_start, error_final)
