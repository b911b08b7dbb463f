"""Class activation maps, batched: where in the image a class's evidence lies, per method.

``class_maps(model, x, layer, targets, method)`` explains a whole batch with one forward pass (and
one partial backward pass for the gradient methods); pytorch-grad-cam loops in numpy per image.
Each method's map is made at the layer's resolution, min-max scaled to [0, 1], then (by default)
resized to the input's. The gradient methods agree with pytorch-grad-cam to float rounding
(tests/explain_methods); ``cam`` and ``augmented-gradcam`` have no counterpart there.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cvkit.device import autocast
from cvkit.errors import OptionError
from cvkit.explain.gradients import (
    check_targets,
    class_probs,
    class_scores,
    default_targets,
    gradcam_raw,
    layer_pass,
    normalize_maps,
    refuse_layer,
    upsample_maps,
    weighted_sum,
)
from cvkit.models.hooks import hooked

METHODS: tuple[str, ...] = ("cam", "gradcam", "gradcam++", "scorecam", "layercam", "eigencam", "augmented-gradcam")
# The options each method takes beyond the common ones; any other name is refused, not ignored.
OPTIONS: dict[str, tuple[str, ...]] = {"scorecam": ("batch_size", "score"),
                                       "augmented-gradcam": ("augmentations", "batch_size", "steps", "tv", "seed")}
SCORECAM_BATCH = 64  # masked images per forward pass: one pass per channel would idle a GPU
# Score-CAM's channel weights. "class-softmax": the target's softmax probability on the masked image,
# as in the paper and its authors' code. "channel-softmax": the target logits of the masked images,
# softmaxed across channels, as pytorch-grad-cam computes them.
SCORECAM_WEIGHTS = ("class-softmax", "channel-softmax")
# How close the logits must come to classifier(mean, or max, of the feature map) for ``cam`` to accept a
# head as global average (max) pooling then a linear layer, relative to the logits' size: float32
# rounding is ~1e-6, bf16/fp16 autocast ~1e-2.
GAP_TOLERANCE = {"fp32": 1e-3, "bf16": 5e-2, "fp16": 5e-2}


@dataclass
class CamResult:
    """``maps`` float32 (N, H, W) in [0, 1]; ``logits`` (N, K) float32 of the same forward pass;
    ``targets`` (N,) the class each map explains."""

    maps: torch.Tensor
    logits: torch.Tensor
    targets: torch.Tensor


def check_method(name: str) -> str:
    """``name`` when it is a method, else an error with the close matches and the list."""
    if name in METHODS:
        return name
    close = difflib.get_close_matches(name.lower(), METHODS, n=2, cutoff=0.6)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    raise OptionError(f"--method {name} is not a CAM method{hint}; the methods are {', '.join(METHODS)}")


def class_maps(model: nn.Module, x: torch.Tensor, layer: str, targets: torch.Tensor | None = None,
               method: str = "gradcam", *, upsample: bool = True, precision: str = "fp32",
               **options: object) -> CamResult:
    """Maps of ``method`` at ``layer`` for the normalized batch ``x`` (on the model's device, model
    in eval mode), explaining ``targets`` (class indices) or else the predicted classes.

    ``upsample``: maps at the input's size (bilinear, then min-max again), else at the layer's.
    ``options``: ``batch_size`` and ``score`` (one of SCORECAM_WEIGHTS) for scorecam;
    ``augmentations``, ``batch_size``, ``steps``, ``tv``, ``seed`` for augmented-gradcam.
    """
    check_method(method)
    unknown = sorted(set(options) - set(OPTIONS.get(method, ())))
    if unknown:
        takes = ", ".join(OPTIONS.get(method, ())) or "none"
        raise OptionError(f"--method {method} takes no option {', '.join(unknown)} (its options: {takes})")
    targets = check_targets(targets, len(x), _num_outputs(model), x.device)
    size = (x.shape[-2], x.shape[-1])
    if method == "augmented-gradcam":
        from cvkit.explain.augmented import augmented_gradcam

        raw, logits, targets, low = augmented_gradcam(model, x, layer, targets, precision, **options)
        maps = normalize_maps(raw)
        if not upsample:  # the super-resolved map pooled back to the layer's grid, as the other methods give it
            maps = normalize_maps(F.interpolate(maps[:, None], size=low, mode="area")[:, 0])
    else:
        raw, logits, targets = _LOW_RES[method](model, x, layer, targets, precision, **options)
        maps = normalize_maps(raw)
        if upsample:
            maps = upsample_maps(maps, size)
    return CamResult(maps.float(), logits.float(), targets)


def _num_outputs(model: nn.Module) -> int:
    """The classifier's number of outputs, or a huge number when it cannot be told (no check then)."""
    try:
        classifier = model.get_classifier()
    except (AttributeError, ValueError):
        return 10**9
    return int(getattr(classifier, "out_features", getattr(classifier, "out_channels", 0)) or 10**9)


Raw = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # maps (N, h, w) before scaling, logits, targets


def _gradcam(model: nn.Module, x: torch.Tensor, layer: str, targets: torch.Tensor | None, precision: str) -> Raw:
    p = layer_pass(model, x, layer, targets, precision)
    return gradcam_raw(p), p.logits, p.targets


def _gradcam_pp(model: nn.Module, x: torch.Tensor, layer: str, targets: torch.Tensor | None, precision: str) -> Raw:
    """Grad-CAM++ (Chattopadhay et al., 2018), the closed form of its eq. 19 with the second and
    third powers of the gradients standing for the derivatives of exp(score), as pytorch-grad-cam has it."""
    p = layer_pass(model, x, layer, targets, precision)
    g, a = p.gradients, p.activations
    g2 = g * g
    alpha = g2 / (2 * g2 + a.sum((2, 3), keepdim=True) * g2 * g + 1e-6)  # 1e-6: pytorch-grad-cam's eps
    alpha = torch.where(g != 0, alpha, 0.0)
    return weighted_sum((g.relu() * alpha).sum((2, 3)), a).relu(), p.logits, p.targets


def _layercam(model: nn.Module, x: torch.Tensor, layer: str, targets: torch.Tensor | None, precision: str) -> Raw:
    """LayerCAM (Jiang et al., 2021): each position weighted by its own positive gradient."""
    p = layer_pass(model, x, layer, targets, precision)
    return (p.gradients.relu() * p.activations).sum(1).relu(), p.logits, p.targets


def _eigencam(model: nn.Module, x: torch.Tensor, layer: str, targets: torch.Tensor | None, precision: str) -> Raw:
    """Eigen-CAM (Muhammad and Yeasin, 2020): the feature map's projection on its first principal
    component, no gradient and no class. numpy's SVD (the LAPACK that pytorch-grad-cam's
    get_2d_projection calls, batched) fixes the sign of the component as it does."""
    p = layer_pass(model, x, layer, targets, precision, gradients=False)
    a = p.activations.cpu().numpy()
    n, c, h, w = a.shape
    rows = np.nan_to_num(a.reshape(n, c, h * w).transpose(0, 2, 1))  # (N, positions, channels)
    rows = rows - rows.mean(axis=1, keepdims=True)  # centred per channel over the positions
    vt = np.linalg.svd(rows, full_matrices=False)[2]
    projection = np.einsum("npc,nc->np", rows, vt[:, 0]).reshape(n, h, w)
    return torch.from_numpy(np.float32(projection)).to(x.device).relu(), p.logits, p.targets


def _scorecam(model: nn.Module, x: torch.Tensor, layer: str, targets: torch.Tensor | None, precision: str,
              batch_size: int = SCORECAM_BATCH, score: str = "class-softmax") -> Raw:
    """Score-CAM (Wang et al., 2020): each channel, upsampled and scaled to [0, 1], masks the image;
    the target's score on the masked image weighs the channel. All N x C masked images go through
    the net in chunks of ``batch_size``, built chunk by chunk."""
    if score not in SCORECAM_WEIGHTS:
        raise OptionError(f"scorecam score {score!r} must be one of {', '.join(SCORECAM_WEIGHTS)}")
    if int(batch_size) < 1:
        raise OptionError(f"scorecam batch_size {batch_size} must be at least 1")
    p = layer_pass(model, x, layer, targets, precision, gradients=False)
    a = p.activations
    n, c = a.shape[:2]
    scores = torch.empty(n * c, device=x.device)
    with torch.no_grad(), autocast(x.device, precision):
        for start in range(0, n * c, int(batch_size)):
            index = torch.arange(start, min(start + int(batch_size), n * c), device=x.device)
            image, channel = index // c, index % c
            # align_corners=True: the mask's corner values sit on the image's corners, as pytorch-grad-cam upsamples
            mask = F.interpolate(a[image, channel][:, None], size=x.shape[-2:], mode="bilinear", align_corners=True)
            lo = mask.amin((2, 3), keepdim=True)
            mask = (mask - lo) / (mask.amax((2, 3), keepdim=True) - lo + 1e-8)
            logits = model(x[image] * mask.to(x.dtype)).float()
            pick = class_probs if score == "class-softmax" else class_scores
            scores[start:start + len(index)] = pick(logits, p.targets[image])
    weights = scores.view(n, c)
    if score == "channel-softmax":
        weights = torch.softmax(weights, 1)
    return weighted_sum(weights, a).relu(), p.logits, p.targets


def _cam(model: nn.Module, x: torch.Tensor, layer: str, targets: torch.Tensor | None, precision: str) -> Raw:
    """CAM (Zhou et al., 2016): the last feature map weighted by the classifier's weights of the
    target class, sum_k w_k^c A_k (no bias, no ReLU). Only a head that is global average pooling
    then one linear layer (or a 1x1 conv, as NiN's) makes that map sum exactly to the logit; under
    global max pooling (``--head gmp``) the same weighting applies, and the logit is the weighted sum of
    each map's maximum."""
    seen: dict[str, torch.Tensor] = {}
    keep = {layer: lambda out: seen.__setitem__("a", out) if torch.is_tensor(out) else None}
    with hooked(model, keep, lambda name: refuse_layer(model, name, x)), torch.no_grad(), autocast(x.device, precision):
        features = model.forward_features(x)
        logits = model.forward_head(features).float()
    weight, bias = _linear_weights(model.get_classifier(), features)
    if weight is None or _global_pool(features.float(), logits, weight, bias, precision) is None:
        raise OptionError("--method cam needs a model whose head is global average or max pooling then one linear "
                          f"layer; this model's head is {_describe_head(model, features)}: retrain with --head gap or gmp, "
                          "or use --method gradcam")
    a = seen.pop("a", None)
    if a is None or a.shape != features.shape or not torch.allclose(a.float(), features.float()):
        from cvkit.runtime.features import default_layer

        last = default_layer(model, x.shape[1], (x.shape[-2], x.shape[-1]))
        raise OptionError(f"--method cam reads the last feature map (the one pooled into the classifier, layer "
                          f"{last}); --layer {layer} is another: leave --layer out, or use --method gradcam there")
    targets = default_targets(logits) if targets is None else targets
    w = weight[0].expand(len(x), -1) * (2 * targets.float() - 1)[:, None] if len(weight) == 1 else weight[targets]
    return weighted_sum(w, features.float()), logits, targets


def _linear_weights(classifier: nn.Module, features: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The classifier's (K, C) weights and bias when it is a Linear (or 1x1 conv) layer over the
    feature map's C channels; (None, None) otherwise."""
    if features.ndim != 4:
        return None, None
    if isinstance(classifier, nn.Linear) and classifier.in_features == features.shape[1]:
        weight = classifier.weight
    elif isinstance(classifier, nn.Conv2d) and classifier.kernel_size == (1, 1) and classifier.groups == 1 \
            and classifier.in_channels == features.shape[1]:
        weight = classifier.weight.flatten(1)
    else:
        return None, None
    bias = classifier.bias if classifier.bias is not None else torch.zeros(len(weight), device=weight.device)
    return weight.detach().float(), bias.detach().float()


def _global_pool(features: torch.Tensor, logits: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                 precision: str) -> str | None:
    """'average' or 'max' when the logits are the classifier applied to the feature map's spatial mean
    (a GAP head) or maximum (a GMP head), else None: checked on the batch itself, so any architecture's
    head is judged by what it computes, not by its name."""
    for name, pooled in (("average", features.mean((2, 3))), ("max", features.amax((2, 3)))):
        expected = pooled @ weight.T + bias
        if expected.shape != logits.shape:
            return None
        scale = max(float(expected.abs().max()), float(logits.abs().max()), 1e-6)
        if float((expected - logits).abs().max()) <= GAP_TOLERANCE.get(precision, 5e-2) * scale:
            return name
    return None


def _describe_head(model: nn.Module, features: torch.Tensor) -> str:
    """The layers ``forward_head`` runs, in order, e.g. ``Flatten -> Linear -> ReLU -> Linear``."""
    names: list[str] = []
    leaves = {name: type(m).__name__ for name, m in model.named_modules() if name and not list(m.children())}
    with hooked(model, {name: lambda _o, kind=kind: names.append(kind) for name, kind in leaves.items()}), \
            torch.no_grad():
        model.forward_head(features)
    steps = [n for i, n in enumerate(names) if n not in ("Identity", "Dropout") and (i == 0 or names[i - 1] != n)]
    return " -> ".join(steps) or type(model).__name__


_LOW_RES: dict[str, Callable[..., Raw]] = {"cam": _cam, "gradcam": _gradcam, "gradcam++": _gradcam_pp,
                                           "layercam": _layercam, "eigencam": _eigencam, "scorecam": _scorecam}
