"""Self-tests of the segmentation scenes (tests/tasks/scenes.py) used by segment tests and bench_segment.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image

from tests.tasks import canvases, mosaics, scenes

VALID = set(range(11)) | {scenes.IGNORE}


def test_same_seed_same_bytes(tmp_path):
    a = scenes.write_segment(tmp_path / "a", n=6, seed=5)
    b = scenes.write_segment(tmp_path / "b", n=6, seed=5)
    c = scenes.write_segment(tmp_path / "c", n=6, seed=6)
    assert a == tmp_path / "a"
    names = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert len(names) == 6 * 2 + 1
    for rel in names:
        assert (a / rel).read_bytes() == (b / rel).read_bytes()
    assert (a / "images/0000.png").read_bytes() != (c / "images/0000.png").read_bytes()
    assert (a / "masks/0000.png").read_bytes() != (c / "masks/0000.png").read_bytes()


def test_a_larger_set_starts_with_the_smaller(tmp_path):
    small = scenes.write_segment(tmp_path / "small", n=3, seed=2)
    large = scenes.write_segment(tmp_path / "large", n=8, seed=2)
    for i in range(3):
        for kind in ("images", "masks"):
            assert (small / f"{kind}/{i:04d}.png").read_bytes() == (large / f"{kind}/{i:04d}.png").read_bytes()


def test_files_modes_sizes_and_mask_values(tmp_path):
    folder = scenes.write_segment(tmp_path / "s", n=12, size=48, seed=1, lo=16, hi=28)
    for i in range(12):
        image, mask = Image.open(folder / f"images/{i:04d}.png"), Image.open(folder / f"masks/{i:04d}.png")
        assert (image.mode, image.size, mask.mode, mask.size) == ("RGB", (48, 48), "L", (48, 48))
        values = set(np.unique(np.asarray(mask)).tolist())
        assert values <= VALID and 0 in values and values & set(range(1, 11))


def test_classes_file_background_then_label_order(tmp_path):
    folder = scenes.write_segment(tmp_path / "s", n=1)
    lines = (folder / "classes.txt").read_text().splitlines()
    assert len(lines) == 11
    assert lines == ["background", "tshirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
                     "bag", "ankle_boot"]
    assert set(lines[1:]) == set(mosaics.fashion_items())


def test_one_to_three_visible_items_per_scene():
    counts = set()
    for i in range(40):
        s = scenes.scene(seed=3, index=i)
        assert 1 <= len(s.placed) <= 3
        counts.add(len(s.placed))
        for p, k in s.placed:
            side = p.item.shape[0]
            assert 20 <= side <= 36 and p.item.shape == (side, side)
            assert 0 <= p.x <= 64 - side and 0 <= p.y <= 64 - side
            assert 1 <= k <= 10
            window = s.mask[p.y:p.y + side, p.x:p.x + side]
            assert (window == k).sum() >= 0.25 * (p.item >= scenes.HIGH).sum()  # mostly visible
    assert counts == {1, 2, 3}


def test_mask_follows_the_pixels_of_the_top_item():
    for i in range(20):
        s = scenes.scene(seed=4, index=i)
        expect = np.zeros_like(s.mask)
        for p, k in s.placed:  # later items cover earlier ones
            side = p.item.shape[0]
            window = expect[p.y:p.y + side, p.x:p.x + side]
            window[(p.item >= scenes.LOW) & (p.item < scenes.HIGH)] = scenes.IGNORE
            window[p.item >= scenes.HIGH] = k
        np.testing.assert_array_equal(s.mask, expect)


def test_class_pixels_differ_from_the_background_and_background_pixels_do_not():
    for i in range(20):
        s = scenes.scene(seed=0, index=i)
        texture = np.clip(canvases.texture(np.random.default_rng([0, i]), 64, 64), 0, 255).astype(np.uint8)
        np.testing.assert_array_equal(s.background, texture)
        diff = np.abs(s.image.astype(int) - texture.astype(int)).max(axis=2)
        np.testing.assert_array_equal(s.image[s.mask == 0], texture[s.mask == 0])
        labelled = (s.mask >= 1) & (s.mask <= 10)
        assert (diff[labelled] > 0).mean() >= 0.99 and diff[labelled].mean() > 30


def test_scene_image_is_what_write_segment_writes(tmp_path):
    folder = scenes.write_segment(tmp_path / "s", n=4, seed=7)
    for i in range(4):
        image, mask = scenes.scene_image(seed=7, index=i)
        np.testing.assert_array_equal(np.asarray(Image.open(folder / f"images/{i:04d}.png")), image)
        np.testing.assert_array_equal(np.asarray(Image.open(folder / f"masks/{i:04d}.png")), mask)


def test_csv_lists_existing_pairs(tmp_path):
    csv = scenes.write_segment_csv(tmp_path / "c", n=5, seed=1)
    assert csv == tmp_path / "c" / "pairs.csv"
    pairs = pd.read_csv(csv)
    assert list(pairs.columns) == ["path", "mask"] and len(pairs) == 5
    for path, mask in zip(pairs["path"], pairs["mask"]):
        assert (csv.parent / path).is_file() and (csv.parent / mask).is_file()
        assert Image.open(csv.parent / path).size == Image.open(csv.parent / mask).size
    assert (csv.parent / "classes.txt").is_file()
    same = scenes.write_segment(tmp_path / "f", n=5, seed=1)
    assert (same / "masks/0004.png").read_bytes() == (csv.parent / "masks/0004.png").read_bytes()


def test_large_scene_has_several_items():
    image, mask = scenes.large_scene(160, 112, seed=0)
    assert image.shape == (112, 160, 3) and image.dtype == np.uint8 and mask.shape == (112, 160)
    assert set(np.unique(mask).tolist()) <= VALID
    assert len(set(np.unique(mask).tolist()) - {0, scenes.IGNORE}) >= 3
    again, _ = scenes.large_scene(160, 112, seed=0)
    other, _ = scenes.large_scene(160, 112, seed=1)
    np.testing.assert_array_equal(image, again)
    assert not np.array_equal(image, other)


def test_items_passed_in_or_looked_up_at_call_time(tmp_path, monkeypatch):
    block = np.zeros((28, 28), np.uint8)
    block[4:24, 4:24] = 255
    # Names from Fashion-MNIST keep the label order: a bag is 9 whatever else is present.
    _, mask = scenes.scene_image(seed=0, index=0, items={"bag": [block]})
    assert set(np.unique(mask).tolist()) <= {0, 9, scenes.IGNORE} and (mask == 9).any()
    monkeypatch.setattr(mosaics, "fashion_items", lambda: {"blob": [block], "dot": [block]})
    folder = scenes.write_segment(tmp_path / "b", n=6, seed=0)
    assert (folder / "classes.txt").read_text().splitlines() == ["background", "blob", "dot"]
    values = set()
    for i in range(6):
        values |= set(np.unique(np.asarray(Image.open(folder / f"masks/{i:04d}.png"))).tolist())
    assert values <= {0, 1, 2, scenes.IGNORE} and {1, 2} <= values
