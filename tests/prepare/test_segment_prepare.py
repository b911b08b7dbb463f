"""`cvkit prepare --masks` / `--task segment`: the folder and CSV forms, the task recorded, the manifest's
``labels``, ``mask``, ``mask_sha1`` columns, class names from --mask-classes or numbered, splits stratified
over the classes each mask holds, every bad mask in rejected.csv with its reason, one-line errors for bad
options, and duplicates told apart by their masks."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cvkit.data import prepare
from cvkit.errors import OptionError
from cvkit.files.dataset import label_sets, read_manifest
from tests.conftest import run
from tests.prepare.segment_pairs import NAMES, pair, save_mask, write_pairs

COLUMNS = ["path", "label", "split", "fold", "sha1", "labels", "mask", "mask_sha1"]
FIX = "save masks as palette or grayscale PNGs of class indices"


def manifest(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "manifest.csv", keep_default_na=False, dtype=str)


def classes(out: Path) -> list[str]:
    return json.loads((out / "classes.json").read_text())["classes"]


def rejected(out: Path) -> dict[str, str]:
    frame = pd.read_csv(out / "rejected.csv", keep_default_na=False, dtype=str)
    return {Path(p).name: why for p, why in zip(frame["path"], frame["reason"])}


def one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("Error: ") and len(result.stderr.strip().splitlines()) == 1, result.stderr
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)


def save_image(path: Path, array: np.ndarray, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **options)
    return path


def present(mask_file: str, names: list[str]) -> list[str]:
    values = np.unique(np.asarray(Image.open(mask_file)))
    return [names[v] for v in values if v != 255]


@pytest.fixture
def pairs(tmp_path) -> Path:
    return write_pairs(tmp_path / "src", 32, seed=1)


def test_folder_form(runner, pairs, tmp_path):
    out = tmp_path / "d"
    result = run(runner, "prepare", pairs / "images", "--masks", pairs / "masks", "--mask-classes",
                 pairs / "classes.txt", "--out", out, "--size", "32", "--folds", "3")
    assert result.exit_code == 0, result.stderr
    assert "images whose mask holds the class" in result.stderr
    info = json.loads((out / "dataset.json").read_text())
    assert info["task"] == "segment" and info["mask_root"] == str((pairs / "masks").resolve())
    assert classes(out) == NAMES
    m = manifest(out)
    assert list(m.columns) == COLUMNS and len(m) == 32
    assert set(m["label"]) == {""}
    for row in m.itertuples():
        assert Path(row.mask) == pairs / "masks" / Path(row.path).name  # absolute, like path
        assert row.mask_sha1 == hashlib.sha1(Path(row.mask).read_bytes()).hexdigest()
        assert row.labels.split("|") == present(row.mask, NAMES)  # class order, background included
    assert label_sets(m) == [cell.split("|") for cell in m["labels"]]
    assert label_sets(read_manifest(out)) == label_sets(m)
    train = {name for cell in m["labels"][m["split"] == "train"] for name in cell.split("|")}
    assert train == set(NAMES)  # stratified: every class is in train
    assert set(m["split"]) == {"train", "val", "test"} and (m["split"] == "train").sum() >= 24
    folds = m[m["split"] != "test"]["fold"].astype(int)
    assert sorted(folds.unique()) == [0, 1, 2] and (m[m["split"] == "test"]["fold"] == "-1").all()


def test_numbered_classes_and_csv_form(runner, pairs, tmp_path):
    """A CSV of path,mask,split with an extra column; no --mask-classes: classes 0..K-1, K = largest value + 1
    (here digits 0 and 1 only, so values up to 2)."""
    rows = []
    for i in range(20):
        image, mask = pair(5, i)
        mask[mask == 3] = 2
        mask[mask == 4] = 1
        Image.fromarray(image).save(pairs / f"c{i:02d}.png")
        save_mask(pairs / "m" / f"c{i:02d}.png", mask)
        rows.append((f"c{i:02d}.png", f"m/c{i:02d}.png", "test" if i < 4 else "", f"note{i}"))
    csv = pairs / "pairs.csv"
    pd.DataFrame(rows, columns=["path", "mask", "split", "note"]).to_csv(csv, index=False)
    out = tmp_path / "d"
    result = run(runner, "-q", "prepare", csv, "--task", "segment", "--out", out, "--val", "0.2", "--test", "0")
    assert result.exit_code == 0, result.stderr
    assert classes(out) == ["0", "1", "2"]
    m = manifest(out)
    assert list(m.columns) == [*COLUMNS, "note"]
    assert m["mask"].tolist() == [str(pairs / "m" / f"c{i:02d}.png") for i in range(20)]
    assert (m["split"][:4] == "test").all() and set(m["split"][4:]) == {"train", "val"}
    assert m["note"].tolist() == [f"note{i}" for i in range(20)]
    assert json.loads((out / "dataset.json").read_text())["task"] == "segment"


def test_nested_folders_and_split_folders(runner, tmp_path):
    """IMAGES/train/a/x.png pairs with MASKS/train/a/x.png (any extension); train/ and test/ give the splits."""
    src = tmp_path / "src"
    for i in range(12):
        split, sub = ("train" if i < 9 else "test"), ("a" if i % 2 else "b/c")
        image, mask = pair(2, i)
        save_image(src / "images" / split / sub / f"{i}.jpg", image, quality=95)
        save_image(src / "masks" / split / sub / f"{i}.{'png' if i % 3 else 'bmp'}", mask)
    out = tmp_path / "d"
    assert run(runner, "-q", "prepare", src / "images", "--masks", src / "masks", "--out", out).exit_code == 0
    m = manifest(out)
    assert len(m) == 12
    assert set(m["split"][m["path"].str.contains("/test/")]) == {"test"}
    assert set(m["split"][m["path"].str.contains("/train/")]) <= {"train", "val"}
    for row in m.itertuples():
        rel_image = Path(row.path).relative_to(src / "images").with_suffix("")
        assert Path(row.mask).relative_to(src / "masks").with_suffix("") == rel_image
    assert json.loads((out / "dataset.json").read_text())["source_kind"] == "split-folders"


def test_masks_folder_inside_images_is_not_imported(runner, tmp_path):
    src = write_pairs(tmp_path / "src", 8, seed=3)
    shutil.move(src / "masks", src / "images" / "masks")
    out = tmp_path / "d"
    assert run(runner, "-q", "prepare", src / "images", "--masks", src / "images" / "masks", "--out", out,
               "--val", "0", "--test", "0").exit_code == 0
    assert len(manifest(out)) == 8 and not (out / "rejected.csv").read_text().strip().count("\n")


def test_every_bad_mask_is_rejected_with_its_reason(runner, pairs, tmp_path):
    images, masks = pairs / "images", pairs / "masks"
    (masks / "001.png").unlink()  # missing
    save_mask(masks / "002.png", np.zeros((40, 48), np.uint8))  # another size
    bad_value = np.asarray(Image.open(masks / "003.png")).copy()
    bad_value[0, 0] = 9
    save_mask(masks / "003.png", bad_value)  # not a class of the 5
    rgb = np.asarray(Image.open(masks / "004.png"))
    Image.fromarray(np.stack([rgb] * 3, axis=-1)).save(masks / "004.png")  # RGB, no palette
    (masks / "005.png").write_bytes(b"garbage, not a PNG")  # corrupt
    data = (masks / "007.png").read_bytes()
    (masks / "007.png").write_bytes(data[: len(data) // 2])  # truncated
    Image.fromarray(pair(1, 8)[1]).save(masks / "008.jpg", quality=100)  # lossy
    (masks / "008.png").unlink()
    save_mask(masks / "009.bmp", np.zeros((48, 48), np.uint8))  # two masks for one image
    (images / "notes.txt").write_text("not an image")  # the image itself is bad: its own reason
    out = tmp_path / "d"
    result = run(runner, "prepare", images, "--masks", masks, "--mask-classes", pairs / "classes.txt",
                 "--out", out, "--val", "0", "--test", "0")
    assert result.exit_code == 0, result.stderr
    reasons = rejected(out)
    assert reasons == {
        "001.png": f"mask: no file named 001.* in {masks}",
        "002.png": "mask: 48x40 pixels, but its image is 48x48; a mask must have its image's size",
        "003.png": "mask: value 9 is not a class (the 5 classes are 0 to 4, 255 = ignore)",
        "004.png": f"mask: RGB without a palette; {FIX}",
        "005.png": "mask: not an image: Pillow cannot identify the file",
        "007.png": reasons["007.png"],
        "008.png": f"mask: JPEG is lossy and blurs the class indices at every edge; {FIX}",
        "009.png": f"mask: several files named 009.* in {masks} (009.bmp, 009.png); keep one",
        "notes.txt": "not an image: Pillow cannot identify the file",
    }
    assert reasons["007.png"].startswith(("mask: truncated:", "mask: unreadable:"))
    m = manifest(out)
    assert len(m) == 32 - 8 and not {"001.png", "002.png", "009.png"} & {Path(p).name for p in m["path"]}
    assert "9 of 33 inputs rejected" in result.stderr and "8 mask" in result.stderr


def test_csv_mask_missing_empty_or_outside(runner, pairs, tmp_path):
    rows = [(f"images/{i:03d}.png", f"masks/{i:03d}.png") for i in range(6)]
    rows[1] = ("images/001.png", "masks/gone.png")
    rows[2] = ("images/002.png", "")
    csv = pairs / "pairs.csv"
    pd.DataFrame(rows, columns=["path", "mask"]).to_csv(csv, index=False)
    out = tmp_path / "d"
    assert run(runner, "-q", "prepare", csv, "--task", "segment", "--out", out, "--val", "0", "--test", "0").exit_code == 0
    assert rejected(out) == {"001.png": "mask: masks/gone.png does not exist", "002.png": "mask: row 4 of pairs.csv names none"}
    assert len(manifest(out)) == 4
    rows[3] = ("images/003.png", "../elsewhere.png")
    pd.DataFrame(rows, columns=["path", "mask"]).to_csv(csv, index=False)
    one_line_error(run(runner, "prepare", csv, "--task", "segment", "--out", tmp_path / "e"),
                   "row 5: mask '../elsewhere.png' is outside the CSV's folder")
    assert not (tmp_path / "e").exists()


def test_mask_modes(runner, tmp_path):
    """Palette: the index is the class whatever its colour; 16-bit values that fit are classes; bilevel
    is 0/1; 16-bit values beyond 255 are refused."""
    src = tmp_path / "src"
    masks = {}
    for i in range(4):
        image, mask = pair(4, i)
        save_image(src / "images" / f"{i}.png", image)
        masks[i] = mask
    (src / "masks").mkdir()
    save_mask(src / "masks" / "0.png", masks[0], "P")
    Image.fromarray(masks[1].astype(np.uint16)).save(src / "masks" / "1.png")  # 16-bit grayscale PNG
    Image.fromarray(masks[2] > 0).save(src / "masks" / "2.png")  # mode 1
    wide = masks[3].astype(np.uint16)
    wide[(wide > 0) & (wide < 255)] += 299  # classes 300 and up; 255 stays ignore
    Image.fromarray(wide).save(src / "masks" / "3.png")
    out = tmp_path / "d"
    assert run(runner, "-q", "prepare", src / "images", "--masks", src / "masks", "--out", out, "--size", "48",
               "--val", "0", "--test", "0").exit_code == 0
    assert rejected(out) == {"3.png": f"mask: value {int(wide.max())} is not a class (a mask holds 0 to 254, 255 = ignore)"}
    from cvkit.data import load_split

    got = load_split(out, "train").masks
    assert np.array_equal(got[0], masks[0]) and np.array_equal(got[1], masks[1])
    assert np.array_equal(got[2], (masks[2] > 0).astype(np.uint8))


def test_duplicates_differ_by_their_masks(runner, pairs, tmp_path):
    images, masks = pairs / "images", pairs / "masks"
    shutil.copy(images / "000.png", images / "100.png")
    save_mask(masks / "100.png", np.zeros((48, 48), np.uint8))  # same image, another mask: another target
    shutil.copy(images / "001.png", images / "101.png")
    shutil.copy(masks / "001.png", masks / "101.png")  # same image, same mask: a copy, kept in the same split
    out = tmp_path / "d"
    assert run(runner, "-q", "prepare", images, "--masks", masks, "--out", out).exit_code == 0
    assert rejected(out) == {"100.png": f"duplicate: same bytes as {images / '000.png'}, with the mask "
                                        f"{masks / '000.png'}"}
    m = manifest(out).set_index(manifest(out)["path"].map(lambda p: Path(p).name))
    assert m.loc["101.png", "split"] == m.loc["001.png", "split"]


@pytest.mark.parametrize("args, needles", [
    (["--masks", "MISSING"], ["--masks", "missing does not exist; give the folder of masks"]),
    (["--masks", "FILE"], ["is not a folder"]),
    (["--masks", "MASKS", "--task", "multilabel"], ["--masks is for segmentation, not --task multilabel"]),
    (["--masks", "MASKS", "--classes", "a,b"], ["--classes is for IDX and multi-label sources"]),
    (["--masks", "IMAGES"], ["is SOURCE itself"]),
    (["--mask-classes", "MISSING", "--masks", "MASKS"], ["--mask-classes", "cannot be read"]),
    (["--mask-classes", "BLANK", "--masks", "MASKS"], ["line 2 is blank"]),
    (["--mask-classes", "TWICE", "--masks", "MASKS"], ["line 3: 'zero' is named twice (first on line 2)"]),
    (["--mask-classes", "PIPE", "--masks", "MASKS"], ["'a|b' holds '|'"]),
    (["--task", "segment"], ["--task segment reads a CSV (path,mask[,split]; a folder of images takes --masks"]),
])
def test_bad_options(runner, pairs, tmp_path, args, needles):
    (tmp_path / "file.txt").write_text("x")
    for name, text in (("blank", "background\n\nzero\n"), ("twice", "background\nzero\nzero\n"), ("pipe", "bg\na|b\n")):
        (tmp_path / f"{name}.txt").write_text(text)
    names = {"MISSING": tmp_path / "missing", "FILE": tmp_path / "file.txt", "MASKS": pairs / "masks",
             "IMAGES": pairs / "images", "BLANK": tmp_path / "blank.txt", "TWICE": tmp_path / "twice.txt",
             "PIPE": tmp_path / "pipe.txt"}
    out = tmp_path / "d"
    one_line_error(run(runner, "prepare", pairs / "images", "--out", out, *[names.get(a, a) for a in args]),
                   *needles)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".d")]


def test_masks_need_a_folder_source(runner, pairs, tmp_path):
    csv = pairs / "pairs.csv"
    csv.write_text("path,mask\nimages/000.png,masks/000.png\n")
    one_line_error(run(runner, "prepare", csv, "--masks", pairs / "masks", "--out", tmp_path / "d"),
                   "SOURCE", "is not a folder; a CSV of path,mask[,split] names each image's mask instead")


def test_explicit_task_and_library_call(pairs, tmp_path):
    result = prepare(str(pairs / "images"), tmp_path / "d", masks=str(pairs / "masks"), task="segment",
                     mask_classes=pairs / "classes.txt", val=0.2, test=0.2)
    assert result.task == "segment" and result.classes == NAMES
    assert sum(result.images.values()) == 32
    assert result.counts["background"]["train"] == result.images["train"]  # every image has background
    with pytest.raises(OptionError, match="--masks is for segmentation, not --task classify"):
        prepare(str(pairs / "images"), tmp_path / "e", masks=str(pairs / "masks"), task="classify")


def test_mask_linking_outside_the_masks_folder(runner, pairs, tmp_path):
    outside = save_mask(tmp_path / "elsewhere" / "x.png", pair(1, 3)[1])
    (pairs / "masks" / "003.png").unlink()
    os.symlink(outside, pairs / "masks" / "003.png")
    out = tmp_path / "d"
    assert run(runner, "-q", "prepare", pairs / "images", "--masks", pairs / "masks", "--out", out).exit_code == 0
    assert rejected(out) == {"003.png": f"mask: {pairs / 'masks' / '003.png'} links outside the masks folder "
                                        f"{pairs / 'masks'}"}
