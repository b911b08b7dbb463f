"""The mask cache of a segment dataset: ``cache/{split}_{H}x{W}_mask.npy`` holds each image's mask resized
with nearest neighbour through exactly the image's geometry (crop or squash, at non-integer scales),
is rebuilt at any size and when a mask changes, and never reads a mask outside the dataset's folders."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageOps

from cvkit.data import load_split
from cvkit.data.selection import Selection, load_selection, take_shard
from cvkit.errors import ManifestError, UnsafePath
from tests.conftest import run
from tests.prepare.segment_pairs import NAMES, save_mask, write_pairs


def manifest(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "manifest.csv", keep_default_na=False, dtype=str)


def nearest(mask_file: str, size: tuple[int, int], mode: str) -> np.ndarray:
    """The mask file resized to ``size`` (height, width) with nearest neighbour: crop = ImageOps.fit."""
    img = Image.open(mask_file)
    target = (size[1], size[0])
    img = img.resize(target, Image.NEAREST) if mode == "squash" else ImageOps.fit(img, target, Image.NEAREST)
    return np.asarray(img)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    from typer.testing import CliRunner

    tmp = tmp_path_factory.mktemp("segment")
    src = write_pairs(tmp / "src", 30, seed=2)
    out = tmp / "d"
    result = run(CliRunner(), "-q", "prepare", src / "images", "--masks", src / "masks", "--mask-classes",
                 src / "classes.txt", "--out", out, "--size", "32")
    assert result.exit_code == 0, result.stderr
    return out


def blocks(seed: int, height: int, width: int, side: int = 7) -> np.ndarray:
    """An RGB image of ``side`` px blocks, each black or (200, 120, 60)."""
    rng = np.random.default_rng(seed)
    on = rng.random((height // side + 1, width // side + 1)) < 0.5
    on = np.kron(on, np.ones((side, side), bool))[:height, :width]
    return np.where(on[..., None], np.array([200, 120, 60], np.uint8), np.uint8(0)).astype(np.uint8)


@pytest.mark.parametrize("resize", ["crop", "squash"])
def test_a_mask_pixel_lands_where_its_image_pixel_lands(runner, tmp_path, resize):
    """Masks equal to the thresholded image: wherever the resized image is pure (a block's inside, untouched
    by the bilinear filter), the cached mask says which block it is. 45x37 images to 20x16 (2.25x down) and
    to 40x56 (1.2x-1.5x up): non-integer scales, and crop cuts rows off."""
    src = tmp_path / "src"
    for i in range(6):
        image = blocks(i, 37, 45)
        (src / "images").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(src / "images" / f"{i}.png")
        save_mask(src / "masks" / f"{i}.png", (image[:, :, 0] > 100).astype(np.uint8))
    out = tmp_path / "d"
    assert run(runner, "-q", "prepare", src / "images", "--masks", src / "masks", "--out", out, "--size", "16x20",
               "--resize", resize, "--val", "0", "--test", "0").exit_code == 0
    for size in ((16, 20), (40, 56)):
        data = load_split(out, "train", size)
        assert data.masks.shape == (6, *size) and data.masks.dtype == np.uint8
        red = data.images[:, :, :, 0]
        pure = (red == 0) | (red == 200)
        assert pure.mean() > 0.3
        assert np.array_equal(data.masks[pure], (red[pure] == 200).astype(np.uint8))
        shifted = np.roll(data.masks, 1, axis=2)  # one pixel off: the check would see it
        assert not np.array_equal(shifted[pure], (red[pure] == 200).astype(np.uint8))
        for n, path in enumerate(data.paths):
            mask_file = str(src / "masks" / Path(path).name)
            assert np.array_equal(data.masks[n], nearest(mask_file, size, resize))


def test_cache_holds_the_nearest_resized_masks(prepared):
    m = manifest(prepared)
    for split in ("train", "val", "test"):
        data = load_split(prepared, split)
        part = m[m["split"] == split]
        assert data.masks.shape == (len(part), 32, 32) and isinstance(data.masks, np.memmap)
        assert (prepared / "cache" / f"{split}_32x32_mask.npy").is_file()
        assert (data.labels == 0).all() and data.classes == NAMES and data.multi_hot is None
        for n, mask_file in enumerate(part["mask"]):
            assert np.array_equal(data.masks[n], nearest(mask_file, (32, 32), "crop"))
    meta = json.loads((prepared / "cache" / "train_32x32_mask.json").read_text())
    assert meta["rows"] == m.index[m["split"] == "train"].tolist()


def test_another_size_builds_its_masks(prepared):
    data = load_split(prepared, "val", (24, 20))
    part = manifest(prepared)
    part = part[part["split"] == "val"]
    assert (prepared / "cache" / "val_24x20_mask.npy").is_file()
    for n, mask_file in enumerate(part["mask"]):
        assert np.array_equal(data.masks[n], nearest(mask_file, (24, 20), "crop"))


def test_selections_and_shards_keep_masks_in_step(prepared):
    train, val = load_split(prepared, "train"), load_split(prepared, "val")
    both = load_selection(prepared, Selection.of_splits("train", "val"))
    by_row = {r: train.masks[i] for i, r in enumerate(train.rows)} | {r: val.masks[i] for i, r in enumerate(val.rows)}
    assert both.masks.shape[0] == len(both.rows)
    for n, r in enumerate(both.rows):
        assert np.array_equal(both.masks[n], by_row[r])
    shard = take_shard(train, (1, 3))
    assert np.array_equal(shard.masks, train.masks[np.isin(train.rows, shard.rows)])


def test_other_tasks_have_no_masks(runner, class_folders, tmp_path):
    assert run(runner, "-q", "prepare", class_folders, "--out", tmp_path / "d", "--size", "8").exit_code == 0
    assert load_split(tmp_path / "d", "train").masks is None
    assert not list((tmp_path / "d" / "cache").glob("*_mask.*"))


def _copy_dataset(prepared: Path, tmp_path: Path) -> Path:
    """A copy of the module's dataset (its manifest may be edited; the mask files are shared: never edit them)."""
    import shutil

    out = tmp_path / "d"
    shutil.copytree(prepared, out)
    return out


def test_a_changed_mask_rebuilds_the_cache(runner, tmp_path):
    src = write_pairs(tmp_path / "src", 12, seed=4)
    out = tmp_path / "d"
    assert run(runner, "-q", "prepare", src / "images", "--masks", src / "masks", "--out", out, "--size", "32",
               "--val", "0", "--test", "0").exit_code == 0
    before = np.array(load_split(out, "train").masks)
    m = manifest(out)
    changed = np.asarray(Image.open(m.loc[0, "mask"])).copy()
    changed[8:40, 8:40] = 3
    save_mask(Path(m.loc[0, "mask"]), changed)
    # Like the images' cache, the mask cache follows the manifest: a new mask_sha1 rebuilds it.
    m.loc[0, "mask_sha1"] = hashlib.sha1(Path(m.loc[0, "mask"]).read_bytes()).hexdigest()
    m.to_csv(out / "manifest.csv", index=False)
    after = load_split(out, "train").masks
    assert not np.array_equal(after[0], before[0]) and np.array_equal(after[1:], before[1:])
    assert np.array_equal(after[0], nearest(m.loc[0, "mask"], (32, 32), "crop"))


@pytest.mark.parametrize("path", ["../outside.png", "ABSOLUTE"])
def test_a_mask_path_escaping_the_dataset_is_refused(prepared, tmp_path, path):
    out = _copy_dataset(prepared, tmp_path)
    outside = save_mask(tmp_path / "outside.png", np.zeros((48, 48), np.uint8))
    m = manifest(out)
    row = int(np.flatnonzero(m["split"] == "val")[0])
    m.loc[row, "mask"] = str(outside) if path == "ABSOLUTE" else path
    m.to_csv(out / "manifest.csv", index=False)
    with pytest.raises(UnsafePath, match=f"manifest.csv row {row + 2}: mask '.*outside.png' leads outside the "
                                         f"dataset"):
        load_split(out, "val")


def test_manifest_mask_columns_are_checked(prepared, tmp_path):
    out = _copy_dataset(prepared, tmp_path)
    m = manifest(out)
    m.drop(columns=["mask_sha1"]).to_csv(out / "manifest.csv", index=False)
    with pytest.raises(ManifestError, match="lacks the column 'mask_sha1' its segment task needs"):
        load_split(out, "train")
    m.loc[3, "mask"] = ""
    m.to_csv(out / "manifest.csv", index=False)
    with pytest.raises(ManifestError, match="row 5: no mask"):
        load_split(out, "train")
    m.loc[3, "mask"] = manifest(prepared).loc[3, "mask"]
    m.loc[4, "labels"] = "background|unicorn"
    m.to_csv(out / "manifest.csv", index=False)
    with pytest.raises(ManifestError, match="row 6: label 'unicorn'"):
        load_split(out, "train")


def test_a_mask_broken_after_prepare_is_a_one_line_error(prepared, tmp_path):
    out = _copy_dataset(prepared, tmp_path)
    m = manifest(out)
    row = int(np.flatnonzero(m["split"] == "test")[0])
    bad = save_mask(Path(m.loc[row, "mask"]).parent / "wide.png", np.zeros((30, 48), np.uint8))
    m.loc[row, "mask"], m.loc[row, "mask_sha1"] = str(bad), "0" * 40
    m.to_csv(out / "manifest.csv", index=False)
    try:
        with pytest.raises(ManifestError, match="1 mask\\(s\\) of manifest.csv can no longer be used, first .*wide.png: "
                                                "mask: 48x30 pixels, but its image is 48x48"):
            load_split(out, "test")
    finally:
        bad.unlink()
