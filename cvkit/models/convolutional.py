"""Classifiers as fully convolutional nets: every fully connected layer of the head becomes a convolution
with the same weights and bias, so the net slides over images of any size (at least the training size).

The first linear layer after a flattened (C, h, w) feature map becomes a (h, w) convolution over C
channels (VGG16: 7x7 over 512), the following ones 1x1 convolutions. A global average pool is dropped:
the layers after it must be affine (linear, dropout, BatchNorm), so they run at every location and the
mean of the resulting map is the original logit. The head's layers are found by a pass at the training
size that records the leaf modules called after ``forward_features``, with their shapes; a layer that
does not act location by location is refused by name. Lives in ``cvkit.models`` (layer 3) because
``runtime.load_run`` rebuilds a convolutionalized run from model.json with it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from cvkit.errors import OptionError
from cvkit.models.inspection import probe
from cvkit.models.layers import Maxout, Net, replace_last_layer

ELEMENTWISE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Hardswish,
               nn.Hardsigmoid, nn.Mish, nn.Softplus, nn.PReLU)
IDENTITY_IN_EVAL = (nn.Identity, nn.Dropout, nn.Dropout2d, nn.Flatten)


def _avg_pool_types() -> tuple[type, ...]:
    from timm.layers.adaptive_avgmax_pool import FastAdaptiveAvgPool

    return nn.AdaptiveAvgPool2d, nn.AvgPool2d, FastAdaptiveAvgPool


@dataclass
class _Call:
    name: str
    module: nn.Module
    inp: tuple[int, ...]
    out: tuple[int, ...]


class DenseNet(nn.Module):
    """A classifier turned fully convolutional: ``score_maps(x)`` gives (N, K, h', w') class scores, one per
    window; ``forward(x)`` their mean over the map, the original logits at the training size."""

    def __init__(self, backbone: nn.Module | None, head: nn.Sequential, num_features: int, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone  # the original model with its head layers removed; None: the net reads the image
        self.head = head
        self.num_features = num_features
        self.num_classes = num_classes

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.backbone is None else self.backbone.forward_features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if pre_logits:
            return self.head[:-1](x).mean((2, 3))
        return self.head(x).mean((2, 3))

    def score_maps(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head[-1]

    def reset_classifier(self, num_classes: int) -> None:
        replace_last_layer(self.head, num_classes)
        self.num_classes = num_classes


def _record(model: nn.Module, shape: tuple[int, ...]) -> list[_Call]:
    names = {id(m): n for n, m in model.named_modules()}
    calls: list[_Call] = []

    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        calls.append(_Call(names.get(id(module), "?"), module, tuple(args[0].shape), tuple(output.shape)))

    hooks = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        probe(model, shape)
    finally:
        for h in hooks:
            h.remove()
    return calls


def _refuse(call: _Call, why: str) -> OptionError:
    return OptionError(f"cannot convolutionalize: head layer '{call.name}' ({type(call.module).__name__}) {why}; "
                       "convolutionalize works on heads of linear, convolution, pooling, dropout, flatten, "
                       "BatchNorm and elementwise activation layers")


def _convert(calls: list[_Call], shape: tuple[int, int, int]) -> tuple[list[nn.Module], bool]:
    """The dense head's layers for the head calls, from a (C, h, w) map; and whether a global pool was dropped."""
    layers: list[nn.Module] = []
    c, h, w = shape
    pooled = False
    for call in calls:
        m = call.module
        if isinstance(m, _avg_pool_types()) and len(call.inp) == 4:
            oh, ow = (call.out[2], call.out[3]) if len(call.out) == 4 else (1, 1)
            if (oh, ow) == (h, w):
                continue  # the identity at the training size (AlexNet's 6x6 pool of a 6x6 map)
            if (oh, ow) == (1, 1):
                pooled, h, w = True, 1, 1
                continue
            if isinstance(m, nn.AvgPool2d) and not pooled:
                layers.append(copy.deepcopy(m))
                h, w = oh, ow
                continue
            raise _refuse(call, f"resizes the {h}x{w} feature map to {oh}x{ow}, which has no sliding equivalent")
        if isinstance(m, nn.Linear):
            if len(call.inp) != 2:
                raise _refuse(call, "is applied to a map, not to a flattened vector")
            if m.in_features != c * h * w:
                raise _refuse(call, f"takes {m.in_features} inputs, not the {c}x{h}x{w} map before it")
            conv = nn.Conv2d(c, m.out_features, (h, w), bias=m.bias is not None).to(m.weight.device, m.weight.dtype)
            with torch.no_grad():
                conv.weight.copy_(m.weight.view(m.out_features, c, h, w))
                if m.bias is not None:
                    conv.bias.copy_(m.bias)
            layers.append(conv)
            c, h, w = m.out_features, 1, 1
        elif isinstance(m, nn.Conv2d):
            if pooled and (m.kernel_size != (1, 1) or m.stride != (1, 1)):
                raise _refuse(call, "follows the global average pooling and is not a 1x1 convolution")
            layers.append(copy.deepcopy(m))
            c, h, w = call.out[1], call.out[2], call.out[3]
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            if len(call.inp) == 2 and h * w > 1:
                raise _refuse(call, "normalizes each position of a flattened map separately")
            bn = nn.BatchNorm2d(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats)
            bn.load_state_dict(m.state_dict())
            layers.append(bn.to(next(m.buffers()).device))
        elif isinstance(m, IDENTITY_IN_EVAL):
            if not isinstance(m, nn.Flatten):
                layers.append(copy.deepcopy(m))
        elif isinstance(m, Maxout):  # the max over each unit's pieces, position by position
            if pooled:
                raise _refuse(call, "is not linear and follows the global average pooling, so it does not "
                                    "commute with it")
            layers.append(copy.deepcopy(m))
            c = call.out[1]
        elif isinstance(m, ELEMENTWISE):
            if pooled:
                raise _refuse(call, "is not linear and follows the global average pooling, so it does not "
                                    "commute with it")
            layers.append(copy.deepcopy(m))
        elif isinstance(m, (nn.MaxPool2d, nn.AdaptiveMaxPool2d)) and len(call.inp) == 4 and call.out[-2:] == (h, w):
            continue
        elif isinstance(m, nn.MaxPool2d) and not pooled and len(call.out) == 4 and call.out[-2:] != (1, 1):
            layers.append(copy.deepcopy(m))
            h, w = call.out[2], call.out[3]
        else:
            raise _refuse(call, "does not act location by location")
    return layers, pooled


def to_convolutional(model: nn.Module, in_chans: int, input_size: tuple[int, int]) -> DenseNet:
    """``model`` as a :class:`DenseNet` whose weights are the model's own. The model is taken over: its
    head layers are replaced by ``nn.Identity`` (they now live, as convolutions, in the dense head)."""
    model.eval()
    shape = (1, in_chans, int(input_size[0]), int(input_size[1]))
    features, called = probe(model, shape, "forward_features")
    calls = _record(model, shape)
    image_input = not isinstance(features, torch.Tensor) or features.ndim != 4
    if image_input:
        if not isinstance(model, Net):
            raise OptionError(f"cannot convolutionalize {type(model).__name__}: its features are not a feature map")
        head_calls, start = calls, shape[1:]  # the image is the feature map (perceptron, mlp)
    else:
        head_calls, start = [c for c in calls if c.module not in called], tuple(features.shape[1:])
    layers, _ = _convert(head_calls, start)  # type: ignore[arg-type]
    if not any(isinstance(m, nn.Conv2d) for m in layers):
        raise OptionError("cannot convolutionalize: the head has no linear or convolution layer")
    for call in head_calls:
        if call.name and call.name != "?":
            model.set_submodule(call.name, nn.Identity())
    num_features = features.shape[1] if not image_input else in_chans
    classes = next(m for m in reversed(layers) if isinstance(m, nn.Conv2d)).out_channels
    dense = DenseNet(None if image_input else model, nn.Sequential(*layers), int(num_features), classes)
    out, _ = probe(dense, shape, "score_maps")
    if out.ndim != 4:
        raise OptionError("cannot convolutionalize: the converted head does not make a score map")
    return dense.eval()
