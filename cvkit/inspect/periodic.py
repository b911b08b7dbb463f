"""Receptive fields of a decoder: after a transposed convolution the units' windows no longer move by
one jump per unit. A 2x2 up-convolution of stride 2 gives two neighbouring units the same window,
and the next unit one a whole input jump further on; a 3x3 convolution after it sees one window or
two depending on where it sits. So U-Net's last layer has windows of 188 and 204 px (depth 4, valid),
and no single (size, jump, centre) describes them.

Along each axis the windows are periodic: unit ``u``'s window runs from ``lo[u % p] + (u // p) *
shift`` to ``hi[u % p] + (u // p) * shift`` (input pixels). :func:`periodic_field` follows that
exactly through convolutions, pools, transposed convolutions and cvkit's pads and crops, and
:func:`periodic_union` through the concatenations and sums of skip connections. The field it reports
(:class:`Periodic`, a :data:`~cvkit.inspect.trace.Field`) is the largest window, the mean jump, and
the centre of the straight line that fits the windows' centres.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn
from torch.nn.modules.utils import _pair

UNKNOWN = "unknown"  # as cvkit.inspect.trace.UNKNOWN (trace imports this module)


@dataclass(frozen=True)
class Axis:
    """The windows of the units along one axis, one period of ``len(lo)`` units."""

    lo: tuple[float, ...]
    hi: tuple[float, ...]
    shift: float  # input pixels the windows move every period

    @classmethod
    def linear(cls, size: int, jump: int, centre: float) -> "Axis":
        half = (size - 1) / 2
        return cls((centre - half,), (centre + half,), jump)

    def at(self, unit: int) -> tuple[float, float]:
        turns, i = divmod(unit, len(self.lo))
        return self.lo[i] + turns * self.shift, self.hi[i] + turns * self.shift

    def span(self, units: list[int]) -> tuple[float, float]:
        windows = [self.at(u) for u in units]
        return min(w[0] for w in windows), max(w[1] for w in windows)

    def make(self, period: int, shift: float, reads) -> "Axis | None":
        """The axis whose unit u sees the union of the windows of the units ``reads(u)`` here."""
        spans = []
        for u in range(period):
            units = reads(u)
            if not units:
                return None  # a unit that reads nothing (a stride above the kernel): no window
            spans.append(self.span(units))
        return Axis(tuple(s[0] for s in spans), tuple(s[1] for s in spans), shift).simplified()

    def conv(self, k: int, s: int, d: int, pad: int) -> "Axis | None":
        p = len(self.lo)
        period = p // math.gcd(p, s)
        return self.make(period, self.shift * (period * s // p), lambda u: [u * s - pad + t * d for t in range(k)])

    def transposed(self, k: int, s: int, d: int, pad: int) -> "Axis | None":
        return self.make(len(self.lo) * s, self.shift,
                         lambda o: [(o + pad - t * d) // s for t in range(k) if (o + pad - t * d) % s == 0])

    def moved(self, offset: int) -> "Axis":
        return self.make(len(self.lo), self.shift, lambda u: [u + offset])

    @property
    def jump(self) -> float:
        return self.shift / len(self.lo)

    def simplified(self) -> "Axis":
        """One unit per period where the windows do move by one jump per unit."""
        j = self.jump
        if all(self.lo[u] == self.lo[0] + u * j and self.hi[u] == self.hi[0] + u * j for u in range(len(self.lo))):
            return Axis(self.lo[:1], self.hi[:1], j)
        return self

    def field(self) -> tuple[int, float, float]:
        """(largest window, mean jump, centre of unit 0 on the line through the windows' centres)."""
        j = self.jump
        size = round(max(h - l for l, h in zip(self.lo, self.hi))) + 1
        centre = sum((l + h) / 2 - u * j for u, (l, h) in enumerate(zip(self.lo, self.hi))) / len(self.lo)
        return size, int(j) if j == int(j) else j, centre


class Periodic(tuple):
    """A Field ``(size, jump, centre)`` whose units' windows are not evenly spaced; ``axes`` holds them."""

    axes: tuple[Axis, Axis]

    def __new__(cls, axes: tuple[Axis, Axis]) -> "tuple":
        fy, fx = axes[0].field(), axes[1].field()
        field = (fy[0], fx[0]), (fy[1], fx[1]), (fy[2], fx[2])
        if all(len(a.lo) == 1 for a in axes):
            return field  # evenly spaced after all: a plain Field
        self = super().__new__(cls, field)
        self.axes = axes
        return self


def _axes(f: tuple) -> tuple[Axis, Axis] | None:
    if isinstance(f, Periodic):
        return f.axes
    (size, jump, centre) = f
    if centre is None:
        return None
    return Axis.linear(size[0], jump[0], centre[0]), Axis.linear(size[1], jump[1], centre[1])


def _padding(module: nn.Module, k: tuple[int, int], d: tuple[int, int]) -> tuple[int, int] | None:
    pad = module.padding
    if pad == "same":
        return tuple((k[i] - 1) * d[i] // 2 for i in range(2))
    return (0, 0) if pad == "valid" else _pair(pad)


def periodic_field(module: nn.Module, f: tuple, in_shape: tuple, out_shape: tuple) -> tuple | str | None:
    """The field of ``module``'s output when its input's windows are periodic, or the module is a transposed
    convolution; UNKNOWN for a positional op it cannot follow; None for the others (elementwise: the caller's)."""
    axes = _axes(f)
    kinds = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.ConvTranspose2d)
    if type(module) in kinds:
        if axes is None:
            return UNKNOWN
        k, s = _pair(module.kernel_size), _pair(module.stride)
        d = _pair(getattr(module, "dilation", 1)) if not isinstance(module, nn.AvgPool2d) else (1, 1)
        pad = _padding(module, k, d)
        step = Axis.transposed if isinstance(module, nn.ConvTranspose2d) else Axis.conv
        moved = [step(axes[i], k[i], s[i], d[i], pad[i]) for i in range(2)]
    elif hasattr(module, "field_offset"):
        if axes is None:
            return UNKNOWN
        offset = module.field_offset(in_shape, out_shape)
        moved = [axes[i].moved(int(offset[i])) for i in range(2)]
    elif isinstance(module, (nn.modules.conv._ConvNd, nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd)):
        return UNKNOWN  # a subclass that pads as it runs (timm's Conv2dSame): its windows are not known here
    else:
        return None
    if any(a is None for a in moved):
        return UNKNOWN
    return Periodic(tuple(moved))


def periodic_union(fields: list[tuple]) -> tuple | str:
    """The field of a concatenation or sum of maps, one of them (at least) periodic."""
    all_axes = [_axes(f) for f in fields]
    if any(a is None for a in all_axes):
        return UNKNOWN
    merged = []
    for i in range(2):
        axes = [a[i] for a in all_axes]
        if any(a.jump != axes[0].jump for a in axes):
            return UNKNOWN
        period = math.lcm(*(len(a.lo) for a in axes))
        spans = [(min(a.at(u)[0] for a in axes), max(a.at(u)[1] for a in axes)) for u in range(period)]
        merged.append(Axis(tuple(s[0] for s in spans), tuple(s[1] for s in spans),
                           axes[0].jump * period).simplified())
    return Periodic(tuple(merged))
