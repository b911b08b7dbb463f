"""Test-time augmentation views: fixed copies of a batch (mirror, shifts, zooms) that ``evaluate`` and
``predict --tta`` average with the image itself, in probability space (:mod:`cvkit.runtime.infer`).

Each name stands for one or more views of the same kind; the task moves what a view predicts about
positions back to the image's own frame (:meth:`cvkit.tasks.base.Task.view_back`). Shifts and zooms are
made as training's ``--translate`` and ``--scale`` make them (:mod:`cvkit.transforms.geometric`): on the
[0, 1] image before normalization, zeros (black) brought in at the borders, whole-pixel shifts with no
interpolation, zooms resampled bilinearly about the centre.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cvkit.errors import OptionError

if TYPE_CHECKING:  # torch is imported where a view is made: the CLI reads the names at start-up
    import torch

# A shift moves the image by this share of its side, at least one pixel (1 px at 28 px, 9 px at 224):
# about what training's --translate moves, and small enough to keep an object whole.
SHIFT = 0.04
# Zooms about the centre: 0.9 shrinks the image (black borders), 1.1 magnifies it (edges cut off).
ZOOMS = (0.9, 1.1)
# What each name adds, in this order (also the order views are averaged and recorded in).
VIEW_NAMES = ("flip", "shift", "scale")
VIEW_HELP = {"flip": "the horizontal mirror",
             "shift": f"4 shifts by {SHIFT:.0%} of the side (at least 1 px) left, right, up and down, zero-padded",
             "scale": f"zooms by {' and '.join(map(str, ZOOMS))} about the centre, zero-padded or cropped back"}


@dataclass(frozen=True)
class View:
    """One test-time copy of a batch: ``kind`` flip, shift (by ``dx``, ``dy`` pixels: right and down
    are positive) or scale (``zoom`` above 1 magnifies), of images ``size`` (H, W)."""

    kind: str
    size: tuple[int, int]
    dx: int = 0
    dy: int = 0
    zoom: float = 1.0

    @property
    def on_unit(self) -> bool:
        """Whether the view is made on the [0, 1] image before normalization (zeros at the borders as in
        training); a flip needs no padding and is made on the normalized batch, as before there were views."""
        return self.kind != "flip"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The view of an N x C x H x W batch."""
        import torch
        import torch.nn.functional as F

        if self.kind == "flip":
            return x.flip(3)
        if self.kind == "shift":
            return _shift(x, self.dx, self.dy)
        # The output's normalized coordinate u samples the source at u / zoom (align_corners=False: pixel
        # centres as training's grid).
        theta = torch.tensor([[1 / self.zoom, 0, 0], [0, 1 / self.zoom, 0]], dtype=x.dtype, device=x.device)
        grid = F.affine_grid(theta.expand(len(x), 2, 3), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _shift(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """``x`` moved ``dx`` columns right and ``dy`` rows down (negative: left, up), zeros brought in."""
    import torch.nn.functional as F

    h, w = x.shape[2:]
    padded = F.pad(x, (max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0)))
    top, left = max(-dy, 0), max(-dx, 0)
    return padded[:, :, top:top + h, left:left + w]


def parse_views(tta: bool | str | Sequence[str] | None) -> tuple[str, ...]:
    """``--tta`` as view names in :data:`VIEW_NAMES` order: True is flip (the old flag), False, ``none``
    or an empty list none; ``flip,shift`` two. An unknown or empty name is refused with the valid ones."""
    if tta is None or tta is False or (not isinstance(tta, (str, bool)) and not tta):
        return ()
    if tta is True:
        return ("flip",)
    text = tta if isinstance(tta, str) else ",".join(tta)
    names = [part.strip().lower() for part in text.split(",")]
    if names == ["none"]:
        return ()
    valid = ", ".join(VIEW_NAMES)
    for name in names:
        if name not in VIEW_NAMES:
            close = difflib.get_close_matches(name, VIEW_NAMES, n=1)
            what = f"unknown view '{name}'" if name else "an empty view name"
            hint = f" Did you mean {close[0]}?" if close else ""
            shown = text if text.strip() else repr(text)
            raise OptionError(f"--tta {shown}: {what}.{hint} Give views from {valid}, separated by commas (for "
                              f"example --tta flip,shift), or --no-tta")
    return tuple(name for name in VIEW_NAMES if name in names)


def make_views(names: Sequence[str], size: tuple[int, int]) -> list[View]:
    """The views the names stand for, for images of ``size`` (H, W); the image itself is not among them."""
    h, w = size
    sy, sx = max(1, round(SHIFT * h)), max(1, round(SHIFT * w))
    made = {"flip": [View("flip", size)],
            "shift": [View("shift", size, dx=sx), View("shift", size, dx=-sx), View("shift", size, dy=sy),
                      View("shift", size, dy=-sy)],
            "scale": [View("scale", size, zoom=z) for z in ZOOMS]}
    return [view for name in names for view in made[name]]
