"""Which pixels change a class score most: the vanilla gradient (Simonyan et al., 2014) and its
average over noisy copies, SmoothGrad (Smilkov et al., 2017)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cvkit.errors import OptionError
from cvkit.explain.gradients import class_probs, class_scores, default_targets
from cvkit.runtime import LoadedRun

NOISE = 0.15  # SmoothGrad's noise, as a fraction of the input's range (the paper's 10-20%)
CHUNK = 32  # noisy copies per forward pass


@dataclass
class Saliency:
    """Saliency maps (H x W float32 in [0, 1], scaled by their maximum) of the ``target`` class,
    the vanilla gradient and SmoothGrad's (None without ``smooth``), and the class's probability."""

    gradient: np.ndarray
    smooth: np.ndarray | None
    target: int
    prob: float
    samples: int


def _gradient_maps(loaded: LoadedRun, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """max over channels of |d score / d x| for each image of the batch (N, H, W)."""
    x = x.detach().requires_grad_(True)
    score = class_scores(loaded.model(x), target.expand(len(x))).sum()
    (grad,) = torch.autograd.grad(score, x)
    return grad.abs().amax(1)


def _scaled(m: torch.Tensor) -> np.ndarray:
    top = float(m.max())
    return (m / top if top > 0 else torch.zeros_like(m)).float().cpu().numpy()


def saliency(loaded: LoadedRun, image: np.ndarray, target: int | None = None, smooth: int = 0,
             seed: int = 0) -> Saliency:
    """The saliency of ``target`` (default: the predicted class) for one uint8 image (1 x H x W x C);
    with ``smooth`` N, SmoothGrad too: the mean map over N copies with Gaussian noise of NOISE times
    the input's range, seeded by ``seed``."""
    if smooth < 0:
        raise OptionError(f"--smooth {smooth} must be 0 (off) or a number of noisy copies")
    with torch.inference_mode(False), torch.enable_grad():
        x = loaded.pre(torch.from_numpy(np.ascontiguousarray(image)).to(loaded.device)).float()
        with torch.no_grad():
            logits = loaded.model(x).float()
        chosen = default_targets(logits) if target is None else torch.tensor([target], device=x.device)
        prob = float(class_probs(logits, chosen)[0])
        gradient = _gradient_maps(loaded, x, chosen)[0]
        total = None
        if smooth:
            gen = torch.Generator().manual_seed(seed)
            sigma = NOISE * float(x.max() - x.min())
            for start in range(0, smooth, CHUNK):
                n = min(CHUNK, smooth - start)
                noise = torch.randn(n, *x.shape[1:], generator=gen).to(x.device) * sigma
                maps = _gradient_maps(loaded, x + noise, chosen).sum(0)
                total = maps if total is None else total + maps
    return Saliency(_scaled(gradient), None if total is None else _scaled(total / smooth), int(chosen[0]), prob, smooth)
