"""``--arch unet``: U-Net (Ronneberger et al., 2015), a class for every pixel.

A contracting path of levels (two 3x3 convolutions, each with its activation, then a 2x2 max-pool
that halves the size; the width doubles at each level), a bottleneck, and an expanding path that
mirrors it: a 2x2 up-convolution (transposed, halving the width), concatenation with the contracting
level's features (centre-cropped when the convolutions are valid), two 3x3 convolutions. A 1x1
convolution (the head) makes one logit per class; there is no fully connected layer.

``--padding valid`` is the paper's net: each 3x3 convolution trims a pixel from every side, so the
output is smaller than the input (572 -> 388 px at depth 4). cvkit handles the border as the paper's
overlap-tile strategy does: the input is mirror-padded (:class:`~cvkit.models.dense_io.MirrorPad`)
so that the valid output covers the whole image, then cropped to it. ``--padding same`` keeps the
size at each convolution; the input is mirror-padded at the bottom and right to a multiple of
``2 ** depth`` only. Either way the logits have the input's height and width, for any size from
``2 ** depth`` px up. :func:`unet_sizes` gives the arithmetic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from cvkit.errors import OptionError
from cvkit.files.config import PADDINGS
from cvkit.models.dense_io import Crop, MirrorPad, Segmenter
from cvkit.models.layers import conv_block, dropout_layers
from cvkit.models.registry import Options, register_model

# unet: tune here. model.json keeps each run's own values, so a change only shapes new runs.
# The paper's net is 64 wide and 4 levels deep on 572 px tiles; cvkit's default is for small images
# (64 px) on a CPU. With valid convolutions the mirror margin doubles with every level (unet_sizes:
# depth 4 pads a 64 px image to a 252 px tile, depth 3 to 156 px), so each level adds much of a
# training step's cost; at depth 3 every output pixel still sees the whole 64 px image. The first
# level is narrower than the paper's for the same reason (bench/bench_segment.py trains this size).
# BatchNorm follows every convolution unless --no-batchnorm (the paper's net): training from scratch
# in a few epochs needs it.
UNET_BASE = 16  # channels of the first level; each level below doubles them (the paper's 64)
UNET_DEPTH = 3  # 2x2 max-pools on the contracting path (the paper's 4)
# same, not the paper's valid: at 64 px valid convolutions pad each image to a 156 px tile, and at one
# wall-clock budget same had the better val mIoU (bench/results/segment_choose.json);
# --padding valid gives the paper's overlap-tile net.
UNET_PADDING = "same"
UNET_DROPOUT = 0.0  # at the bottleneck, where the paper puts its drop-out


@dataclass(frozen=True)
class UNetSizes:
    """The size arithmetic of a U-Net with ``depth`` downsamplings and ``padding`` convolutions.

    Valid: every level's two 3x3 convolutions trim 4 px, every max-pool halves, every up-convolution
    doubles. A tile of side t gives an output of side ``t - 2 * margin``, for the tiles whose output
    plus ``offset`` is a multiple of ``step`` (every max-pool then sees an even size, so the skip
    crops are exact). Same: the output is the tile, for tiles that are multiples of ``step``.
    """

    depth: int
    padding: str

    @property
    def step(self) -> int:
        return 2 ** self.depth

    @property
    def margin(self) -> int:
        """Pixels the valid net loses on each side: what cvkit mirror-pads each side by."""
        return 6 * self.step - 4 if self.padding == "valid" else 0

    @property
    def offset(self) -> int:
        """What the expanding path trims: 4 px per level, doubled by each up-convolution after it."""
        return 4 * (self.step - 1) if self.padding == "valid" else 0

    @property
    def min_size(self) -> int:
        """The smallest image side: ``depth`` halvings leave at least one pixel of the image."""
        return self.step

    def valid_output(self, tile: int) -> int | None:
        """The output side of the network itself (no padding) for an input side ``tile``; None when it
        does not take that side (a max-pool would see an odd size, or nothing would be left)."""
        out = tile - 2 * self.margin
        return out if out >= 1 and (out + self.offset) % self.step == 0 else None

    def tile(self, side: int) -> tuple[int, int]:
        """(tile, output): the smallest input side the network takes whose output covers ``side``
        pixels, and that output's side; cvkit crops the output back to ``side``."""
        return self.pad_module().tile(side)

    def pad_module(self) -> MirrorPad:
        return MirrorPad(self.margin, self.step, self.offset, self.min_size)

    def note(self, size: tuple[int, int]) -> str:
        """What ``cvkit inspect`` says about the border at images of ``size`` (h, w)."""
        (th, oh), (tw, ow) = self.tile(size[0]), self.tile(size[1])
        h, w = size
        if self.padding == "same":
            if (th, tw) == (h, w):
                return f"same convolutions: a {h}x{w} image goes through as it is (each side a multiple of {self.step})"
            return (f"same convolutions: cvkit mirror-pads the bottom and right of a {h}x{w} image to {th}x{tw} (a "
                    f"multiple of {self.step} for {self.depth} max-pools) and crops the output back to {h}x{w}")
        extra = (f", and the bottom and right by {oh - h} and {ow - w} px more so every max-pool sees an even size"
                 if (oh, ow) != (h, w) else "")
        return (f"valid convolutions: a {th}x{tw} tile gives a {oh}x{ow} output; cvkit mirror-pads each side by "
                f"{self.margin} px (overlap-tile){extra}, so the output is the input's size")


def unet_sizes(depth: int, padding: str) -> UNetSizes:
    """The size arithmetic of ``--arch unet --depth depth --padding padding``:
    ``unet_sizes(4, "valid").valid_output(572) == 388``, the paper's tile."""
    if padding not in PADDINGS:
        raise OptionError(f"--padding {padding!r} is not one of {', '.join(PADDINGS)}")
    if int(depth) != depth or depth < 1:
        raise OptionError(f"--depth {depth} must be a whole number of downsamplings, 1 or more")
    return UNetSizes(int(depth), padding)


def double_conv(cin: int, cout: int, activation: str, batchnorm: bool, padding: int) -> nn.Sequential:
    """Two 3x3 convolutions, each followed by (BatchNorm and) the activation."""
    return nn.Sequential(conv_block(cin, cout, 3, activation, batchnorm, padding),
                         conv_block(cout, cout, 3, activation, batchnorm, padding))


class UpLevel(nn.Module):
    """One level of the expanding path: a 2x2 up-convolution halving the width, the contracting
    level's features (centre-cropped to it when the convolutions are valid) concatenated, two 3x3 convolutions."""

    def __init__(self, cin: int, cout: int, activation: str, batchnorm: bool, padding: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cout, 2, stride=2)
        self.crop = Crop(centred=True) if padding == 0 else None
        self.convs = double_conv(2 * cout, cout, activation, batchnorm, padding)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        if self.crop is not None:
            skip = self.crop(skip, x)
        return self.convs(torch.cat([skip, x], 1))


class UNetBody(nn.Module):
    """Mirror padding, the contracting path (``enc1``, ``pool1``, ...), the bottleneck, the expanding
    path (``dec{depth}`` ... ``dec1``, each the mirror of ``enc`` of the same number) and the crop to
    the input's size: image -> (N, base, H, W) features. Its children are in the order they run, so
    ``--freeze N`` (the last N groups) trains the expanding path's last levels."""

    def __init__(self, in_chans: int, base: int, depth: int, padding: str, activation: str, batchnorm: bool,
                 dropout: float) -> None:
        super().__init__()
        self.sizes = unet_sizes(depth, padding)
        self.depth = depth
        pad = 1 if padding == "same" else 0
        self.pad = self.sizes.pad_module()
        cin = in_chans
        for level in range(1, depth + 1):
            width = base * 2 ** (level - 1)
            self.add_module(f"enc{level}", double_conv(cin, width, activation, batchnorm, pad))
            self.add_module(f"pool{level}", nn.MaxPool2d(2))
            cin = width
        self.bottleneck = nn.Sequential(*double_conv(cin, 2 * cin, activation, batchnorm, pad),
                                        *dropout_layers(dropout))
        for level in range(depth, 0, -1):
            width = base * 2 ** (level - 1)
            self.add_module(f"dec{level}", UpLevel(2 * width, width, activation, batchnorm, pad))
        self.crop = Crop(centred=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.crop(self.tile(self.pad(image)), image)

    def tile(self, x: torch.Tensor) -> torch.Tensor:
        """The network itself on a tile (no padding, no crop): ``sizes.valid_output`` says what it makes."""
        skips = []
        for level in range(1, self.depth + 1):
            x = getattr(self, f"enc{level}")(x)
            skips.append(x)
            x = getattr(self, f"pool{level}")(x)
        x = self.bottleneck(x)
        for level in range(self.depth, 0, -1):
            x = getattr(self, f"dec{level}")(x, skips[level - 1])
        return x

    def inspect_notes(self, size: tuple[int, int]) -> list[str]:
        return [self.sizes.note(size)]


@register_model("unet", head="conv", activation="relu", dropout=UNET_DROPOUT, batchnorm=True, padding=UNET_PADDING,
                base=UNET_BASE, depth=UNET_DEPTH)
def unet(num_outputs: int, in_chans: int, input_size: tuple[int, int], o: Options) -> Segmenter:
    """U-Net: ``--base`` channels at the first level, ``--depth`` levels, ``--padding`` valid (the
    paper's, mirror-padded overlap-tile) or same; BatchNorm after every convolution unless
    ``--no-batchnorm``; ``--dropout`` at the bottleneck."""
    sizes = unet_sizes(o.depth, o.padding)
    if o.base < 1:
        raise OptionError(f"--base {o.base} must be 1 or more channels")
    h, w = input_size
    if min(h, w) < sizes.min_size:
        most = int(math.log2(min(h, w))) if min(h, w) >= 2 else 0
        fix = f"give --depth {most} or less, or larger images" if most >= 1 else "unet needs images of 2x2 px or more"
        raise OptionError(f"--depth {o.depth} halves the image {o.depth} times, and {h}x{w} images have less than "
                          f"one pixel left at the bottleneck; {fix}")
    body = UNetBody(in_chans, o.base, o.depth, o.padding, o.activation, o.batchnorm, o.dropout)
    return Segmenter(body, o.base, num_outputs)
