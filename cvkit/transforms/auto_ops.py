"""The ops of the automatic policies (RandAugment, TrivialAugment, AutoAugment), batched with a
magnitude per image, on float N x C x H x W batches in [0, 1].

Each op follows torchvision's functional op on uint8 images (``transforms/_functional_tensor.py``):
the same affine matrices (nearest neighbour, zeros outside), the same blends, the same histogram
equalization; values are kept as floats between ops instead of truncated to uint8 after each, so
an op differs from torchvision's by at most a grey level or so. 1-channel images work: Color
(saturation) leaves them alone, as torchvision and PIL do.

:func:`apply_ops` runs one op per image: the images are grouped by op, and each op runs once on its
group (one ``grid_sample`` for all the geometric ones), so the Python loop is over ops, not images.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

# torchvision's rgb_to_grayscale weights (Color and Contrast blend with this gray).
GRAY = (0.2989, 0.587, 0.114)

Op = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _per_image(m: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return m.to(x.device, x.dtype).view(-1, 1, 1, 1)


def _gray(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    return (x * torch.tensor(GRAY, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)).sum(1, keepdim=True)


def _blend(a: torch.Tensor, b: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``factor * a + (1 - factor) * b``, clamped to [0, 1]; ``factor`` per image."""
    return torch.lerp(b.expand_as(a), a, _per_image(factor, a)).clamp_(0.0, 1.0)


def brightness(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    return (x * _per_image(1 + m, x)).clamp_(0.0, 1.0)


def color(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    return x if x.shape[1] == 1 else _blend(x, _gray(x), 1 + m)


def contrast(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    return _blend(x, _gray(x).mean(dim=(1, 2, 3), keepdim=True), 1 + m)


def sharpness(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Blend with the image smoothed by PIL's SMOOTH filter ([[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13,
    borders kept), as torchvision does."""
    h, w = x.shape[2:]
    if h <= 2 or w <= 2:
        return x
    # The 3 x 3 sum plus 4 x the centre, by shifted slices: measured several times faster on the CPU
    # than a one-channel conv2d over the N*C planes.
    rows = x[..., :-2, :] + x[..., 1:-1, :] + x[..., 2:, :]
    box = rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:]
    smooth = x.clone()
    smooth[..., 1:-1, 1:-1] = box.add_(x[..., 1:-1, 1:-1], alpha=4).div_(13)
    return _blend(x, smooth, 1 + m)


def posterize(x: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """Keep the top ``bits`` bits of each 8-bit value."""
    step = _per_image(2.0 ** (8 - bits.round()), x)
    return torch.floor(torch.round(x * 255) / step) * step / 255


def solarize(x: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """Invert the values at or above ``threshold`` (on the 0-255 scale)."""
    # The margin keeps k/255 >= k/255 true through float rounding; thresholds between levels are unaffected.
    return torch.where(x >= _per_image(threshold / 255, x) - 1e-6, 1 - x, x)


def autocontrast(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Stretch each channel from its darkest to its brightest value to 0-1 (flat channels unchanged)."""
    lo, hi = x.amin(dim=(2, 3), keepdim=True), x.amax(dim=(2, 3), keepdim=True)
    flat = hi <= lo
    scale = torch.where(flat, torch.ones_like(hi), 1 / (hi - lo).clamp_(min=1e-12))
    return ((x - torch.where(flat, torch.zeros_like(lo), lo)) * scale).clamp_(0.0, 1.0)


def equalize(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Histogram equalization of each image's channels, all at once: torchvision's lookup table (PIL's),
    from a 256-bin histogram per plane built with one ``scatter_add``."""
    n, c, h, w = x.shape
    levels = torch.round(x * 255).clamp_(0, 255).long().reshape(n * c, h * w)
    hist = torch.zeros(n * c, 256, dtype=torch.long, device=x.device).scatter_add_(1, levels, torch.ones_like(levels))
    top = levels.amax(1, keepdim=True)  # the brightest level present: its count is left out of the step
    step = (h * w - hist.gather(1, top)) // 255
    lut = (torch.cumsum(hist, 1) + step // 2) // step.clamp(min=1)
    lut = F.pad(lut, (1, 0))[:, :-1].clamp_(0, 255)
    out = (lut.gather(1, levels).to(x.dtype) / 255).view(n, c, h, w)
    return torch.where((step == 0).view(n, c, 1, 1), x, out)  # too few levels to spread: unchanged


def invert(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    return 1 - x


# Output-to-source matrices in pixel coordinates centred on the image, as torchvision's
# _get_inverse_affine_matrix builds them for each op (shears about the top-left corner, as
# _apply_op asks with center=[0, 0]; translations truncated to whole pixels).
def _shear_x(m: torch.Tensor, h: int, w: int) -> torch.Tensor:
    a = _eye(len(m))
    a[:, 0, 1], a[:, 0, 2] = m, m * h / 2
    return a


def _shear_y(m: torch.Tensor, h: int, w: int) -> torch.Tensor:
    a = _eye(len(m))
    a[:, 1, 0], a[:, 1, 2] = m, m * w / 2
    return a


def _translate_x(m: torch.Tensor, h: int, w: int) -> torch.Tensor:
    a = _eye(len(m))
    a[:, 0, 2] = -torch.trunc(m)
    return a


def _translate_y(m: torch.Tensor, h: int, w: int) -> torch.Tensor:
    a = _eye(len(m))
    a[:, 1, 2] = -torch.trunc(m)
    return a


def _rotate(m: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Counter-clockwise by ``m`` degrees about the centre."""
    a, r = _eye(len(m)), torch.deg2rad(m)
    a[:, 0, 0], a[:, 0, 1], a[:, 1, 0], a[:, 1, 1] = r.cos(), -r.sin(), r.sin(), r.cos()
    return a


def _eye(n: int) -> torch.Tensor:
    return torch.eye(3, dtype=torch.float64).repeat(n, 1, 1)


MATRICES: dict[str, Callable[[torch.Tensor, int, int], torch.Tensor]] = {
    "ShearX": _shear_x, "ShearY": _shear_y, "TranslateX": _translate_x, "TranslateY": _translate_y,
    "Rotate": _rotate}
PIXEL_OPS: dict[str, Op] = {
    "Brightness": brightness, "Color": color, "Contrast": contrast, "Sharpness": sharpness,
    "Posterize": posterize, "Solarize": solarize, "AutoContrast": autocontrast, "Equalize": equalize,
    "Invert": invert}
OPS = ("Identity", *MATRICES, *PIXEL_OPS)  # every op's name; an op is its index here


def warp(x: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """Resample ``x`` by per-image pixel-coordinate matrices (N x 3 x 3, output to source), nearest
    neighbour, zeros outside: torchvision's tensor ``affine`` with its default interpolation.

    The grid is computed as torchvision's ``_gen_affine_grid`` computes it (pixel centres times the
    matrix scaled to -1..1, in the batch's precision), so a source point halfway between two pixels,
    common under shears, rounds to the same one."""
    n, _, h, w = x.shape
    theta = matrices[:, :2].to(x.device, x.dtype).transpose(1, 2) / torch.tensor([w / 2, h / 2], device=x.device,
                                                                                 dtype=x.dtype)
    base = torch.empty(1, h, w, 3, device=x.device, dtype=x.dtype)
    base[..., 0] = torch.linspace(-w * 0.5 + 0.5, w * 0.5 - 0.5, w, device=x.device, dtype=x.dtype)
    base[..., 1] = torch.linspace(-h * 0.5 + 0.5, h * 0.5 - 0.5, h, device=x.device, dtype=x.dtype).view(h, 1)
    base[..., 2] = 1
    grid = base.view(1, h * w, 3).expand(n, -1, -1).bmm(theta).view(n, h, w, 2)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def apply_ops(x: torch.Tensor, ops: torch.Tensor, magnitudes: torch.Tensor) -> torch.Tensor:
    """Image ``i`` through op ``OPS[ops[i]]`` at ``magnitudes[i]`` (signed), all images in one pass per op.

    ``ops`` (long) and ``magnitudes`` (float64) are CPU tensors of length N: the groups are known on the
    host, so a GPU batch is indexed without waiting for the device.
    """
    _, _, h, w = x.shape
    out: torch.Tensor | None = None
    geometric = torch.zeros(len(ops), dtype=torch.bool)
    for name in MATRICES:
        geometric |= ops == OPS.index(name)
    groups = [(geometric, None)] + [(ops == OPS.index(name), op) for name, op in PIXEL_OPS.items()]
    for chosen, op in groups:
        rows = chosen.nonzero().flatten()
        if len(rows) == 0:
            continue
        out = x.clone() if out is None else out
        index, mags = rows.to(x.device), magnitudes[rows]
        if op is None:
            matrices = _eye(len(rows))
            for name, build in MATRICES.items():
                which = ops[rows] == OPS.index(name)
                if bool(which.any()):
                    matrices[which] = build(mags[which], h, w)
            out[index] = warp(x[index], matrices)
        else:
            out[index] = op(x[index], mags)
    return x if out is None else out
