"""Batched geometric augmentation: flips, whole-pixel shifts, and one sampling grid for the rest.

Rotation, translation, zoom, random resized crop, perspective and elastic deformation become one
grid of source coordinates per image, and the batch is resampled once with ``grid_sample``
(bilinear, zeros outside): a stack of transforms interpolates, and blurs, only once. Translation
alone shifts by whole pixels (nearest source pixel: no interpolation). Coordinates are normalized:
-1..1 across the image, pixel centres as in ``align_corners=False``.

Every random number comes from the CPU generator ``gen``, one tensor per parameter for the whole
batch, so a seed gives the same batch on any device; small per-image matrices are composed on the
CPU in float64 and only the grid is built on the batch's device.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from cvkit.transforms.draws import log_uniform, uniform
from cvkit.transforms.policy import AugmentPolicy

# Random resized crop: aspect ratios (width / height) drawn log-uniformly in this range, as in
# torchvision's RandomResizedCrop and Inception training.
CROP_RATIO = (3 / 4, 4 / 3)
# Elastic deformation: uniform noise drawn on a grid of at most this many cells a side, smoothed
# with a Gaussian of sigma = size / ELASTIC_SIGMA_DIV, then upsampled to the image: a few hundred
# numbers per image instead of a full-size field, and the same smoothness at every image size.
ELASTIC_CELLS = 16
ELASTIC_SIGMA_DIV = 8


def needs_grid(policy: AugmentPolicy) -> bool:
    """Whether any transform that resamples is on (flips and translation alone do not resample)."""
    return bool(policy.rotate or policy.scale != [1.0, 1.0] or policy.crop or policy.perspective or policy.elastic)


def geometric(x: torch.Tensor, policy: AugmentPolicy, gen: torch.Generator,
              track: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Flip, shift, rotate, zoom, crop, warp: the geometric part of ``policy`` on a float N x C x H x W batch.

    A resampled batch comes back NCHW-contiguous whatever the input's memory format (``augment`` restores it).
    ``track``: also return each image's N x 3 x 3 float64 matrix from output to source coordinates
    (normalized, see above), so targets can follow the image (``transforms/points.py``); elastic
    deformation has no matrix and is refused by the tasks whose targets move.
    """
    out, m, _ = _geometric(x, policy, gen)
    return (out, m) if track else out


def geometric_planes(x: torch.Tensor, planes: torch.Tensor, fill: list[float], policy: AugmentPolicy,
                     gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`geometric` on the images, and the same flips and sampling grid (elastic field included) on
    per-pixel targets ``planes`` (N x P x H x W, e.g. a mask of class indices and a weight map), read
    by nearest neighbour so a class index is never blended; where a target pixel's source lies outside
    the image it becomes ``fill`` (one value per plane: 255, "ignore", for a mask). The same draws as
    :func:`geometric`: the images come out as ``geometric`` makes them with this generator state."""
    out, _, moved = _geometric(x, policy, gen, planes, torch.tensor(fill, dtype=torch.float32))
    return out, moved


def _geometric(x: torch.Tensor, policy: AugmentPolicy, gen: torch.Generator, planes: torch.Tensor | None = None,
               fill: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    n, _, h, w = x.shape
    if not needs_grid(policy) and not policy.translate:
        m = _matrices(n)
        if policy.hflip:
            x, m[:, 0, 0] = _flip_tracked(x, policy.hflip, 3, gen)
        if policy.vflip:
            x, m[:, 1, 1] = _flip_tracked(x, policy.vflip, 2, gen)
        if planes is not None:  # the signs the flips left: mirror the same images' targets
            planes = _flip_signs(_flip_signs(planes, m[:, 0, 0], 3), m[:, 1, 1], 2)
        return x, m, planes
    # Image order: flip, crop, rotate / zoom / translate, perspective; the matrices map output
    # coordinates back to the source, so they compose right to left.
    m = _flips(n, policy, gen)
    if not needs_grid(policy):
        # Translation alone moves whole pixels: the nearest source pixel is the exact one, nothing is
        # interpolated (measured 1.5-2.5x faster than gathering the shifted pixels by index).
        m = m @ _shift(n, round(policy.translate * h), round(policy.translate * w), h, w, gen)
        grid = _grid(m, n, h, w, x.device, x.dtype, projective=False)
        out = F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)
        return out, m, _warp_planes(planes, grid, fill)
    m = m @ _crop(n, policy.crop, h, w, gen) @ _affine(n, policy, h, w, gen)
    if policy.perspective:
        m = m @ _perspective(n, policy.perspective, gen)
    grid = _grid(m, n, h, w, x.device, x.dtype, projective=bool(policy.perspective))
    if policy.elastic:
        # Added to the source coordinates: a smooth random field displaces every source point.
        grid += _elastic_field(n, policy.elastic, h, w, gen, x.device, x.dtype)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out, m, _warp_planes(planes, grid, fill)


def _flip_signs(planes: torch.Tensor, signs: torch.Tensor, dim: int) -> torch.Tensor:
    """``planes`` flipped along ``dim`` where ``signs`` is -1."""
    chosen = (signs < 0).to(planes.device)
    if not bool(chosen.any()):
        return planes
    return torch.where(chosen.view(-1, 1, 1, 1), planes.flip(dim), planes)


def _warp_planes(planes: torch.Tensor | None, grid: torch.Tensor, fill: torch.Tensor | None) -> torch.Tensor | None:
    """Target planes resampled on ``grid`` by nearest neighbour; ``fill`` where the source is outside."""
    if planes is None:
        return None
    # Shifted by one so that grid_sample's zero padding marks the pixels whose source lies outside.
    moved = F.grid_sample(planes.to(grid.dtype) + 1, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    fill = fill.to(grid.device, grid.dtype).view(1, -1, 1, 1)
    return torch.where(moved > 0, moved - 1, fill).round_().to(planes.dtype)


def flip(x: torch.Tensor, p: float, dim: int, gen: torch.Generator) -> torch.Tensor:
    """Flip each image along ``dim`` with probability ``p`` (exact, no resampling)."""
    n = x.shape[0]
    chosen = torch.rand(n, generator=gen) < p
    if bool(chosen.all()):  # p = 1 (or a small batch): one pass instead of flip + select
        return x.flip(dim)
    return torch.where(chosen.to(x.device).view(n, 1, 1, 1), x.flip(dim), x)


def _flip_tracked(x: torch.Tensor, p: float, dim: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`flip`, with the sign each image's coordinate along ``dim`` got (-1: flipped), from the same draws."""
    state = gen.get_state()
    chosen = torch.rand(x.shape[0], generator=gen) < p
    gen.set_state(state)  # flip draws the same numbers again
    return flip(x, p, dim, gen), torch.where(chosen, -1.0, 1.0).double()



def _matrices(n: int) -> torch.Tensor:
    return torch.eye(3, dtype=torch.float64).repeat(n, 1, 1)


def _flips(n: int, policy: AugmentPolicy, gen: torch.Generator) -> torch.Tensor:
    """Flips as a sign on a coordinate: free once the batch is resampled anyway."""
    m = _matrices(n)
    if policy.hflip:
        m[:, 0, 0] = torch.where(torch.rand(n, generator=gen) < policy.hflip, -1.0, 1.0)
    if policy.vflip:
        m[:, 1, 1] = torch.where(torch.rand(n, generator=gen) < policy.vflip, -1.0, 1.0)
    return m


def _shift(n: int, max_dy: int, max_dx: int, h: int, w: int, gen: torch.Generator) -> torch.Tensor:
    """A shift by whole pixels, up to ``max_dy`` rows and ``max_dx`` columns either way."""
    m = _matrices(n)
    m[:, 1, 2] = (torch.randint(0, 2 * max_dy + 1, (n,), generator=gen) - max_dy) * (2 / h)
    m[:, 0, 2] = (torch.randint(0, 2 * max_dx + 1, (n,), generator=gen) - max_dx) * (2 / w)
    return m


def _crop(n: int, smallest: float, h: int, w: int, gen: torch.Generator) -> torch.Tensor:
    """Random resized crop: a box of area fraction in [smallest, 1] and aspect ratio in CROP_RATIO,
    stretched over the whole output. Boxes too wide or tall for the image are clipped to it (torchvision
    draws again instead, and falls back to a centre crop after ten tries)."""
    m = _matrices(n)
    if not smallest:
        return m
    area = uniform(n, smallest, 1.0, gen)
    ratio = log_uniform(n, *CROP_RATIO, gen)
    fw = torch.sqrt(area * ratio * h / w).clamp_(max=1.0)  # box width as a fraction of the image width
    fh = torch.sqrt(area / ratio * w / h).clamp_(max=1.0)
    m[:, 0, 0], m[:, 1, 1] = fw, fh
    m[:, 0, 2], m[:, 1, 2] = (1 - fw) * uniform(n, -1, 1, gen), (1 - fh) * uniform(n, -1, 1, gen)
    return m


def _affine(n: int, policy: AugmentPolicy, h: int, w: int, gen: torch.Generator) -> torch.Tensor:
    """Rotation about the centre, zoom and translation (a zoom above 1 magnifies)."""
    m = _matrices(n)
    angle = uniform(n, -math.radians(policy.rotate), math.radians(policy.rotate), gen) if policy.rotate else 0.0
    lo, hi = policy.scale
    zoom = uniform(n, lo, hi, gen) if (lo, hi) != (1.0, 1.0) else 1.0
    cos, sin = torch.cos(torch.as_tensor(angle)) / zoom, torch.sin(torch.as_tensor(angle)) / zoom
    # Normalized x spans the width and y the height: a rotation by pixels needs the aspect ratio.
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = cos, -sin * h / w, sin * w / h, cos
    if policy.translate:
        m[:, 0, 2] = uniform(n, -2 * policy.translate, 2 * policy.translate, gen)
        m[:, 1, 2] = uniform(n, -2 * policy.translate, 2 * policy.translate, gen)
    return m


# The output corners, and the rows of the 8 x 8 system a homography through four points solves.
_CORNERS = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]], dtype=torch.float64)


def _perspective(n: int, fraction: float, gen: torch.Generator) -> torch.Tensor:
    """A homography per image taking the output's corners to source corners each moved up to
    ``fraction`` of the size along each axis (either way). Up to 0.25 the source quadrilateral stays
    convex; beyond, a rare draw folds it and the grid's guard below keeps the result finite."""
    moved = _CORNERS + torch.rand(n, 4, 2, generator=gen, dtype=torch.float64).mul_(4 * fraction).sub_(2 * fraction)
    x, y = _CORNERS[:, 0].expand(n, 4), _CORNERS[:, 1].expand(n, 4)
    u, v = moved[..., 0], moved[..., 1]
    one, zero = torch.ones_like(u), torch.zeros_like(u)
    rows_u = torch.stack([x, y, one, zero, zero, zero, -u * x, -u * y], -1)
    rows_v = torch.stack([zero, zero, zero, x, y, one, -v * x, -v * y], -1)
    coef = torch.linalg.solve(torch.cat([rows_u, rows_v], 1), torch.cat([u, v], 1))
    return torch.cat([coef, torch.ones(n, 1, dtype=torch.float64)], 1).view(n, 3, 3)


def _grid(m: torch.Tensor, n: int, h: int, w: int, device: torch.device, dtype: torch.dtype,
          projective: bool) -> torch.Tensor:
    """Source coordinates m @ (x, y, 1) of every output pixel, N x H x W x 2.

    Built as outer sums of a row term and a column term: measured 5-10x faster than
    ``affine_grid`` (which multiplies a full N x H*W x 3 base grid by the matrices).
    """
    m = m.to(device, dtype)
    xs = torch.arange(w, device=device, dtype=dtype).mul_(2 / w).add_(1 / w - 1)
    ys = torch.arange(h, device=device, dtype=dtype).mul_(2 / h).add_(1 / h - 1)

    def plane(row: int, out: torch.Tensor | None = None) -> torch.Tensor:
        a, b, c = (m[:, row, k].view(n, 1, 1) for k in range(3))
        return torch.addcmul(torch.addcmul(c, b, ys.view(1, h, 1)), a, xs.view(1, 1, w), out=out)

    grid = torch.empty(n, h, w, 2, device=device, dtype=dtype)
    if not projective:
        plane(0, grid[..., 0])
        plane(1, grid[..., 1])
        return grid
    # The homography's denominator is positive over the output while the source stays convex;
    # the floor only keeps a folded draw finite (its far points fall outside and read zeros).
    denominator = plane(2).clamp_(min=1e-3)
    torch.div(plane(0), denominator, out=grid[..., 0])
    torch.div(plane(1), denominator, out=grid[..., 1])
    return grid


def _gaussian(sigma: float, radius: int) -> torch.Tensor:
    k = torch.exp(-torch.arange(-radius, radius + 1, dtype=torch.float32) ** 2 / (2 * sigma**2))
    return k / k.sum()


def _elastic_field(n: int, fraction: float, h: int, w: int, gen: torch.Generator, device: torch.device,
                   dtype: torch.dtype) -> torch.Tensor:
    """A smooth random displacement of the source coordinates, N x H x W x 2: uniform noise on a
    coarse grid, Gaussian-smoothed (sigma 1/8 of the size), scaled so each image's largest
    displacement is its own draw up to ``fraction`` of the size, then upsampled bilinearly."""
    gh, gw = min(h, ELASTIC_CELLS), min(w, ELASTIC_CELLS)
    noise = torch.rand(n, 2, gh, gw, generator=gen).mul_(2).sub_(1)
    strength = uniform(n, 0.0, 2 * fraction, gen).float()  # x2: normalized units span the image twice
    noise = noise.to(device).view(n * 2, 1, gh, gw)
    for dim, cells in ((2, gh), (3, gw)):  # separable smoothing, reflected at the borders
        radius = min(math.ceil(3 * cells / ELASTIC_SIGMA_DIV), cells - 1)
        kernel = _gaussian(cells / ELASTIC_SIGMA_DIV, radius).to(device)
        pad = (0, 0, radius, radius) if dim == 2 else (radius, radius, 0, 0)
        shape = (1, 1, -1, 1) if dim == 2 else (1, 1, 1, -1)
        noise = F.conv2d(F.pad(noise, pad, mode="reflect"), kernel.view(shape))
    noise = noise.view(n, 2, gh, gw)
    peak = noise.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_(min=1e-12)
    noise = noise * (strength.to(device).view(n, 1, 1, 1) / peak)
    field = F.interpolate(noise, size=(h, w), mode="bilinear", align_corners=False)
    return field.permute(0, 2, 3, 1).to(dtype)
