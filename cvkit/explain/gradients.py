"""One forward (and backward) pass that captures a layer's feature map and the gradient of the
target class's score with respect to it: what every gradient CAM method is computed from.

The hook (:func:`cvkit.models.hooks.hooked`) is registered for the pass only and removed whatever
happens. The gradient comes from ``torch.autograd.grad``, not ``.backward()``, so the parameters'
``.grad`` are never written and the graph is freed when the call returns: calling this ten thousand
times keeps memory flat.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

import torch
import torch.nn.functional as F
from torch import nn

from cvkit.device import autocast
from cvkit.errors import OptionError
from cvkit.models.hooks import hooked

# A map whose range is below this fraction of its magnitude is constant up to rounding: it gets
# zeros rather than its rounding noise stretched to [0, 1].
FLAT = 1e-6


@dataclass
class LayerPass:
    """What one pass over a batch saw: float32 logits, the target classes, the layer's feature map
    (N, C, h, w) and the gradient of the targets' scores with respect to it (None without one)."""

    logits: torch.Tensor
    targets: torch.Tensor
    activations: torch.Tensor
    gradients: torch.Tensor | None


def refuse_layer(model: nn.Module, layer: str, x: torch.Tensor) -> NoReturn:
    """The error for a ``layer`` that gives no feature map (or names no module): the runtime's, which
    lists the valid layers at ``x``'s size."""
    from cvkit.runtime.features import check_layer

    check_layer(model, layer, x.shape[1], (x.shape[-2], x.shape[-1]))  # raises, listing the valid layers
    raise OptionError(f"--layer {layer}: its output is not one (N, C, h, w) feature map here; "
                      "choose a convolutional layer")


def default_targets(logits: torch.Tensor) -> torch.Tensor:
    """The predicted classes. A single-output (binary, sigmoid) model predicts class 1 when its logit
    is positive, as ``outputs_to_probs`` reads it."""
    if logits.shape[1] == 1:
        return (logits[:, 0] > 0).long()
    return logits.argmax(1)


def class_scores(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Each row's target logit (pytorch-grad-cam's ClassifierOutputTarget); for a single-output
    model, the logit for class 1 and its negation for class 0 (its BinaryClassifierOutputTarget)."""
    logits = logits.float()
    if logits.shape[1] == 1:
        return logits[:, 0] * (2 * targets.to(logits.dtype) - 1)
    return logits.gather(1, targets.view(-1, 1))[:, 0]


def class_probs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Each row's probability of its target class (softmax; sigmoid for a single-output model)."""
    logits = logits.float()
    if logits.shape[1] == 1:
        return torch.sigmoid(class_scores(logits, targets))
    return torch.softmax(logits, 1).gather(1, targets.view(-1, 1))[:, 0]


def check_targets(targets: torch.Tensor | None, n: int, num_outputs: int, device: torch.device) -> torch.Tensor | None:
    if targets is None:
        return None
    targets = torch.as_tensor(targets, device=device).long().view(-1)
    if len(targets) != n:
        raise OptionError(f"{len(targets)} target classes for a batch of {n} images; give one per image")
    classes = max(num_outputs, 2)  # a single-output model has two classes
    if len(targets) and (int(targets.min()) < 0 or int(targets.max()) >= classes):
        raise OptionError(f"target class {int(targets.max())} is not one of the model's {classes} classes")
    return targets


def layer_pass(model: nn.Module, x: torch.Tensor, layer: str, targets: torch.Tensor | None,
               precision: str = "fp32", gradients: bool = True) -> LayerPass:
    """Run ``model`` on ``x`` under the precision's autocast, keeping ``layer``'s output and, with
    ``gradients``, the gradient of the target scores with respect to it (float32, detached).

    The layers before ``layer`` run without autograd: the hook switches it on only for what follows,
    so no activation of the early layers is kept for a backward pass that never reaches them. The
    hook hands the rest of the net a clone of a fresh leaf, so an in-place op after the layer (timm's
    ``x += shortcut``) neither fails on the leaf nor changes the values captured.
    """
    seen: dict[str, torch.Tensor] = {}

    def hook(output: object) -> object:
        if not isinstance(output, torch.Tensor) or output.ndim != 4:
            return None  # not a feature map: refused once the pass is over
        if not gradients:
            seen["a"] = output.detach()
            return None
        torch.set_grad_enabled(True)  # the enclosing no_grad block restores the mode on exit
        leaf = output.detach().requires_grad_(True)
        seen["a"] = leaf
        return leaf.clone()

    try:
        with hooked(model, {layer: hook}, lambda name: refuse_layer(model, name, x)), torch.inference_mode(False), \
                torch.no_grad(), autocast(x.device, precision):
            logits = model(x)
            if targets is not None and targets.is_inference():
                targets = targets.clone()  # an index saved for the backward pass must be a normal tensor
            if "a" not in seen:
                refuse_layer(model, layer, x)
            if targets is None:
                targets = default_targets(logits.detach())
            grad = None
            if gradients:
                activation = seen["a"]
                score = class_scores(logits, targets).sum() if logits.requires_grad else None
                grad = (torch.autograd.grad(score, activation, allow_unused=True)[0]
                        if score is not None else None)
                grad = torch.zeros_like(activation) if grad is None else grad  # the layer does not reach the logits
        return LayerPass(logits.detach().float(), targets, seen["a"].detach().float(),
                         None if grad is None else grad.float())
    finally:
        seen.clear()


def weighted_sum(weights: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """sum_k weights[n, k] * activations[n, k]: one map per image from channel weights."""
    return torch.einsum("nc,nchw->nhw", weights, activations)


def gradcam_raw(p: LayerPass) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al., 2017): channels weighted by their mean gradient, then ReLU."""
    return weighted_sum(p.gradients.mean((2, 3)), p.activations).relu()


def normalize_maps(maps: torch.Tensor) -> torch.Tensor:
    """Each map (N, h, w) min-max scaled to [0, 1]; a constant map becomes zeros."""
    flat = maps.flatten(1)
    lo, hi = flat.min(1).values, flat.max(1).values
    span = hi - lo
    flat_maps = span <= FLAT * torch.maximum(lo.abs(), hi.abs())
    out = (maps - lo.view(-1, 1, 1)) / torch.where(flat_maps, 1.0, span).view(-1, 1, 1)
    return torch.where(flat_maps.view(-1, 1, 1), 0.0, out).clamp_(0, 1)


def upsample_maps(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (N, h, w) maps to ``size``, then min-max again (blending lowers the peaks)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    up = F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    return normalize_maps(up)
