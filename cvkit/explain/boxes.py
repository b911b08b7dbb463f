"""Boxes and points from class activation maps, and how well they localize the object.

Weakly supervised localization (Zhou et al., "Learning Deep Features for Discriminative
Localization", CVPR 2016): keep the pixels of a map at or above a fraction of its maximum, take the
largest connected blob, and its bounding box is the guess of where the object is. Boxes are
``(x0, y0, x1, y1)`` in pixels with ``x1``/``y1`` exclusive, as in ``cams.csv`` and the true-box CSV.

Maps are computed at the network's input size; :func:`box_to_original` carries a box back through
the resize that :mod:`cvkit.files.images` applied, into the original image's pixels.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from cvkit.errors import OptionError
from cvkit.files.images import Resize
from cvkit.tasks.boxes import IOU_HIT, ious

Box = tuple[int, int, int, int]
# 8-connectivity inside each map and none across maps, so a whole batch is labelled in one call.
_EIGHT_WITHIN_EACH_MAP = np.zeros((3, 3, 3), dtype=bool)
_EIGHT_WITHIN_EACH_MAP[1] = True
# Float slack before floor/ceil, so that 49.99999999 (a product of ratios) still counts as 50.
_EPS = 1e-6


def check_threshold(threshold: float) -> float:
    """``threshold`` as a float, or OptionError naming ``--box-threshold`` unless 0 < threshold < 1."""
    if not 0 < threshold < 1:  # also refuses NaN
        raise OptionError(f"--box-threshold {threshold} must lie between 0 and 1 (a fraction of the map's maximum)")
    return float(threshold)


def boxes_from_maps(maps: np.ndarray, threshold: float = 0.2) -> np.ndarray:
    """One box per map of ``maps`` (N x H x W, values in [0, 1]) as an N x 4 int64 array.

    Each box bounds the largest 8-connected component of the pixels at or above ``threshold`` times
    that map's maximum (on equal areas, the component met first in raster order). A map whose
    maximum is not above 0 (all zero, as :mod:`cvkit.explain.methods` returns for a constant map)
    points nowhere, so its box is the whole image: the guess that claims no localization, rather
    than an empty box that no IoU could score. NaN counts as 0.
    """
    threshold = check_threshold(threshold)
    maps = np.nan_to_num(np.asarray(maps, dtype=np.float64), nan=0.0)
    if maps.ndim != 3:
        raise ValueError(f"maps must be N x H x W, not {maps.shape}")
    n, h, w = maps.shape
    boxes = np.tile(np.array([0, 0, w, h], dtype=np.int64), (n, 1))
    if n == 0:
        return boxes
    top = maps.reshape(n, -1).max(axis=1)
    mask = (maps >= (threshold * top)[:, None, None]) & (top > 0)[:, None, None]
    labels, count = ndimage.label(mask, structure=_EIGHT_WITHIN_EACH_MAP)
    if count == 0:
        return boxes
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    slices = ndimage.find_objects(labels)
    owner = np.array([s[0].start for s in slices])  # the map each component lies in
    # Per map, the biggest component; ndimage numbers components in raster order, so a stable sort
    # by (map, -size) puts the first of equal-sized ones first.
    order = np.lexsort((-sizes, owner))
    first = order[np.r_[True, owner[order][1:] != owner[order][:-1]]]
    for k in first:
        _, ys, xs = slices[k]
        boxes[owner[k]] = (xs.start, ys.start, xs.stop, ys.stop)
    return boxes


def box_from_map(m: np.ndarray, threshold: float = 0.2) -> Box:
    """The box of one H x W map in [0, 1] (see :func:`boxes_from_maps`), in the map's pixels."""
    m = np.asarray(m)
    if m.ndim != 2:
        raise ValueError(f"a map must be H x W, not {m.shape}")
    x0, y0, x1, y1 = boxes_from_maps(m[None], threshold)[0]
    return int(x0), int(y0), int(x1), int(y1)


def _round_box(x0: float, y0: float, x1: float, y1: float, size: tuple[int, int]) -> Box:
    """Real-valued edges to the smallest pixel box that covers them, inside an image of ``size`` (h, w)."""
    h, w = size
    ix0 = min(max(math.floor(x0 + _EPS), 0), w - 1)
    iy0 = min(max(math.floor(y0 + _EPS), 0), h - 1)
    ix1 = max(min(math.ceil(x1 - _EPS), w), ix0 + 1)
    iy1 = max(min(math.ceil(y1 - _EPS), h), iy0 + 1)
    return ix0, iy0, ix1, iy1


def scale_box(box: Box, from_size: tuple[int, int], to_size: tuple[int, int]) -> Box:
    """``box`` in an image of ``from_size`` (h, w) stretched to ``to_size`` (h, w): the pixels it
    covers there (edges rounded outwards, so a one-pixel box stays at least one pixel)."""
    (fh, fw), (th, tw) = from_size, to_size
    sx, sy = tw / fw, th / fh
    x0, y0, x1, y1 = box
    return _round_box(x0 * sx, y0 * sy, x1 * sx, y1 * sy, (th, tw))


def box_to_original(box: Box, input_size: tuple[int, int], original_size: tuple[int, int],
                    resize_mode: str = "crop") -> Box:
    """``box`` in the network's input (``input_size`` h, w) as pixels of the original image
    (``original_size`` h, w, as :func:`cvkit.files.images.image_size` reads it).

    Inverts :func:`cvkit.files.images.decode_image`'s resize exactly (its
    :meth:`~cvkit.files.images.Resize.point_map`): ``squash`` stretches each
    side; ``crop`` (``ImageOps.fit``) takes the largest centred window of the input's aspect ratio
    (a real-valued window, as Pillow does) and scales it to the input size, so a box is scaled by the
    window's ratio and shifted by the window's offset. A box in the cropped-off margin cannot occur.
    JPEGs shrunk while decoding (draft mode) differ from this by their own rounding, within one
    draft step (at most 8 original pixels, usually under 1).
    """
    (ih, iw), (oh, ow) = input_size, original_size
    if (ih, iw) == (oh, ow):
        return tuple(int(v) for v in box)  # type: ignore[return-value]
    if resize_mode not in ("crop", "squash"):
        raise OptionError(f"resize mode '{resize_mode}' is not crop or squash; the run's model.json is wrong")
    # decoding put an original point at (x * sx + ox, y * sy + oy); a box goes back the other way
    sx, sy, ox, oy = Resize(ih, iw, resize_mode).point_map(oh, ow)
    x0, y0, x1, y1 = box
    return _round_box((x0 - ox) / sx, (y0 - oy) / sy, (x1 - ox) / sx, (y1 - oy) / sy, original_size)


def peaks_from_maps(maps: np.ndarray) -> np.ndarray:
    """N x 2 (x, y) int64: where each N x H x W map is largest (the first such pixel on ties)."""
    maps = np.nan_to_num(np.asarray(maps, dtype=np.float64), nan=-np.inf)
    n, _, w = maps.shape
    flat = maps.reshape(n, -1).argmax(axis=1)
    return np.stack([flat % w, flat // w], axis=1).astype(np.int64)


def peak(m: np.ndarray) -> tuple[int, int]:
    """(x, y) of the largest value of one H x W map: the point the pointing game checks."""
    x, y = peaks_from_maps(np.asarray(m)[None])[0]
    return int(x), int(y)


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (x1, y1 exclusive)."""
    return float(ious(np.asarray(a)[None], np.asarray(b)[None])[0])


def points_in_boxes(points: np.ndarray, boxes: np.ndarray, tolerance: float = 0.0) -> np.ndarray:
    """Whether each (x, y) lies in its box: ``x0 <= x < x1`` (a pixel index, or a pixel's centre
    ``x + 0.5``, is inside exactly when its pixel is); with ``tolerance`` > 0, within that many pixels
    (Euclidean) of the box's pixels."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if tolerance <= 0:
        return (b[:, 0] <= p[:, 0]) & (p[:, 0] < b[:, 2]) & (b[:, 1] <= p[:, 1]) & (p[:, 1] < b[:, 3])
    dx = np.maximum.reduce([b[:, 0] - p[:, 0], np.zeros(len(p)), p[:, 0] - (b[:, 2] - 1)])
    dy = np.maximum.reduce([b[:, 1] - p[:, 1], np.zeros(len(p)), p[:, 1] - (b[:, 3] - 1)])
    return np.hypot(dx, dy) <= tolerance


def localization_metrics(pred_boxes: np.ndarray, true_boxes: np.ndarray, peaks: np.ndarray,
                         correct: np.ndarray, tolerance: float = 0.0) -> dict[str, float | int]:
    """Localization figures over N images, all in the same (original image) pixel coordinates.

    ``localization_accuracy``: IoU >= 0.5 with the true box *and* the class predicted right (the
    ImageNet top-1 localization rule); ``iou_at_0_5``: IoU >= 0.5 whatever the class; ``mean_iou``;
    ``pointing_game`` (Zhang et al., 2016): the map's peak lies inside the true box. The original
    pointing game allows 15 pixels of slack at ImageNet scale; cvkit's default is none, because on
    small images 15 pixels is most of the picture (pass ``tolerance``).
    """
    pred = np.asarray(pred_boxes).reshape(-1, 4)
    true = np.asarray(true_boxes).reshape(-1, 4)
    points = np.asarray(peaks).reshape(-1, 2)
    right = np.asarray(correct, dtype=bool).reshape(-1)
    n = len(pred)
    if n == 0 or not len(true) == len(points) == len(right) == n:
        raise ValueError(f"localization needs as many true boxes, peaks and correct flags as boxes (at least one); "
                         f"got {n}, {len(true)}, {len(points)}, {len(right)}")
    overlap = ious(pred, true)
    hit = overlap >= IOU_HIT
    return {"count": n,
            "localization_accuracy": float(np.mean(hit & right)),
            "iou_at_0_5": float(np.mean(hit)),
            "mean_iou": float(np.mean(overlap)),
            "pointing_game": float(np.mean(points_in_boxes(points, true, tolerance)))}
