"""Adversarial examples: the smallest change of an image, in pixels, that changes what a classifier
says. FGSM (Goodfellow et al., 2015) takes one step of the gradient's sign; PGD (Madry et al., 2018)
takes several smaller ones, each followed by a projection back onto the L-inf ball of radius ``eps``
around the image. Both work in pixel space ([0, 1], before normalization), where an image must stay.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cvkit.errors import OptionError
from cvkit.files.dataset import DEFAULT_TASK
from cvkit.runtime import LoadedRun

PGD_STEP = 2.5  # PGD's step is 2.5 * eps / steps (Madry et al.): the ball's edge is reachable from anywhere in it
TOP = 5  # classes listed before and after


@dataclass
class Attacked:
    """Clean and perturbed images (N x H x W x C uint8, the perturbed ones as written to PNG), the
    probabilities of both (N x K), the class each attack pushed away from (untargeted) or towards
    (``targeted``), and the step size in pixel units [0, 1]."""

    clean: np.ndarray
    images: np.ndarray
    before: np.ndarray
    after: np.ndarray
    classes: np.ndarray
    targeted: bool
    step: float

    @property
    def delta(self) -> np.ndarray:
        """The perturbation in pixel units [-1, 1] (N x H x W x C float32)."""
        return (self.images.astype(np.float32) - self.clean.astype(np.float32)) / 255


def parse_eps(text: str | float) -> float:
    """``--eps`` as a number in pixel units [0, 1], written as a decimal or as a fraction of 255 ("8/255")."""
    try:
        if isinstance(text, str) and "/" in text:
            num, den = text.split("/", 1)
            value = float(num) / float(den)
        else:
            value = float(text)
    except (ValueError, ZeroDivisionError):
        raise OptionError(f"--eps {text} is not a number; give the largest change of a pixel in [0, 1], "
                          f"such as 0.03 or 8/255") from None
    check_eps(value)
    return value


def check_eps(eps: float) -> None:
    if not 0 <= eps <= 1:  # also refuses NaN
        raise OptionError(f"--eps {eps:g} must be between 0 and 1 (a pixel change in [0, 1] units, such as 8/255)")


def check_attack(loaded: LoadedRun, eps: float, steps: int) -> None:
    """Refuse a run that is not a classifier, and a bad ``eps`` or ``steps``."""
    if loaded.task.name != DEFAULT_TASK:  # classify: one class per image, its probabilities summing to 1
        raise OptionError(f"--adversarial attacks one class per image, and {loaded.run} is a {loaded.task.name} run; "
                          f"give a run trained with the classify task")
    check_eps(eps)
    if steps < 1:
        raise OptionError(f"--steps {steps} must be at least 1 (1: FGSM; more: PGD)")


def _log_probs(loaded: LoadedRun, outputs: torch.Tensor) -> torch.Tensor:
    """Log-probabilities of every class (N x K), as the run reports them: a softmax's straight from the
    logits (a class whose probability underflows keeps its gradient, which a targeted attack needs)."""
    outputs = outputs.float()
    if loaded.info.loss == "bce":
        return torch.log(loaded.task.probabilities(outputs).clamp_min(1e-30))
    return F.log_softmax(outputs, 1)


def _probs(loaded: LoadedRun, pixels: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return loaded.task.probabilities(loaded.model(loaded.pre.normalize(pixels))).float()


def attack(loaded: LoadedRun, images: np.ndarray, eps: float, steps: int = 1, target: int | None = None,
           labels: np.ndarray | None = None, batch_size: int = 256) -> Attacked:
    """Perturb N uint8 images (N x H x W x C, at the run's input size) by at most ``eps`` per pixel
    (pixel units [0, 1]) to lower the probability of each image's class (``labels``, default the
    predicted one) or, with ``target``, to raise that class's. ``steps`` 1 is FGSM, more is PGD
    (step 2.5 * eps / steps, no random start: the same inputs give the same images). The result is
    rounded to uint8, as the PNG holds it, and scored again."""
    check_attack(loaded, eps, steps)
    model, device = loaded.model, loaded.device
    step = eps if steps == 1 else PGD_STEP * eps / steps
    sign = 1.0 if target is None else -1.0  # ascend the class's loss, or descend the target's
    out_images, before, after, chosen = [], [], [], []
    for start in range(0, len(images), batch_size):
        clean = loaded.pre.to_unit(torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size]))).float()
        p_clean = _probs(loaded, clean)
        if target is not None:
            classes = torch.full((len(clean),), target, dtype=torch.long, device=device)
        elif labels is not None:
            classes = torch.as_tensor(labels[start:start + batch_size], dtype=torch.long, device=device)
        else:
            classes = p_clean.argmax(1)
        x = clean.clone()
        if eps > 0:
            with torch.inference_mode(False), torch.enable_grad():
                for _ in range(steps):
                    x.requires_grad_(True)
                    loss = F.nll_loss(_log_probs(loaded, model(loaded.pre.normalize(x))), classes, reduction="sum")
                    (grad,) = torch.autograd.grad(loss, x)
                    with torch.no_grad():
                        x = x.detach() + sign * step * grad.sign()
                        x = torch.minimum(torch.maximum(x, clean - eps), clean + eps).clamp(0, 1)
        pixels = (x.detach() * 255).round().clamp(0, 255).to(torch.uint8)  # what the PNG holds
        p_after = _probs(loaded, pixels.float() / 255)
        out_images.append(pixels.permute(0, 2, 3, 1).cpu().numpy())
        before.append(p_clean.cpu().numpy())
        after.append(p_after.cpu().numpy())
        chosen.append(classes.cpu().numpy())
    k = len(loaded.classes)
    return Attacked(np.ascontiguousarray(images), np.concatenate(out_images) if out_images else images[:0],
                    np.concatenate(before) if before else np.zeros((0, k)),
                    np.concatenate(after) if after else np.zeros((0, k)),
                    np.concatenate(chosen) if chosen else np.zeros(0, np.int64), target is not None, step)


def top_classes(probs: np.ndarray, k: int = TOP) -> list[int]:
    """The ``k`` most probable classes of one row, most probable first."""
    return [int(i) for i in np.argsort(-probs, kind="stable")[:k]]


def amplified(delta: np.ndarray) -> np.ndarray:
    """A perturbation (H x W x C in [-1, 1]) as a uint8 image scaled to the full range: 128 is no change,
    0 and 255 the largest change either way (all 128 when there is none)."""
    top = float(np.abs(delta).max())
    scaled = delta / top if top > 0 else np.zeros_like(delta)
    return np.clip(np.round(127.5 + 127.5 * scaled), 0, 255).astype(np.uint8)
