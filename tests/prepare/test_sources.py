"""`cvkit prepare` over every source kind, with splits, folds, determinism and the cache."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cvkit.data import load_split
from tests.conftest import SAMPLE, make_image, run, write_idx


def manifest(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "manifest.csv", keep_default_na=False, dtype={"label": str})


def classes(out: Path) -> list[str]:
    data = json.loads((out / "classes.json").read_text())
    assert data["format"] == 1
    return data["classes"]


def test_class_folders_nested(runner, class_folders, tmp_path):
    out = tmp_path / "d"
    result = run(runner, "prepare", class_folders, "--out", out, "--val", "0.2", "--test", "0.2")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(out)
    m = manifest(out)
    assert list(m.columns) == ["path", "label", "split", "fold", "sha1"]
    assert len(m) == 30 and set(m["label"]) == {"cat", "dog", "fox"}
    assert m["path"].str.contains("/nested/").sum() == 12  # files one level below the class folder count too
    assert classes(out) == ["cat", "dog", "fox"]
    per = m.groupby(["label", "split"]).size().unstack()
    assert (per["train"] == 6).all() and (per["val"] == 2).all() and (per["test"] == 2).all()
    assert (m["fold"] == -1).all()
    assert m["sha1"].str.len().eq(40).all()
    assert (out / "rejected.csv").read_text().strip() == "path,reason"
    assert "cat" in result.stderr and "all" in result.stderr  # the per-class table


@pytest.mark.parametrize("n", [7, 13, 50])
def test_stratified_fractions_within_one_image(runner, tmp_path, n):
    src = tmp_path / "src"
    for c in range(3):
        for i in range(n + c):  # unequal classes
            make_image(src / f"c{c}" / f"{i}.png", seed=1000 * c + i, size=(4, 4))
    out = tmp_path / "d"
    assert run(runner, "-q", "prepare", src, "--out", out, "--val", "0.15", "--test", "0.25").exit_code == 0
    m = manifest(out)
    for label, group in m.groupby("label"):
        size = len(group)
        for split, fraction in (("val", 0.15), ("test", 0.25)):
            got = (group["split"] == split).sum()
            assert got >= 1, (label, split)
            assert abs(got - size * fraction) <= 1, (label, split, got, size)
        assert (group["split"] == "train").sum() >= 1


def test_tiny_classes_still_appear_in_every_split(runner, tmp_path):
    src = tmp_path / "src"
    for c in range(2):
        for i in range(3):
            make_image(src / f"c{c}" / f"{i}.png", seed=10 * c + i, size=(4, 4))
    out = tmp_path / "d"
    assert run(runner, "-q", "prepare", src, "--out", out).exit_code == 0
    per = manifest(out).groupby(["label", "split"]).size().unstack()
    assert (per[["train", "val", "test"]] == 1).all().all()


def test_folds_are_stratified_and_balanced(runner, class_folders, tmp_path):
    out = tmp_path / "d"
    assert run(runner, "-q", "prepare", class_folders, "--out", out, "--folds", "4", "--test", "0.2").exit_code == 0
    m = manifest(out)
    assert (m[m["split"] == "test"]["fold"] == -1).all()
    pool = m[m["split"] != "test"]
    assert set(pool["fold"]) == {0, 1, 2, 3}
    sizes = pool["fold"].value_counts()
    assert sizes.max() - sizes.min() <= 1
    for _, group in pool.groupby("label"):
        counts = group["fold"].value_counts().reindex(range(4), fill_value=0)
        assert counts.max() - counts.min() <= 1


def test_same_source_and_seed_give_identical_manifest_whatever_listing_order(runner, class_folders, tmp_path, monkeypatch):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert run(runner, "-q", "prepare", class_folders, "--out", a, "--folds", "3").exit_code == 0
    real_walk, real_iterdir = os.walk, Path.iterdir

    def reversed_walk(top, *args, **kwargs):  # the file system listing entries in the opposite order
        for root, dirs, files in real_walk(top, *args, **kwargs):
            dirs.sort(reverse=True)
            files.sort(reverse=True)
            yield root, dirs, files

    monkeypatch.setattr(os, "walk", reversed_walk)
    monkeypatch.setattr(Path, "iterdir", lambda self: iter(sorted(real_iterdir(self), reverse=True)))
    assert run(runner, "-q", "prepare", class_folders, "--out", b, "--folds", "3").exit_code == 0
    monkeypatch.undo()
    assert (a / "manifest.csv").read_bytes() == (b / "manifest.csv").read_bytes()
    assert run(runner, "-q", "prepare", class_folders, "--out", c, "--folds", "3", "--seed", "7").exit_code == 0
    assert (a / "manifest.csv").read_bytes() != (c / "manifest.csv").read_bytes()


def test_global_seed_is_used(runner, class_folders, tmp_path):
    assert run(runner, "-q", "--seed", "7", "prepare", class_folders, "--out", tmp_path / "a").exit_code == 0
    assert run(runner, "-q", "prepare", class_folders, "--out", tmp_path / "b", "--seed", "7").exit_code == 0
    assert (tmp_path / "a/manifest.csv").read_bytes() == (tmp_path / "b/manifest.csv").read_bytes()


def test_split_folders_keep_their_splits(runner, tmp_path):
    src = tmp_path / "src"
    for split, n in (("train", 10), ("valid", 3), ("test", 4)):
        for c in ("a", "b"):
            for i in range(n):
                make_image(src / split / c / f"{i}.png", seed=hash((split, c, i)) % 10**6, size=(5, 5))
    out = tmp_path / "d"
    assert run(runner, "-q", "prepare", src, "--out", out).exit_code == 0
    m = manifest(out)
    for split, folder, n in (("train", "train", 10), ("val", "valid", 3), ("test", "test", 4)):
        part = m[m["split"] == split]
        assert len(part) == 2 * n
        assert part["path"].str.contains(f"/{folder}/").all()
    assert classes(out) == ["a", "b"]


def test_split_folders_without_val_get_one_carved_from_train(runner, tmp_path):
    src = tmp_path / "src"
    for split, n in (("train", 20), ("test", 5)):
        for c in ("a", "b"):
            for i in range(n):
                make_image(src / split / c / f"{i}.png", seed=hash((split, c, i)) % 10**6, size=(5, 5))
    out = tmp_path / "d"
    assert run(runner, "-q", "prepare", src, "--out", out, "--val", "0.2").exit_code == 0
    m = manifest(out)
    val = m[m["split"] == "val"]
    assert len(val) == 8 and val["path"].str.contains("/train/").all()  # 20% of each class's 20 train images
    assert (m[m["split"] == "test"]["path"].str.contains("/test/")).all() and (m["split"] == "test").sum() == 10


def test_idx_folder(runner, idx_folder, tmp_path):
    out = tmp_path / "d"
    result = run(runner, "prepare", idx_folder, "--out", out, "--val", "0.25", "--size", "8")
    assert result.exit_code == 0, result.stderr
    m = manifest(out)
    assert classes(out) == ["0", "1", "2", "3", "4"]
    assert (m["split"] == "test").sum() == 10  # the official test set is kept
    assert (m["split"] == "val").sum() == 10  # 25% of the 40 train images, 2 per class
    assert m["path"].str.startswith("images/").all()
    first = m[m["path"] == "images/train/0/00000.png"]
    assert len(first) == 1
    import gzip

    with gzip.open(idx_folder / "train-images-idx3-ubyte.gz") as f:
        pixels = np.frombuffer(f.read(), np.uint8, offset=16).reshape(40, 8, 8)
    assert np.array_equal(np.asarray(Image.open(out / "images/train/0/00000.png")), pixels[0])
    train = load_split(out, "train")
    assert train.images.shape[1:] == (8, 8, 1)
    row = train.paths.index("images/train/0/00000.png")
    assert np.array_equal(train.images[row, :, :, 0], pixels[0])


def test_idx_class_names_and_plain_files(runner, tmp_path):
    src = tmp_path / "idx"
    src.mkdir()
    rng = np.random.default_rng(1)
    write_idx(src / "train-images-idx3-ubyte", rng.integers(0, 256, (12, 6, 6)))
    write_idx(src / "train-labels-idx1-ubyte", np.arange(12) % 3)
    out = tmp_path / "d"
    assert run(runner, "-q", "prepare", src, "--out", out, "--classes", "shoe,bag,coat", "--val", "0.25",
               "--test", "0").exit_code == 0
    assert classes(out) == ["shoe", "bag", "coat"]
    m = manifest(out)
    assert set(m["label"]) == {"shoe", "bag", "coat"} and set(m["split"]) == {"train", "val"}
    result = run(runner, "prepare", src, "--out", tmp_path / "e", "--classes", "shoe,bag")
    assert result.exit_code == 2 and "--classes names 2 classes" in result.stderr


def test_csv_source_with_and_without_split_and_extra_columns(runner, tmp_path):
    src = tmp_path / "csvsrc"
    rows = ["path,label,split,photographer"]
    for i in range(12):
        make_image(src / "img" / f"{i}.png", seed=500 + i, size=(6, 6))
        rows.append(f"img/{i}.png,{'ab'[i % 2]},{'train' if i < 8 else 'test'},person{i}")
    (src / "list.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "d"
    assert run(runner, "-q", "prepare", src / "list.csv", "--out", out, "--val", "0.25").exit_code == 0
    m = manifest(out)
    assert list(m.columns) == ["path", "label", "split", "fold", "sha1", "photographer"]
    assert (m["split"] == "test").sum() == 4 and (m["split"] == "val").sum() == 2
    assert m.set_index("path").loc[str((src / "img/3.png").resolve()), "photographer"] == "person3"

    (src / "nosplit.csv").write_text("path,label\n" + "\n".join(f"img/{i}.png,{'ab'[i % 2]}" for i in range(12)))
    out2 = tmp_path / "e"
    assert run(runner, "-q", "prepare", src / "nosplit.csv", "--out", out2, "--val", "0.2", "--test", "0.2").exit_code == 0
    assert set(manifest(out2)["split"]) == {"train", "val", "test"}


def test_csv_without_label_column_is_refused(runner, tmp_path):
    (tmp_path / "l.csv").write_text("file,class\na.png,x\n")
    result = run(runner, "prepare", tmp_path / "l.csv", "--out", tmp_path / "d")
    assert result.exit_code == 2 and "no 'path' column" in result.stderr


def test_torchvision_source_from_local_files(runner, tmp_path):
    """torchvision:FashionMNIST reads the raw IDX files torchvision would have downloaded (tests never download)."""
    raw = tmp_path / "tv" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(2)
    for part, n in (("train", 30), ("t10k", 10)):
        write_idx(raw / f"{part}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx(raw / f"{part}-labels-idx1-ubyte", np.arange(n) % 10)
    out = tmp_path / "d"
    result = run(runner, "prepare", "torchvision:FashionMNIST", "--root", tmp_path / "tv", "--out", out)
    assert result.exit_code == 0, result.stderr
    assert classes(out)[:2] == ["T-shirt/top", "Trouser"]
    m = manifest(out)
    assert (m["split"] == "test").sum() == 10 and (m["split"] == "val").sum() == 10
    assert (out / m["path"][0]).is_file() and "T-shirt_top" in m["path"][0]


def test_torchvision_errors(runner, tmp_path, monkeypatch):
    result = run(runner, "prepare", "torchvision:FashionMNSIT", "--root", tmp_path, "--out", tmp_path / "d")
    assert result.exit_code == 2 and "Did you mean FashionMNIST" in result.stderr
    result = run(runner, "prepare", "torchvision:MNIST", "--out", tmp_path / "d")
    assert result.exit_code == 2 and "--root" in result.stderr

    import urllib.error

    import torchvision.datasets as tvd

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tvd.MNIST, "download", offline)
    result = run(runner, "prepare", "torchvision:MNIST", "--root", tmp_path / "empty", "--out", tmp_path / "d")
    assert result.exit_code == 2
    assert "could not be loaded or downloaded" in result.stderr and "offline" in result.stderr
    assert not (tmp_path / "d").exists()


def test_cache_matches_the_images_and_is_rebuilt_when_stale(runner, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(SAMPLE / "fashion", src)
    out = tmp_path / "d"
    assert run(runner, "-q", "prepare", src, "--out", out, "--size", "14").exit_code == 0
    info = json.loads((out / "dataset.json").read_text())
    assert info["channels"] == 1 and info["size"] == [14, 14]
    test = load_split(out, "test")
    assert test.images.shape == (len(test.paths), 14, 14, 1)
    expected = np.asarray(Image.open(test.paths[3]).resize((14, 14), Image.Resampling.BILINEAR))
    assert np.array_equal(test.images[3, :, :, 0], expected)
    assert list(test.labels[:3]) == [classes(out).index(manifest(out).loc[r, "label"]) for r in test.rows[:3]]

    before = (out / "cache/train_14x14.npy").stat().st_mtime_ns
    load_split(out, "train")
    assert (out / "cache/train_14x14.npy").stat().st_mtime_ns == before  # fresh: not rebuilt
    m = manifest(out)
    m = m.drop(index=m[m["split"] == "train"].index[:5])
    m.to_csv(out / "manifest.csv", index=False)
    train = load_split(out, "train")
    assert len(train.paths) == len(train.images) == (m["split"] == "train").sum()

    other = load_split(out, "val", size=(10, 12))  # another size is built on demand
    assert other.images.shape[1:] == (10, 12, 1) and (out / "cache/val_10x12.npy").is_file()


def test_pool_path_gives_the_same_result_as_in_process(runner, tmp_path, monkeypatch):
    """Above POOL_THRESHOLD images the work goes to worker processes; the output must not change."""
    import cvkit.data.decode as decode

    src = SAMPLE / "fashion"
    assert run(runner, "-q", "prepare", src, "--out", tmp_path / "a", "--size", "28").exit_code == 0
    monkeypatch.setattr(decode, "POOL_THRESHOLD", 10)
    monkeypatch.setattr(decode, "CHUNK", 16)
    assert run(runner, "-q", "prepare", src, "--out", tmp_path / "b", "--size", "28", "--workers", "2").exit_code == 0
    assert (tmp_path / "a/manifest.csv").read_bytes() == (tmp_path / "b/manifest.csv").read_bytes()
    for split in ("train", "val", "test"):
        a = np.load(tmp_path / f"a/cache/{split}_28x28.npy")
        b = np.load(tmp_path / f"b/cache/{split}_28x28.npy")
        assert np.array_equal(a, b)
