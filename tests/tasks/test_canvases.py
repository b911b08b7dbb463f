"""Self-tests of the one-item canvases (tests/tasks/canvases.py) used by localization and keypoint tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image

from tests.tasks import canvases, mosaics


def test_boxes_inside_and_tight():
    images, labels, placed = canvases.placed_rows(40, seed=3, size=64, lo=20, hi=40)
    _, labels2, boxes = canvases.item_rows(40, seed=3, size=64, lo=20, hi=40)
    assert labels == labels2 and set(labels) <= set(mosaics.fashion_items())
    for img, p, (x0, y0, x1, y1) in zip(images, placed, boxes):
        assert img.shape == (64, 64, 3) and img.dtype == np.uint8
        s = p.item.shape[0]
        assert 20 <= s <= 40 and p.item.shape == (s, s)
        assert 0 <= p.x and p.x + s <= 64 and 0 <= p.y and p.y + s <= 64
        assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
        assert p.x <= x0 and x1 <= p.x + s and p.y <= y0 and y1 <= p.y + s
        bright = p.item >= canvases.THRESHOLD
        inside = np.zeros_like(bright)
        inside[int(y0) - p.y:int(y1) - p.y, int(x0) - p.x:int(x1) - p.x] = True
        assert bright.any() and not (bright & ~inside).any()
        # tight: every edge row/column of the box holds a bright pixel
        sub = bright[int(y0) - p.y:int(y1) - p.y, int(x0) - p.x:int(x1) - p.x]
        assert sub[0].any() and sub[-1].any() and sub[:, 0].any() and sub[:, -1].any()


def test_same_seed_same_bytes(tmp_path):
    a = canvases.write_localize(tmp_path / "a", n=6, seed=5)
    b = canvases.write_localize(tmp_path / "b", n=6, seed=5)
    c = canvases.write_localize(tmp_path / "c", n=6, seed=6)
    assert a.read_bytes() == b.read_bytes()
    for rel in pd.read_csv(a)["path"]:
        assert (a.parent / rel).read_bytes() == (b.parent / rel).read_bytes()
    assert (a.parent / "images/0000.png").read_bytes() != (c.parent / "images/0000.png").read_bytes()


def test_scale_doubles_coordinates(tmp_path):
    one = pd.read_csv(canvases.write_localize(tmp_path / "one", n=5, seed=1))
    csv = canvases.write_localize(tmp_path / "two", n=5, seed=1, scale=2)
    two = pd.read_csv(csv)
    assert list(two.columns) == ["path", "label", "x0", "y0", "x1", "y1"]
    cols = ["x0", "y0", "x1", "y1"]
    np.testing.assert_allclose(two[cols].to_numpy(), 2 * one[cols].to_numpy())
    small = np.asarray(Image.open(tmp_path / "one" / one["path"][0]))
    big = np.asarray(Image.open(csv.parent / two["path"][0]))
    assert big.shape == (128, 128, 3)
    np.testing.assert_array_equal(big[::2, ::2], small)


def test_wide_keeps_left_part_and_boxes(tmp_path):
    sq = canvases.write_localize(tmp_path / "sq", n=4, seed=2)
    wd = canvases.write_localize(tmp_path / "wd", n=4, seed=2, wide=True)
    assert sq.read_bytes() == wd.read_bytes()
    left = np.asarray(Image.open(sq.parent / "images/0001.png"))
    wide = np.asarray(Image.open(wd.parent / "images/0001.png"))
    assert wide.shape == (64, 96, 3)
    np.testing.assert_array_equal(wide[:, :64], left)
    assert wide[:, 64:].std() > 5  # textured, not blank


def test_keypoints_are_box_centres_and_pairs(tmp_path):
    boxes = pd.read_csv(canvases.write_localize(tmp_path / "b", n=8, seed=4))
    pts = pd.read_csv(canvases.write_keypoints(tmp_path / "p", n=8, seed=4))
    assert list(pts.columns) == ["path", "label", "cx", "cy"]
    assert (pts["label"] == boxes["label"]).all()
    np.testing.assert_allclose(pts["cx"], (boxes["x0"] + boxes["x1"]) / 2)
    np.testing.assert_allclose(pts["cy"], (boxes["y0"] + boxes["y1"]) / 2)
    pairs = pd.read_csv(canvases.write_keypoints(tmp_path / "q", n=8, seed=4, pairs=True))
    assert list(pairs.columns) == ["path", "label", "lx", "ly", "rx", "ry"]
    assert (pairs["lx"] < pairs["rx"]).all()
    np.testing.assert_allclose(pairs["lx"], boxes["x0"])
    np.testing.assert_allclose(pairs["rx"], boxes["x1"])
    np.testing.assert_allclose(pairs["ly"], pts["cy"])
    np.testing.assert_allclose(pairs["ry"], pts["cy"])


def test_items_looked_up_at_call_time(monkeypatch):
    blob = np.zeros((28, 28), np.uint8)
    blob[10:20, 5:15] = 255
    monkeypatch.setattr(mosaics, "fashion_items", lambda: {"blob": [blob]})
    _, labels, boxes = canvases.item_rows(3, seed=0, lo=28, hi=28)
    assert labels == ["blob"] * 3
    for x0, y0, x1, y1 in boxes:
        assert (x1 - x0, y1 - y0) == (10.0, 10.0)
