"""The layer table and the totals of ``cvkit inspect``, from one traced pass (:mod:`cvkit.inspect.trace`).

Conventions (stated again in the output, and in README):

- Activations are per image, 4 bytes each (float32). The main count is the input plus the output
  of every layer once, element-wise activations (ReLU) left out because they can overwrite their
  input (``inplace=True``): for VGG16 the input and each convolution, pooling and fully connected
  output, the count of the usual tables. The second count keeps each activation's output as a
  separate tensor, as autograd does when it is not in place.
- Training needs, per image, about 2 x the second count x 4 bytes: every output is kept for the
  backward pass, and a gradient of the same size is made for each. Weights, their gradients and
  the optimizer's state come on top, once per model.
- Multiply-accumulates count convolutions (out_h * out_w * out_c * in_c / groups * kh * kw) and
  fully connected layers (in * out) only: pooling, norms, activations and additions are left out.
- Parameters are fully connected when they belong to the classifier head
  (:func:`cvkit.models.inspection.head_parameter_names`: VGG's fc6/fc7, which timm writes as
  convolutions, included) or to any other ``nn.Linear``; convolutional when they belong to a
  convolution outside the head; other (norms, embeddings, scales) otherwise.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from cvkit.inspect.trace import Call, is_activation
from cvkit.models.inspection import count_parameters, head_parameter_names
from cvkit.models.receptive import NORMS

BYTES = 4  # float32
SKIPPED = (nn.Flatten, nn.Unflatten)  # views: they compute nothing and hold no memory of their own
CONVENTIONS = {
    "activations": "the input and each layer's output once; element-wise activations (ReLU) left out, "
                   "as they can run in place (for VGG16: the input and every conv, pool and FC output)",
    "activations_with_relu": "as 'activations', plus each element-wise activation's output as a separate tensor",
    "training_bytes": "2 x activations_with_relu x 4 bytes: every output kept for the backward pass, plus "
                      "its gradient (weights, gradients of weights and optimizer state not included)",
    "macs": "multiply-accumulates of convolutions (out_h*out_w*out_c*in_c/groups*kh*kw) and fully connected "
            "layers (in*out) only",
    "fully_connected": "parameters of the classifier head (convolutions there, such as VGG's fc6/fc7, "
                       "included) and of every other nn.Linear",
    "receptive_field": "input pixels one unit of a feature map sees (height, width) and the stride (jump) "
                       "between neighbouring units; null where the output is no feature map; after a transposed "
                       "convolution (a decoder), where units' windows differ, the largest and the mean jump",
}


@dataclass
class Row:
    """One line of the table: a layer call, or the input."""

    name: str
    type: str
    kind: str  # input, conv, fc, pool, norm, activation, other
    shape: list[int]  # per image: (C, h, w) for a feature map
    parameters: int  # the layer's own, at its first call (0 for the later calls of a shared layer)
    macs: int
    values: int  # activation values of the output, per image
    bytes: int
    receptive_field: list[int] | None  # (height, width)
    jump: list[int] | None  # (y, x)
    counted: bool  # in the main activation count
    fused_activation: bool = False  # a norm with its activation inside (timm's BatchNormAct2d)


@dataclass
class Inspection:
    """What ``cvkit inspect`` reports for one model at one input size."""

    subject: str  # the architecture, or the run directory
    arch: str
    input_size: list[int]
    in_chans: int
    num_classes: int
    rows: list[Row]
    totals: dict[str, Any]
    conventions: dict[str, str] = field(default_factory=lambda: dict(CONVENTIONS))
    notes: list[str] = field(default_factory=list)  # what the net says of itself (a U-Net: its tiling)

    def to_dict(self) -> dict[str, Any]:
        return {"format": 1, **asdict(self)}


def _kind(module: nn.Module, head: bool) -> str:
    if isinstance(module, nn.Linear) or (head and isinstance(module, nn.modules.conv._ConvNd)):
        return "fc"
    if isinstance(module, nn.modules.conv._ConvNd):
        return "conv"
    if "Pool" in type(module).__name__:
        return "pool"
    if isinstance(module, NORMS):
        return "norm"
    return "activation" if is_activation(module) else "other"


def _macs(call: Call) -> int:
    module, weight = call.module, getattr(call.module, "weight", None)
    if call.out_shape is None or weight is None:
        return 0
    if isinstance(module, nn.modules.conv._ConvNd):
        # weight[0]: in_c / groups * kernel for a convolution, out_c / groups * kernel for a transposed one
        side = call.in_shape if module.transposed else call.out_shape
        return math.prod(side or ()) * weight[0].numel()
    if isinstance(module, nn.Linear):
        return math.prod(call.out_shape) * module.in_features
    return 0


def _pair(value: int, other: int) -> str:
    return str(value) if value == other else f"{value}x{other}"


def rows_of(model: nn.Module, calls: list[Call], in_chans: int, size: tuple[int, int]) -> list[Row]:
    """The table's rows: the input, then every call that computes something, in forward order."""
    head = head_parameter_names(model)
    values = in_chans * size[0] * size[1]
    rows = [Row("input", "Input", "input", [in_chans, *size], 0, 0, values, values * BYTES, [1, 1], [1, 1], True)]
    for call in calls:
        if call.noop or call.out_shape is None or isinstance(call.module, SKIPPED):
            continue
        own = [(f"{call.name}.{n}", p) for n, p in call.module.named_parameters()]
        kind = _kind(call.module, any(n in head for n, _ in own))
        n_values = math.prod(call.out_shape)
        # An adaptive pool to its input's own size (torchvision VGG's avgpool at 224 px) only copies.
        copy = kind == "pool" and call.in_shape == call.out_shape
        f = call.field if isinstance(call.field, tuple) else None
        fused = isinstance(call.module, NORMS) and any(is_activation(m) for m in call.module.children())
        rows.append(Row(
            call.name + (f" (call {call.repeat + 1})" if call.repeat else ""),
            type(call.module).__name__ + (" (copy)" if copy else ""), kind, list(call.out_shape),
            0 if call.repeat else sum(p.numel() for _, p in own), _macs(call), n_values, n_values * BYTES,
            list(f[0]) if f else None, list(f[1]) if f else None, kind != "activation" and not copy, fused))
    return rows


def totals_of(model: nn.Module, rows: list[Row]) -> dict[str, Any]:
    """Parameters (convolutional, fully connected, other, with shares), multiply-accumulates and
    activation memory per image, by the conventions of the module docstring."""
    head = head_parameter_names(model)
    parts = {"convolutional": 0, "fully_connected": 0, "other": 0}
    for name, p in model.named_parameters():
        owner = model.get_submodule(name.rpartition(".")[0])
        part = ("fully_connected" if name in head or isinstance(owner, nn.Linear)
                else "convolutional" if isinstance(owner, nn.modules.conv._ConvNd) else "other")
        parts[part] += p.numel()
    total = count_parameters(model)
    counted = sum(r.values for r in rows if r.counted)
    with_relu = counted + sum(r.values for r in rows if r.kind == "activation" or r.fused_activation)
    conv_macs = sum(r.macs for r in rows if r.kind == "conv")
    fc_macs = sum(r.macs for r in rows if r.kind == "fc")
    return {
        "parameters": total,
        "parameters_by_part": parts,
        "parameter_shares": {k: (v / total if total else 0.0) for k, v in parts.items()},
        "parameters_outside_rows": total - sum(r.parameters for r in rows),
        "parameter_bytes": total * BYTES,
        "macs": conv_macs + fc_macs,
        "macs_by_part": {"convolutional": conv_macs, "fully_connected": fc_macs},
        "activations": counted,
        "activation_bytes": counted * BYTES,
        "activations_with_relu": with_relu,
        "activation_with_relu_bytes": with_relu * BYTES,
        "training_bytes": 2 * with_relu * BYTES,
    }


def field_text(row: Row, key: str) -> str:
    """A receptive field or jump for the table: '212', '212x180', or '-'."""
    value = getattr(row, key)
    return _pair(*value) if value else "-"
