"""What cvkit's segmentation nets (unet, fcn) share: mirror padding to a size the net takes, crops back
to the input's size, the per-pixel head, and :class:`Segmenter`, timm's interface for a net whose
output is an (N, K, H, W) map of logits at the input's size.

The padding and the crops are modules, not inline slicing, for two readers: ``cvkit inspect``'s
receptive-field trace follows a module that says where its output sits in its input
(``field_offset``), and the arithmetic is written with the input's shape only, so ONNX export
(TorchScript tracing) records it symbolically and the exported net takes any height and width.
"""

from __future__ import annotations

import torch
from torch import nn

from cvkit.models.layers import Net


def mirror_index(n: int | torch.Tensor, before: int | torch.Tensor, after: int | torch.Tensor,
                 device: torch.device) -> torch.Tensor:
    """Indices into a side of length ``n`` that mirror it (reflect, the edge pixel not repeated)
    ``before`` and ``after`` it, by any amount: the mirror image repeats with period 2(n - 1), which
    one gather does where ``F.pad(mode="reflect")`` needs pad < n. A side of one pixel is repeated."""
    idx = torch.arange(-before, n + after, device=device)
    # The period and the side as tensors: both ONNX exporters then record tensor arithmetic on the
    # image's shape (the torch.export-based one cannot take a remainder by a symbolic integer).
    side = torch.zeros_like(idx[:1]) + n
    period = torch.clamp(2 * (side - 1), min=1)
    folded = torch.remainder(idx, period)
    return torch.where(folded >= side, period - folded, folded)


class MirrorPad(nn.Module):
    """Mirror-pads an image by ``margin`` on every side, plus what the bottom and right need so that
    the net takes the padded size and its output covers the image (:meth:`tile`).

    The net (``margin`` 0 for one that keeps the size) makes an output ``2 * margin`` smaller than its
    input, and only outputs that are a multiple of ``step`` less ``offset``: every max-pool then sees
    an even size. Refuses (ValueError) images with a side under ``min_size``: what
    ``check_input_size`` reads.
    """

    def __init__(self, margin: int, step: int, offset: int, min_size: int) -> None:
        super().__init__()
        self.margin, self.step, self.offset, self.min_size = margin, step, offset, min_size

    def tile(self, n: int | torch.Tensor) -> tuple[int | torch.Tensor, int | torch.Tensor]:
        """(padded side, output side) for an image side of ``n``: the smallest the net takes whose output
        covers ``n`` pixels."""
        out = (n + self.offset + self.step - 1) // self.step * self.step - self.offset
        return out + 2 * self.margin, out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        if not (torch.jit.is_tracing() or torch.compiler.is_compiling()) and min(h, w) < self.min_size:
            raise ValueError(f"images of {h}x{w} are smaller than {self.min_size}x{self.min_size}")
        _, out_h = self.tile(h)
        _, out_w = self.tile(w)
        m = self.margin
        tracing = torch.jit.is_tracing() or torch.compiler.is_compiling()
        if not tracing and m == 0 and out_h == h and out_w == w:
            return x  # a size the net takes as it is: no gather (an exported graph keeps the general path)
        rows = mirror_index(h, m, m + out_h - h, x.device)
        cols = mirror_index(w, m, m + out_w - w, x.device)
        out = x.index_select(2, rows).index_select(3, cols)
        if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            out = out.contiguous(memory_format=torch.channels_last)  # the convolutions' layout, not a reorder each
        return out

    def field_offset(self, in_shape: tuple, out_shape: tuple) -> tuple[float, float]:
        """Where output unit (0, 0) lies in the input, in input units (for inspect's receptive fields)."""
        return -self.margin, -self.margin

    def extra_repr(self) -> str:
        return f"margin={self.margin}, step={self.step}, offset={self.offset}, min_size={self.min_size}"


class Crop(nn.Module):
    """``x`` cropped to the height and width of ``like``: centred (the skip connections of a valid
    U-Net), or from the top-left corner (the output of a mirror-padded net, back to the input's size)."""

    def __init__(self, centred: bool) -> None:
        super().__init__()
        self.centred = centred

    def forward(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        h, w = like.shape[-2], like.shape[-1]
        if not self.centred:
            return x[:, :, :h, :w]
        top = (x.shape[-2] - h) // 2
        left = (x.shape[-1] - w) // 2
        return x[:, :, top:top + h, left:left + w]

    def field_offset(self, in_shape: tuple, out_shape: tuple) -> tuple[float, float]:
        if not self.centred:
            return 0, 0
        return (in_shape[-2] - out_shape[-2]) // 2, (in_shape[-1] - out_shape[-1]) // 2

    def extra_repr(self) -> str:
        return "centred" if self.centred else "top-left"


class PixelHead(nn.Module):
    """A 1x1 convolution from the decoder's features to one logit per class at every pixel; with
    ``pre_logits`` the features averaged over the image instead (an embedding for ``retrieve``)."""

    def __init__(self, num_features: int, num_outputs: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(num_features, num_outputs, 1)

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return x.mean((2, 3)) if pre_logits else self.conv(x)


class Segmenter(Net):
    """timm's interface for a net that labels every pixel: ``forward_features`` gives the last decoder
    map (N, F, H, W) at the input's size, ``forward_head`` the (N, K, H, W) logits (a 1x1 conv),
    ``get_classifier`` that conv. ``dense`` tells it from a classifier; ``weights_prefix`` is where
    the weights of a classifier's feature extractor go (``--weights``, see ``load_weights``)."""

    dense = True

    def __init__(self, features: nn.Module, num_features: int, num_classes: int,
                 weights_prefix: str | None = None) -> None:
        super().__init__(features, PixelHead(num_features, num_classes), num_features, num_classes)
        self.weights_prefix = weights_prefix

    def inspect_notes(self, size: tuple[int, int]) -> list[str]:
        """Lines ``cvkit inspect`` prints about this net at images of ``size`` (none by default)."""
        notes = getattr(self.features, "inspect_notes", None)
        return notes(size) if notes is not None else []
