"""Boxes from maps, boxes back in the original image, and the localization figures."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from cvkit.errors import OptionError
from cvkit.explain.boxes import (box_from_map, box_to_original, boxes_from_maps, iou, ious, localization_metrics,
                                 peak, peaks_from_maps, points_in_boxes, scale_box)
from cvkit.files.images import Resize, decode_image, encode_png


def test_largest_blob_above_the_threshold():
    m = np.zeros((10, 12))
    m[1:3, 1:3] = 1.0  # small and strongest: 4 pixels
    m[5:9, 6:11] = 0.5  # larger: 20 pixels
    m[9, 11] = 0.5  # touches the larger blob by a corner only: joined (8-connectivity)
    assert box_from_map(m, 0.2) == (6, 5, 12, 10)
    assert box_from_map(m, 0.6) == (1, 1, 3, 3)  # the larger blob is below 0.6 of the max


def test_equal_blobs_take_the_first_in_raster_order_and_a_blank_map_the_whole_image():
    m = np.zeros((6, 6))
    m[4:6, 0:2] = 1.0
    m[0:2, 4:6] = 1.0
    assert box_from_map(m) == (4, 0, 6, 2)
    assert box_from_map(np.zeros((5, 7))) == (0, 0, 7, 5)
    assert box_from_map(np.full((5, 7), np.nan)) == (0, 0, 7, 5)
    full = np.ones((5, 7))
    assert box_from_map(full) == (0, 0, 7, 5)


@pytest.mark.parametrize("threshold", [0, 1, 1.5, -0.1, float("nan")])
def test_threshold_outside_zero_one_is_refused(threshold):
    with pytest.raises(OptionError, match=r"^--box-threshold .* must lie between 0 and 1"):
        box_from_map(np.ones((3, 3)), threshold)


def _reference_box(m: np.ndarray, threshold: float) -> tuple[int, int, int, int]:
    """One map at a time, the plain way: scipy's 8-connected labels, the biggest by area."""
    h, w = m.shape
    if m.max() <= 0:
        return 0, 0, w, h
    labels, _ = ndimage.label(m >= threshold * m.max(), structure=np.ones((3, 3)))
    sizes = np.bincount(labels.ravel())[1:]
    ys, xs = np.nonzero(labels == int(np.argmax(sizes)) + 1)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def test_batched_boxes_match_one_map_at_a_time():
    rng = np.random.default_rng(0)
    maps = ndimage.gaussian_filter(rng.random((40, 24, 20)), sigma=(0, 2, 2))
    maps = (maps - maps.min(axis=(1, 2), keepdims=True)) / np.ptp(maps, axis=(1, 2), keepdims=True)
    maps[3] = 0  # a blank map in the middle of a batch
    for threshold in (0.2, 0.5, 0.8):
        got = boxes_from_maps(maps, threshold)
        assert got.shape == (40, 4) and got.dtype == np.int64
        assert [tuple(b) for b in got] == [_reference_box(m, threshold) for m in maps]
    assert boxes_from_maps(np.zeros((0, 4, 4))).shape == (0, 4)


def _mapped_mark(original: tuple[int, int], size: tuple[int, int], mode: str, spot: tuple[int, int]):
    """Decode a black image with one white pixel at ``spot`` (x, y) as cvkit does, find the brightest
    input pixel, and carry its one-pixel box back to the original."""
    h, w = original
    image = np.zeros((h, w, 3), np.uint8)
    image[spot[1], spot[0]] = 255
    decoded = decode_image(encode_png(image), 3, Resize(*size, mode)).array[:, :, 0]
    assert decoded.shape == size
    y, x = np.unravel_index(int(decoded.argmax()), decoded.shape)
    return box_to_original((int(x), int(y), int(x) + 1, int(y) + 1), size, original, mode)


@pytest.mark.parametrize("original, size, mode", [
    ((40, 80), (20, 20), "crop"),  # wide, shrunk by 2, 20 px cut from each side
    ((90, 30), (20, 20), "crop"),  # tall, shrunk by 1.5, 30 px cut from top and bottom
    ((33, 47), (32, 32), "crop"),  # barely shrunk, odd crop offset (7.5 px)
    ((30, 45), (64, 64), "crop"),  # enlarged, a window of 30 x 30 at x 7.5
    ((50, 70), (25, 35), "crop"),  # same aspect ratio: no crop
    ((40, 80), (20, 20), "squash"),
    ((30, 45), (64, 48), "squash"),
])
def test_box_to_original_inverts_the_actual_resize(original, size, mode):
    rng = np.random.default_rng(1)
    h, w = original
    oh, ow = size
    # the window cvkit keeps, to place marks inside it only
    scale = max(oh / h, ow / w) if mode == "crop" else None
    left = (w - ow / scale) / 2 if scale else 0
    top = (h - oh / scale) / 2 if scale else 0
    for _ in range(12):
        x = int(rng.integers(math.ceil(left), math.floor(w - left)))
        y = int(rng.integers(math.ceil(top), math.floor(h - top)))
        x0, y0, x1, y1 = _mapped_mark(original, size, mode, (x, y))
        assert x0 <= x < x1 and y0 <= y < y1, ((x, y), (x0, y0, x1, y1))
        # one input pixel covers at most ceil(original / input) + 1 original pixels across
        assert x1 - x0 <= math.ceil(w / ow) + 1 and y1 - y0 <= math.ceil(h / oh) + 1


def test_box_to_original_exact_values():
    # 40 x 80 (h x w) -> 20 x 20 by crop: the window is x 20..60, every input pixel is 2 x 2
    assert box_to_original((15, 5, 16, 6), (20, 20), (40, 80), "crop") == (50, 10, 52, 12)
    assert box_to_original((0, 0, 20, 20), (20, 20), (40, 80), "crop") == (20, 0, 60, 40)
    assert box_to_original((0, 0, 20, 20), (20, 20), (40, 80), "squash") == (0, 0, 80, 40)
    # a window starting at 7.5: the box edge is rounded outwards
    assert box_to_original((0, 0, 32, 32), (32, 32), (30, 45), "crop") == (7, 0, 38, 30)
    assert box_to_original((3, 4, 9, 10), (32, 32), (32, 32), "crop") == (3, 4, 9, 10)
    with pytest.raises(OptionError, match="resize mode 'pad' is not crop or squash"):
        box_to_original((0, 0, 1, 1), (4, 4), (8, 8), "pad")


def test_scale_box():
    assert scale_box((1, 2, 3, 4), (10, 10), (20, 40)) == (4, 4, 12, 8)
    assert scale_box((0, 0, 1, 1), (100, 100), (10, 10)) == (0, 0, 1, 1)  # never below one pixel
    assert scale_box((5, 5, 10, 10), (10, 10), (3, 3)) == (1, 1, 3, 3)


def test_peak_iou_and_points():
    m = np.zeros((5, 8))
    m[3, 6] = 1
    assert peak(m) == (6, 3)
    other = np.zeros((5, 8))
    other[0, 1] = other[4, 7] = 2  # a tie: the first in raster order
    assert peaks_from_maps(np.stack([m, other])).tolist() == [[6, 3], [1, 0]]
    assert iou((0, 0, 2, 2), (1, 1, 3, 3)) == pytest.approx(1 / 7)
    assert iou((0, 0, 2, 2), (0, 0, 2, 2)) == 1.0
    assert iou((0, 0, 2, 2), (2, 0, 4, 2)) == 0.0  # edges touch, x1 exclusive
    np.testing.assert_allclose(ious([[0, 0, 4, 4], [0, 0, 1, 1]], [[2, 2, 6, 6], [5, 5, 6, 6]]), [4 / 28, 0])
    box = [[2, 2, 5, 5]] * 4
    assert points_in_boxes([[2, 2], [4.5, 4.5], [5, 4], [1, 3]], box).tolist() == [True, True, False, False]
    # with slack, the distance to the box's pixels (its last one is 4, 4)
    assert points_in_boxes([[7, 4], [8, 4], [6, 6], [7, 7]], box, tolerance=3).tolist() == [True, False, True, False]


def test_localization_metrics_by_hand():
    true = [[0, 0, 10, 10]] * 4
    pred = [[0, 0, 10, 10],  # IoU 1
            [0, 0, 10, 5],  # IoU 0.5 exactly: counts
            [0, 0, 4, 10],  # IoU 0.4
            [20, 20, 30, 30]]  # IoU 0
    peaks = [[5, 5], [9, 9], [10, 5], [30, 30]]  # inside, inside, just outside (x1 exclusive), far
    figures = localization_metrics(np.array(pred), np.array(true), np.array(peaks), np.array([True, False, True, True]))
    assert figures == {"count": 4, "localization_accuracy": 0.25, "iou_at_0_5": 0.5,
                       "mean_iou": pytest.approx((1 + 0.5 + 0.4) / 4), "pointing_game": 0.5}
    assert all(isinstance(v, float) for k, v in figures.items() if k != "count")
    loose = localization_metrics(np.array(pred), np.array(true), np.array(peaks), np.ones(4, bool), tolerance=15)
    assert loose["pointing_game"] == 0.75  # (30, 30) is 21 * sqrt(2) px from the box's last pixel
    with pytest.raises(ValueError, match="at least one"):
        localization_metrics(np.zeros((0, 4)), np.zeros((0, 4)), np.zeros((0, 2)), np.zeros(0, bool))
