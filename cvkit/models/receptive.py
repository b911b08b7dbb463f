"""Receptive fields found by experiment: which input window one unit of a layer sees, for any net.

The net itself answers: a copy made linear and positive (every weight an average, norms and
activations removed, max-pools turned into average pools) passes every input pixel a unit depends
on into its gradient with a positive weight and every other pixel with weight zero, so the nonzero
region of the input gradient of one unit *is* its receptive field, whatever the architecture.

cvkit has a second engine on purpose: :mod:`cvkit.inspect.trace` follows the formula
(``r_out = r_in + (k - 1) * d * j_in``) along one traced pass, which gives every layer of a net at
once for the cost of that pass, on the meta device too. The formula cannot follow an op it does not
know (timm's VGG head stretching a map smaller than its 7x7 fc6, attention, a custom forward);
this experiment can, one layer at a time, at the price of a few real passes on a copy. ``cvkit
inspect`` uses the formula and measures here where it stops; ``visualize --max-patches`` measures
here (one layer, any net). tests/inspect/test_receptive_agree.py checks that the two agree.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from cvkit.errors import OptionError
from cvkit.models.hooks import forward_to
from cvkit.models.layers import Maxout

START_SIZE = 64  # the first input side tried; doubled until the unit's window lies inside the input
MAX_SIZE = 2048  # beyond this a window is taken as the whole image (attention, SE gates, global pools)
NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)
ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Hardswish,
               nn.Hardsigmoid, nn.Mish, nn.PReLU, nn.Softplus, nn.Dropout, nn.Dropout2d)


@dataclass(frozen=True)
class ReceptiveField:
    """The input window of one unit: ``size`` (h, w) in pixels, ``stride`` (y, x) between neighbouring
    units, and ``centre`` (y, x): the input coordinate (pixel index, .5 between two pixels) of the
    centre of unit (0, 0)'s window; negative where padding puts it left of or above the image."""

    size: tuple[int, int]
    stride: tuple[int, int]
    centre: tuple[float, float]

    def origin(self, y: torch.Tensor | int, x: torch.Tensor | int) -> tuple:
        """The top-left input pixel (y0, x0) of the window of unit (y, x): may be negative, and the
        window may end past the image (padding)."""
        y0 = self.centre[0] - (self.size[0] - 1) / 2
        x0 = self.centre[1] - (self.size[1] - 1) / 2
        return y * self.stride[0] + round(y0), x * self.stride[1] + round(x0)


class _LocalOnly(TorchFunctionMode):
    """Cuts the gradient through global reductions of a feature map (the squeeze of a
    squeeze-and-excitation gate, a global pool): through them every unit would see the whole image,
    and the window worth cropping is the one its convolutions see."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        x = args[0] if args else None
        if (func in GLOBAL_REDUCTIONS and isinstance(x, torch.Tensor) and isinstance(out, torch.Tensor)
                and x.ndim == 4 and x.shape[2] * x.shape[3] > 1 and tuple(out.shape) in (x.shape[:2], (*x.shape[:2], 1, 1))):
            return torch.ones_like(out)  # constant: no gradient, and a gate of 1 keeps values from growing
        return out


GLOBAL_REDUCTIONS = {torch.mean, torch.Tensor.mean, torch.sum, torch.Tensor.sum, torch.amax, torch.Tensor.amax,
                     F.adaptive_avg_pool2d, F.adaptive_max_pool2d}


class _AveragingConv(nn.Module):
    """A Conv2d with every weight 1 / fan-in, computed cheaply: all channels of the linear copy hold
    the same values, so the channel mean through one single-channel averaging kernel is the output
    of every channel. ``width`` None keeps one channel (the collapsed net), else expands to it."""

    def __init__(self, conv: nn.Conv2d, width: int | None) -> None:
        super().__init__()
        kh, kw = conv.kernel_size
        self.register_buffer("kernel", torch.full((1, 1, kh, kw), 1.0 / (kh * kw), dtype=torch.float64))
        self.stride, self.padding, self.dilation, self.width = conv.stride, conv.padding, conv.dilation, width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(x.mean(1, keepdim=True), self.kernel, None, self.stride, self.padding, self.dilation)
        return y if self.width is None else y.expand(-1, self.width, -1, -1).contiguous()


class _AveragingLinear(nn.Module):
    """An nn.Linear with every weight 1 / fan-in (on channels-last maps, as in ConvNeXt's blocks)."""

    def __init__(self, width: int | None) -> None:
        super().__init__()
        self.width = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.mean(-1, keepdim=True)
        return y if self.width is None else y.expand(*y.shape[:-1], self.width).contiguous()


class _PieceAverage(nn.Module):
    """A maxout layer made linear and positive: the mean of each unit's pieces (a collapsed copy's single
    channel passes as it is)."""

    def __init__(self, pieces: int) -> None:
        super().__init__()
        self.pieces = pieces

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] % self.pieces:
            return x
        return x.unflatten(1, (x.shape[1] // self.pieces, self.pieces)).mean(2)


def linear_copy(model: nn.Module, collapse: bool = True) -> nn.Module:
    """A copy of ``model`` (float64, eval, on the CPU) whose every path from input to output has a
    positive weight: convolutions and linear layers average their inputs, biases are zero, norms
    and activations are identities, max-pools are average pools of the same window, any other
    parameter (layer scales) is made positive.

    Averaging weights (1 / fan-in, instead of |w| + eps) keep values near 1 at any depth, and
    float64 keeps the product of a deep net's small corner weights (about 9^-depth) from
    underflowing. ``collapse`` gives every averaging layer a single output channel (every channel
    holds the same values anyway): a pass then costs about what one channel of the net costs.
    """
    # The replacements go into deepcopy's memo, so the weights they replace are never copied (VGG's
    # fully connected layers alone are 120M numbers).
    memo: dict[int, object] = {}
    for name, module in model.named_modules():
        if not name:
            continue
        if type(module) is nn.Conv2d and module.padding_mode == "zeros":
            memo[id(module)] = _AveragingConv(module, None if collapse else module.out_channels)
        elif type(module) is nn.Linear:
            memo[id(module)] = _AveragingLinear(None if collapse else module.out_features)
        elif isinstance(module, nn.MaxPool2d):
            memo[id(module)] = nn.AvgPool2d(module.kernel_size, module.stride, module.padding, ceil_mode=module.ceil_mode)
        elif isinstance(module, (*NORMS, *ACTIVATIONS)):
            memo[id(module)] = nn.Identity()
        elif isinstance(module, Maxout):
            memo[id(module)] = _PieceAverage(module.pieces)
    net = copy.deepcopy(model, memo).to("cpu", torch.float64).eval()
    for module in net.modules():
        if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)):  # the subclasses (timm's Conv2dSame)
            with torch.no_grad():
                module.weight.fill_(1.0 / module.weight[0].numel())
                if module.bias is not None:
                    module.bias.zero_()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_().add_(1e-3)
            p.requires_grad_(False)
    return net


def _extent(grad: torch.Tensor) -> tuple[tuple[int, int], tuple[int, int]]:
    """(first, last) row and column where the (H, W) gradient is nonzero."""
    rows = torch.nonzero(grad.abs().sum(1) > 0).flatten()
    cols = torch.nonzero(grad.abs().sum(0) > 0).flatten()
    if len(rows) == 0:
        raise OptionError("the layer's output does not depend on the input image; choose another --layer")
    return (int(rows[0]), int(rows[-1])), (int(cols[0]), int(cols[-1]))


def _windows(net: nn.Module, layer: str, in_chans: int, side: int) -> tuple | None:
    """The windows of a unit near the centre of ``layer``'s map and of its diagonal neighbour, with
    their positions; None when the map is too small or a window reaches the input's border."""
    x = torch.ones(2, in_chans, side, side, dtype=torch.float64, requires_grad=True)
    with _LocalOnly():
        out = forward_to(net, layer, x.clone())  # a clone: a net may change its input in place
    if out.ndim != 4:
        raise OptionError(f"layer '{layer}' has no feature map (its output has shape {tuple(out.shape)}); "
                          "choose a convolutional --layer")
    h, w = out.shape[2:]
    if h < 2 or w < 2:
        return None
    a = (h // 2, w // 2)
    b = (a[0] + 1 if a[0] + 1 < h else a[0] - 1, a[1] + 1 if a[1] + 1 < w else a[1] - 1)
    (out[0, :, a[0], a[1]].sum() + out[1, :, b[0], b[1]].sum()).backward()
    grads = x.grad.sum(1)
    if not torch.isfinite(grads).all():
        raise OptionError(f"the receptive field of layer '{layer}' cannot be measured (the net's linear copy "
                          "overflows); choose an earlier --layer")
    found = []
    for i in range(2):
        (y0, y1), (x0, x1) = _extent(grads[i])
        if y0 == 0 or x0 == 0 or y1 == side - 1 or x1 == side - 1:
            return None  # cut by the border: the true window may be larger
        found.append((y0, y1, x0, x1))
    return a, b, found


def receptive_field(model: nn.Module, layer: str, in_chans: int) -> ReceptiveField:
    """The receptive field of ``layer``'s units in ``model`` (any architecture), found by experiment
    on a linear, positive copy of the net (the model itself is left untouched).

    The input side starts at START_SIZE and doubles until the windows of two neighbouring units
    lie inside it; a layer whose units see the whole image at MAX_SIZE px is refused.
    """
    net = linear_copy(model, collapse=True)
    side = START_SIZE
    while side <= MAX_SIZE:
        try:
            found = _windows(net, layer, in_chans, side)
        except (RuntimeError, ValueError, IndexError):
            if not any(isinstance(m, (_AveragingConv, _AveragingLinear)) and m.width is None for m in net.modules()):
                raise
            # the net needs its channel counts (a split, a reshape by width): the full-width copy
            net = linear_copy(model, collapse=False)
            continue
        if found is not None:
            break
        side *= 2
    else:
        raise OptionError(f"the units of layer '{layer}' see more than a {MAX_SIZE}x{MAX_SIZE} image (a global pool "
                          "or attention mixes every position), so they have no receptive field to crop; "
                          "choose an earlier --layer")
    a, b, ((ay0, ay1, ax0, ax1), (by0, _, bx0, _)) = found
    size = (ay1 - ay0 + 1, ax1 - ax0 + 1)
    stride = (abs(by0 - ay0) // abs(b[0] - a[0]), abs(bx0 - ax0) // abs(b[1] - a[1]))
    centre = ((ay0 + ay1) / 2 - a[0] * stride[0], (ax0 + ax1) / 2 - a[1] * stride[1])
    return ReceptiveField(size, stride, centre)
