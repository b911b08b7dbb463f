"""One forward pass of one image with a hook on every leaf module: what each call makes, in the order
the calls run, and the receptive field of its output, by formula wherever one applies.

Along a chain of layers ``r_out = r_in + (k - 1) * d * j_in`` and ``j_out = j_in * s``; where
branches merge (a residual ``x += shortcut``, a concatenation, a squeeze-and-excitation product),
no module runs, so a function mode watches additions, products and concatenations and gives their
result the union of the branches' windows (which needs each window's centre, tracked from the
paddings). Each traced tensor is remembered with its version counter (which every in-place change
bumps), and a call whose input is no remembered tensor (an op the trace does not know) gets no
formula value: the caller measures that layer (:func:`cvkit.models.receptive.receptive_field`) and
the chain goes on from the measured value. After a transposed convolution (a decoder's upsampling)
neighbouring units' windows are no longer evenly spaced: :mod:`cvkit.inspect.periodic` follows them
exactly and reports the largest.

Both engines are kept on purpose: the formula gives every layer from one pass (on the meta device
too: VGG16 or a large timm net costs milliseconds), the experiment handles any op but one layer at a
time with real passes on a copy. tests/inspect/test_receptive_agree.py checks that they agree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.modules.utils import _pair
from torch.overrides import TorchFunctionMode

from cvkit.inspect.periodic import Periodic, periodic_field, periodic_union
from cvkit.models.inspection import eval_mode
from cvkit.models.receptive import ACTIVATIONS, GLOBAL_REDUCTIONS, NORMS

# The receptive field of a map's units: ((height, width), (jump_y, jump_x), centre), in input pixels;
# centre: (y, x) of unit (0, 0)'s window centre (pixel index), None where a layer's padding is not known.
Field = tuple[tuple[int, int], tuple[int, int], tuple[float, float] | None]
GLOBAL = "global"  # units that see the whole image: after a global pool, a flatten, or from such units
UNKNOWN = "unknown"  # no formula applies: measure it
PIXEL: Field = ((1, 1), (1, 1), (0.0, 0.0))

# Modules that change no position's receptive field (they act on each position, or only on channels).
ELEMENTWISE = (*ACTIVATIONS, *NORMS, nn.Identity, nn.Dropout, nn.Dropout2d, nn.Softmax, nn.Softmax2d)
# Modules that act on the last dimension: a 4-D output of theirs is channels-last, not an (N, C, h, w) map.
LAST_DIM = (nn.Linear, nn.LayerNorm)


def is_activation(module: nn.Module) -> bool:
    """An element-wise nonlinearity (ReLU, GELU, timm's own activation modules): its output may
    overwrite its input, so the usual activation count leaves it out."""
    if isinstance(module, (nn.Dropout, nn.Dropout2d)):
        return False
    return isinstance(module, ACTIVATIONS) or type(module).__module__.startswith("timm.layers.activations")


@dataclass
class Call:
    """One call of a leaf module. Shapes are per image (the batch dimension dropped); ``field`` is
    a :data:`Field`, :data:`GLOBAL`, :data:`UNKNOWN`, or None for a call whose output is no map."""

    name: str
    module: nn.Module
    repeat: int  # 0 for a module's first call, 1 for its second (a ReLU a block calls twice), ...
    in_shape: tuple[int, ...] | None
    out_shape: tuple[int, ...] | None
    noop: bool = False  # the output is the input, untouched (Identity, Dropout and DropPath in eval mode)
    field: Field | str | None = None

    @property
    def is_map(self) -> bool:
        """Whether the output is an (N, C, h, w) feature map."""
        return self.out_shape is not None and len(self.out_shape) == 3 and not isinstance(self.module, LAST_DIM)


def _conv_field(f: Field, module: nn.Module, dilation) -> Field:
    (r, j, c), k, s, d = f, _pair(module.kernel_size), _pair(module.stride), _pair(dilation)
    size = tuple(r[i] + (k[i] - 1) * d[i] * j[i] for i in range(2))
    # The centre moves by half the kernel less the padding; subclasses (timm's Conv2dSame) pad as they run.
    exact = type(module) in (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)
    pad = module.padding
    if pad == "same":
        pad = tuple((k[i] - 1) * d[i] // 2 for i in range(2))
    pad = (0, 0) if pad == "valid" else _pair(pad)
    centre = tuple(c[i] + ((k[i] - 1) * d[i] / 2 - pad[i]) * j[i] for i in range(2)) if c and exact else None
    return size, tuple(j[i] * s[i] for i in range(2)), centre


def union(fields: list[Field]) -> Field | str:
    """The field of a sum, product or concatenation of maps: the windows' union (one jump and known
    centres needed, else UNKNOWN)."""
    if any(isinstance(f, Periodic) for f in fields):
        return periodic_union(fields)
    if any(f[2] is None or f[1] != fields[0][1] for f in fields):
        return UNKNOWN
    lo = [min(f[2][i] - (f[0][i] - 1) / 2 for f in fields) for i in range(2)]
    hi = [max(f[2][i] + (f[0][i] - 1) / 2 for f in fields) for i in range(2)]
    size = tuple(round(hi[i] - lo[i]) + 1 for i in range(2))
    return size, fields[0][1], tuple((lo[i] + hi[i]) / 2 for i in range(2))


def propagate(module: nn.Module, f: Field | str, in_shape: tuple | None, out_shape: tuple | None) -> Field | str:
    """The receptive field of ``module``'s output from its input's, or UNKNOWN where no formula applies."""
    if f in (UNKNOWN, GLOBAL):
        return f
    if out_shape is None or len(out_shape) != 3 or in_shape is None or len(in_shape) != 3:
        return GLOBAL if out_shape is not None and len(out_shape) < 3 else UNKNOWN
    if isinstance(module, nn.Conv2d) and not isinstance(f, Periodic):
        return _conv_field(f, module, module.dilation)  # and its subclasses (timm's Conv2dSame: the padding differs)
    if isinstance(f, Periodic) or isinstance(module, nn.ConvTranspose2d):
        moved = periodic_field(module, f, in_shape, out_shape)
        if moved is not None:
            return moved
    elif hasattr(module, "field_offset"):  # a pad or crop (cvkit's segmentation nets): output unit (0, 0) moves
        (dy, dx), (r, j, c) = module.field_offset(in_shape, out_shape), f
        return r, j, (c[0] + dy * j[0], c[1] + dx * j[1]) if c else None
    if isinstance(module, nn.MaxPool2d):
        return _conv_field(f, module, module.dilation)
    if isinstance(module, nn.AvgPool2d):
        return _conv_field(f, module, 1)
    same = in_shape[1:] == out_shape[1:]
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        # A pool to 1x1 is global whatever its input; one to its input's own size copies (at this size).
        return GLOBAL if out_shape[1:] == (1, 1) else f if same else UNKNOWN
    if isinstance(module, ELEMENTWISE) or is_activation(module):
        return f if same else UNKNOWN
    return UNKNOWN


def _first_tensor(value: object) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], torch.Tensor):
        return value[0]
    return None


class _Tags:
    """The receptive field of every tensor a traced call made, valid while the tensor is unchanged."""

    def __init__(self) -> None:
        self.known: dict[int, tuple[torch.Tensor, int, Field | str]] = {}

    def put(self, t: torch.Tensor, f: Field | str) -> None:
        self.known[id(t)] = (t, t._version, f)  # the tensor itself is held: its id stays unique

    def get(self, t: torch.Tensor | None) -> Field | str:
        entry = self.known.get(id(t)) if t is not None else None
        if entry is None or entry[0] is not t or entry[1] != t._version:
            return UNKNOWN
        return entry[2]


MERGES = {torch.add, torch.Tensor.add, torch.Tensor.add_, torch.Tensor.__add__, torch.Tensor.__iadd__,
          torch.Tensor.__radd__, torch.mul, torch.Tensor.mul, torch.Tensor.mul_, torch.Tensor.__mul__,
          torch.Tensor.__imul__, torch.Tensor.__rmul__, torch.cat}


class _Merges(TorchFunctionMode):
    """Gives the result of an addition, product or concatenation of traced maps the union of their
    fields (a residual block's ``x += shortcut``). A factor without extent (a squeeze-and-excitation
    gate, a layer scale) is left out, as receptive_field leaves it out."""

    def __init__(self, tags: _Tags, busy: list) -> None:
        super().__init__()
        self.tags, self.busy = tags, busy

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        fields = self._fields(func, args, kwargs) if func in MERGES and not self.busy else None
        out = func(*args, **kwargs)  # after the look-up: ``x += y`` changes x
        if fields and isinstance(out, torch.Tensor) and out.ndim == 4:
            self.tags.put(out, union(fields))
        elif func in GLOBAL_REDUCTIONS and not self.busy and isinstance(out, torch.Tensor):
            x = args[0] if args else None  # a squeeze-and-excitation squeeze: its units see everything
            if (isinstance(x, torch.Tensor) and x.ndim == 4 and x.shape[2] * x.shape[3] > 1
                    and tuple(out.shape) in (tuple(x.shape[:2]), (*x.shape[:2], 1, 1))):
                self.tags.put(out, GLOBAL)
        return out

    def _fields(self, func, args: tuple, kwargs: dict) -> list[Field] | None:
        if func is torch.cat:
            if kwargs.get("dim", args[1] if len(args) > 1 else 0) not in (1, -3):
                return None
            tensors = list(args[0])
        else:
            tensors = list(args)
        maps = [t for t in tensors if isinstance(t, torch.Tensor) and t.ndim == 4 and tuple(t.shape[2:]) != (1, 1)]
        fields = [self.tags.get(t) for t in maps]
        if not fields or len({tuple(t.shape[2:]) for t in maps}) > 1 or not all(isinstance(f, tuple) for f in fields):
            return None
        return fields


def traced_units(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules a trace hooks, in registration order: every leaf, and each norm layer that holds
    its activation inside (timm's BatchNormAct2d), whose children are then not hooked apart."""
    units, fused = [], []
    for name, module in model.named_modules():
        if not name or any(name.startswith(f + ".") for f in fused):
            continue
        if next(module.children(), None) is None:
            units.append((name, module))
        elif isinstance(module, NORMS):
            units.append((name, module))
            fused.append(name)
    return units


def trace(model: nn.Module, in_chans: int, size: tuple[int, int],
          measure: Callable[[Call], Field | str] | None = None) -> list[Call]:
    """Every call of a traced unit (:func:`traced_units`) in one forward pass of a blank
    (1, in_chans, h, w) image, in order, on
    the model's device (the meta device computes shapes only), in eval mode, without gradients.

    ``measure(call)`` is asked for the field of each map whose input is not a traced tensor (a
    branch merged); it returns a Field, GLOBAL or UNKNOWN, and the chain continues from it.
    """
    units = traced_units(model)
    calls: list[Call] = []
    counts: dict[int, int] = {}
    tags = _Tags()
    pending: list[tuple[torch.Tensor | None, int, Field | str]] = []

    measuring = []  # a measurement runs a copy of the model, which carries these hooks too

    def before(module: nn.Module, args: tuple) -> None:
        if measuring:
            return
        x = _first_tensor(args)
        pending.append((x, x._version if x is not None else 0, tags.get(x)))

    def after(name: str, module: nn.Module, out: object) -> None:
        if measuring:
            return
        x, version, f_in = pending.pop()
        y = _first_tensor(out)
        in_shape = tuple(x.shape[1:]) if x is not None else None
        out_shape = tuple(y.shape[1:]) if y is not None else None
        noop = y is not None and y is x and y._version == version
        call = Call(name, module, counts.get(id(module), 0), in_shape, out_shape, noop=noop)
        counts[id(module)] = call.repeat + 1
        f = propagate(module, f_in, in_shape, out_shape)
        if f == UNKNOWN and call.is_map and measure is not None:
            measuring.append(call)
            try:
                with torch.enable_grad():
                    f = measure(call)
            finally:
                measuring.clear()
        call.field = f if call.is_map else None
        if y is not None:
            tags.put(y, f)
        calls.append(call)

    handles = []
    for name, module in units:
        handles.append(module.register_forward_pre_hook(before))
        handles.append(module.register_forward_hook(lambda m, a, o, name=name: after(name, m, o)))
    device = next((t.device for t in (*model.parameters(), *model.buffers())), torch.device("cpu"))
    x = torch.zeros(1, in_chans, *size, device=device)
    tags.put(x, PIXEL)
    try:
        with torch.no_grad(), eval_mode(model), _Merges(tags, measuring):
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return calls
