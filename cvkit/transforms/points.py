"""Targets that follow geometric augmentation: points and boxes moved as the image moved.

``geometric(..., track=True)`` gives each image's matrix from output to source coordinates
(normalized: -1..1 across the image, see ``geometric.py``); a point of the source lands where the
inverse matrix takes it. Points are in pixels (continuous coordinates: pixel column j spans
[j, j + 1), so x = 0 is the left edge, x = W the right one), N x P x 2 as (x, y).
"""

from __future__ import annotations

import torch


def move_points(points: torch.Tensor, matrices: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Where ``points`` (N x P x 2 pixels, x then y) of images of ``size`` (height, width) went."""
    h, w = size
    inverse = torch.linalg.inv(matrices).to(points.device)
    scale = torch.tensor([2.0 / w, 2.0 / h], dtype=torch.float64, device=points.device)
    p = points.double() * scale - 1.0
    homogeneous = torch.cat([p, torch.ones_like(p[..., :1])], -1)  # N x P x 3
    moved = homogeneous @ inverse.transpose(1, 2)
    moved = moved[..., :2] / moved[..., 2:].clamp(min=1e-9)  # a homography's divide (1 for affine matrices)
    return ((moved + 1.0) / scale).to(points.dtype)


def move_boxes(boxes: torch.Tensor, matrices: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Where boxes (N x 4 pixels: x0, y0, x1, y1) went: the box around the four moved corners, clipped
    to the image. Exact for flips, shifts, zooms and crops (they keep boxes axis-aligned)."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    corners = torch.stack([torch.stack([x0, y0], -1), torch.stack([x1, y0], -1),
                           torch.stack([x0, y1], -1), torch.stack([x1, y1], -1)], 1)
    moved = move_points(corners, matrices, size)
    h, w = size
    lo, hi = moved.amin(1), moved.amax(1)
    return torch.stack([lo[:, 0].clamp(0, w), lo[:, 1].clamp(0, h), hi[:, 0].clamp(0, w), hi[:, 1].clamp(0, h)], -1)


def mirrored(matrices: torch.Tensor) -> torch.Tensor:
    """Which images were mirrored (an odd number of flips): their left and right keypoints trade places."""
    return torch.linalg.det(matrices[:, :2, :2]) < 0
