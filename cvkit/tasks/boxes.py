"""Box geometry shared by the localize task and ``cam --boxes``: one IoU for every localization figure.

Boxes are ``(x0, y0, x1, y1)`` with ``x1``/``y1`` exclusive: in continuous coordinates (pixel column j
spans [j, j + 1)), or normalized to 0..1 across the image. IoU does not change when either axis is
scaled, so it is the same in the cache's pixels, the original image's and normalized coordinates.
"""

from __future__ import annotations

import numpy as np
import torch

IOU_HIT = 0.5  # a box "localizes" the object at IoU >= 0.5 (PASCAL VOC, ImageNet localization)
_EPS = 1e-7  # keeps the box losses' ratios finite for empty boxes


def _area(z: np.ndarray) -> np.ndarray:
    return np.clip(z[:, 2] - z[:, 0], 0, None) * np.clip(z[:, 3] - z[:, 1], 0, None)


def ious(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of paired boxes (N x 4 each, x1/y1 exclusive); 0 when both are empty."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = iw * ih
    union = _area(a) + _area(b) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def visible_share(before: torch.Tensor, after: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The share of each box's area still in the image after augmentation: the clipped box ``after``
    against ``before`` times ``scale`` (how much the transform magnified areas); 1 for an empty box."""
    def area(z: torch.Tensor) -> torch.Tensor:
        return (z[:, 2] - z[:, 0]).clamp(min=0) * (z[:, 3] - z[:, 1]).clamp(min=0)

    full = area(before) * scale
    return torch.where(full > 0, area(after) / full.clamp(min=_EPS), torch.ones_like(full))


# ---------------------------------------------------------------------- torch, for the loss


def corners(cxcywh: torch.Tensor) -> torch.Tensor:
    """(cx, cy, w, h) -> (x0, y0, x1, y1), along the last dimension."""
    cx, cy, w, h = cxcywh.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def centres(box: torch.Tensor) -> torch.Tensor:
    """(x0, y0, x1, y1) -> (cx, cy, w, h), along the last dimension."""
    x0, y0, x1, y1 = box.unbind(-1)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], -1)


def giou_loss(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """1 - generalized IoU (Rezatofighi et al., CVPR 2019) of paired N x 4 corner boxes, per box (0..2):
    unlike 1 - IoU it still has a gradient when the boxes do not overlap."""
    iw = (torch.minimum(pred[:, 2], true[:, 2]) - torch.maximum(pred[:, 0], true[:, 0])).clamp(min=0)
    ih = (torch.minimum(pred[:, 3], true[:, 3]) - torch.maximum(pred[:, 1], true[:, 1])).clamp(min=0)
    inter = iw * ih
    area_p = (pred[:, 2] - pred[:, 0]).clamp(min=0) * (pred[:, 3] - pred[:, 1]).clamp(min=0)
    area_t = (true[:, 2] - true[:, 0]).clamp(min=0) * (true[:, 3] - true[:, 1]).clamp(min=0)
    union = area_p + area_t - inter
    hull = ((torch.maximum(pred[:, 2], true[:, 2]) - torch.minimum(pred[:, 0], true[:, 0]))
            * (torch.maximum(pred[:, 3], true[:, 3]) - torch.minimum(pred[:, 1], true[:, 1])))
    return 1 - inter / (union + _EPS) + (hull - union) / (hull + _EPS)
