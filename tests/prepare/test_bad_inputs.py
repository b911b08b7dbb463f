"""``cvkit prepare``: bad inputs are skipped and listed, too many of them stop the run cleanly,
and a CSV cannot reach outside its own folder."""

from __future__ import annotations

import csv
import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cvkit.files.images import BadImage, decode_image
from tests.conftest import make_image, run

# ----------------------------------------------------------------------------- helpers


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(width: int, height: int) -> bytes:
    """A few-byte PNG whose IHDR claims ``width`` x ``height`` 8-bit gray pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _png_chunk(b"IEND", b""))


def encoded(fmt: str, seed: int = 0, size=(48, 40)) -> bytes:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt)
    return buf.getvalue()


def read_rejected(out: Path) -> dict[str, str]:
    with open(out / "rejected.csv", newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ["path", "reason"]
        return {row["path"]: row["reason"] for row in reader}


def read_manifest(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "manifest.csv", dtype=str, keep_default_na=False)


def abspath(p: Path) -> str:
    return os.path.abspath(p)


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("Error:")]


def flat(text: str) -> str:
    """Text with runs of whitespace made one space (rich wraps long lines at the console width)."""
    return " ".join(text.split())


def staging_left(out: Path) -> list[str]:
    return [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def write_bad(kind: str, path: Path) -> Path:
    """Create one bad input of ``kind`` at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is not a picture\n")
    elif kind == "truncated-jpeg":
        data = encoded("JPEG", seed=7)
        path.write_bytes(data[: len(data) // 2])
    elif kind == "truncated-png":
        data = encoded("PNG", seed=8)
        path.write_bytes(data[: len(data) // 2])
    elif kind == "broken-link":
        os.symlink(path.parent / "no-such-target.png", path)
    elif kind == "bomb":
        path.write_bytes(bomb_png(100_000, 100_000))
    else:  # pragma: no cover
        raise AssertionError(kind)
    return path


BAD_KINDS = [
    # kind, file name, substring of the reason
    ("empty", "empty.jpg", "empty"),
    ("text", "notes.jpg", "not an image"),
    ("truncated-jpeg", "half.jpg", "truncated"),
    ("truncated-png", "half.png", "truncated"),
    ("broken-link", "gone.png", "unreadable"),
    ("bomb", "bomb.png", "too large"),
]


# ----------------------------------------------------------------------------- one bad input of each kind


@pytest.mark.parametrize("kind,name,reason", BAD_KINDS, ids=[k[0] for k in BAD_KINDS])
def test_bad_input_is_skipped_and_listed(runner, class_folders, tmp_path, kind, name, reason):
    bad = write_bad(kind, class_folders / "dog" / name)
    out = tmp_path / "ds"
    result = run(runner, "prepare", class_folders, "--out", out, "--size", "8")
    assert result.exit_code == 0, result.stderr
    assert "Traceback" not in flat(result.stderr)

    rejected = read_rejected(out)
    assert list(rejected) == [abspath(bad)]
    assert reason in rejected[abspath(bad)].lower()

    manifest = read_manifest(out)
    assert len(manifest) == 30  # every good image is kept
    assert abspath(bad) not in set(manifest["path"])
    assert sorted(manifest["label"].unique()) == ["cat", "dog", "fox"]
    cached = sum(len(np.load(out / "cache" / f"{s}_8x8.npy")) for s in set(manifest["split"]))
    assert cached == 30
    assert "1 of 31 inputs rejected" in flat(result.stderr)
    assert "rejected.csv" in result.stderr.replace("\n", "")


def test_all_bad_kinds_together_are_counted_in_summary(runner, class_folders, tmp_path):
    bad = {kind: write_bad(kind, class_folders / ("cat" if i % 2 else "fox") / name)
           for i, (kind, name, _) in enumerate(BAD_KINDS)}
    out = tmp_path / "ds"
    result = run(runner, "prepare", class_folders, "--out", out)
    assert result.exit_code == 0, result.stderr

    rejected = read_rejected(out)
    assert set(rejected) == {abspath(p) for p in bad.values()}
    for kind, name, reason in BAD_KINDS:
        assert reason in rejected[abspath(bad[kind])].lower(), (kind, rejected[abspath(bad[kind])])
    assert len(read_manifest(out)) == 30

    err = flat(result.stderr)
    assert f"{len(BAD_KINDS)} of {30 + len(BAD_KINDS)} inputs rejected" in err
    assert "2 truncated" in err
    assert "1 empty" in err
    assert "1 not an image" in err
    assert "1 unreadable" in err
    assert "1 too large" in err


def test_directory_named_like_an_image_in_csv_is_unreadable(runner, tmp_path):
    root = tmp_path / "csvsrc"
    rows = ["path,label"]
    for i in range(4):
        make_image(root / f"img{i}.png", seed=i)
        rows.append(f"img{i}.png,{'ab'[i % 2]}")
    (root / "folder.png").mkdir()
    rows.append("folder.png,a")
    (root / "list.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "ds"
    result = run(runner, "prepare", root / "list.csv", "--out", out)
    assert result.exit_code == 0, result.stderr
    rejected = read_rejected(out)
    assert list(rejected) == [str(root.resolve() / "folder.png")]
    assert "unreadable" in rejected[str(root.resolve() / "folder.png")]
    assert len(read_manifest(out)) == 4


# ----------------------------------------------------------------------------- pixel limits


def test_max_pixels_rejects_a_normal_image_over_the_limit(runner, class_folders, tmp_path):
    big = make_image(class_folders / "cat" / "big.png", seed=999, size=(40, 30))  # 1200 pixels
    out = tmp_path / "ds"
    # the other images are 12x10 = 120 pixels
    result = run(runner, "prepare", class_folders, "--out", out, "--max-pixels", "500")
    assert result.exit_code == 0, result.stderr
    rejected = read_rejected(out)
    assert list(rejected) == [abspath(big)]
    reason = rejected[abspath(big)]
    assert "too large" in reason
    assert "40x30" in reason and "500" in reason
    assert len(read_manifest(out)) == 30
    assert "1 of 31 inputs rejected" in flat(result.stderr)


def test_max_pixels_default_is_pillows_limit(runner, class_folders, tmp_path):
    make_image(class_folders / "cat" / "big.png", seed=999, size=(40, 30))
    out = tmp_path / "ds"
    result = run(runner, "prepare", class_folders, "--out", out)
    assert result.exit_code == 0, result.stderr
    assert read_rejected(out) == {}
    assert len(read_manifest(out)) == 31


def test_decode_image_max_pixels_small_limit():
    data = encoded("PNG", size=(20, 10))
    with pytest.raises(BadImage, match="too large"):
        decode_image(data, max_pixels=199)
    assert decode_image(data, max_pixels=200).array.shape == (10, 20, 3)


def test_decode_image_bomb_is_too_large():
    with pytest.raises(BadImage, match="too large"):
        decode_image(bomb_png(100_000, 100_000))


def test_max_pixels_cannot_lift_pillows_limit(runner, tmp_path):
    """--max-pixels only lowers the decompression-bomb limit; cvkit never lifts it."""
    src = tmp_path / "src"
    make_image(src / "a" / "0.png", seed=1)
    result = run(runner, "prepare", src, "--out", tmp_path / "ds", "--max-pixels", str(Image.MAX_IMAGE_PIXELS + 1))
    assert result.exit_code == 2
    assert "--max-pixels" in result.stderr and "only lowers" in result.stderr
    assert not (tmp_path / "ds").exists()


# ----------------------------------------------------------------------------- duplicates


def _split_source(root: Path) -> Path:
    for split, n in (("train", 5), ("test", 2)):
        for c, name in enumerate(["cat", "dog"]):
            for i in range(n):
                make_image(root / split / name / f"{i}.png", seed=1000 * (split == "test") + 100 * c + i)
    return root


def test_duplicate_across_given_splits_keeps_the_test_copy(runner, tmp_path):
    src = _split_source(tmp_path / "src")
    data = (src / "test" / "cat" / "0.png").read_bytes()
    train_copy = src / "train" / "cat" / "zz_copy.png"
    train_copy.write_bytes(data)
    out = tmp_path / "ds"
    result = run(runner, "prepare", src, "--out", out, "--size", "6")
    assert result.exit_code == 0, result.stderr

    rejected = read_rejected(out)
    assert list(rejected) == [abspath(train_copy)]
    reason = rejected[abspath(train_copy)]
    assert "duplicate" in reason
    assert "test" in reason

    manifest = read_manifest(out)
    by_path = dict(zip(manifest["path"], manifest["split"]))
    assert by_path[abspath(src / "test" / "cat" / "0.png")] == "test"
    assert abspath(train_copy) not in by_path
    assert len(manifest) == 14
    # no sha1 appears in two splits
    assert manifest.groupby("sha1")["split"].nunique().max() == 1
    assert "1 of 15 inputs rejected" in flat(result.stderr)


def test_duplicate_in_val_and_train_keeps_the_val_copy(runner, tmp_path):
    src = _split_source(tmp_path / "src")
    for c, name in enumerate(["cat", "dog"]):
        for i in range(2):
            make_image(src / "val" / name / f"{i}.png", seed=5000 + 100 * c + i)
    val_copy = src / "val" / "dog" / "1.png"
    train_copy = src / "train" / "dog" / "copy.png"
    train_copy.write_bytes(val_copy.read_bytes())
    out = tmp_path / "ds"
    result = run(runner, "prepare", src, "--out", out)
    assert result.exit_code == 0, result.stderr
    rejected = read_rejected(out)
    assert list(rejected) == [abspath(train_copy)]
    assert "duplicate" in rejected[abspath(train_copy)]
    manifest = read_manifest(out)
    assert dict(zip(manifest["path"], manifest["split"]))[abspath(val_copy)] == "val"


def test_duplicate_with_a_different_label_is_rejected(runner, class_folders, tmp_path):
    original = class_folders / "cat" / "01.png"
    copy = class_folders / "dog" / "copy_of_cat.png"
    copy.write_bytes(original.read_bytes())
    out = tmp_path / "ds"
    result = run(runner, "prepare", class_folders, "--out", out)
    assert result.exit_code == 0, result.stderr

    rejected = read_rejected(out)
    assert list(rejected) == [abspath(copy)]
    reason = rejected[abspath(copy)]
    assert "duplicate" in reason
    assert "cat" in reason  # names the label it conflicts with
    manifest = read_manifest(out)
    assert abspath(original) in set(manifest["path"])
    assert abspath(copy) not in set(manifest["path"])
    assert len(manifest) == 30
    assert "1 of 31 inputs rejected" in flat(result.stderr)


def test_summary_counts_duplicates_as_one_kind(runner, class_folders, tmp_path):
    """Two duplicates are one kind of rejection in the summary ("2 duplicate..."), like "2 truncated"."""
    for i, name in enumerate(["01.png", "02.png"]):
        (class_folders / "dog" / f"copy{i}.png").write_bytes((class_folders / "cat" / name).read_bytes())
    out = tmp_path / "ds"
    result = run(runner, "prepare", class_folders, "--out", out)
    assert result.exit_code == 0, result.stderr
    assert len(read_rejected(out)) == 2
    err = flat(result.stderr)
    assert "2 of 32 inputs rejected" in err
    assert "(2 duplicate" in err, err


def test_duplicate_with_the_same_label_is_kept_in_one_split(runner, class_folders, tmp_path):
    copies = []
    for i in range(3):
        copy = class_folders / "fox" / f"copy{i}.png"
        copy.write_bytes((class_folders / "fox" / "01.png").read_bytes())
        copies.append(abspath(copy))
    out = tmp_path / "ds"
    result = run(runner, "prepare", class_folders, "--out", out, "--val", "0.3", "--test", "0.3")
    assert result.exit_code == 0, result.stderr
    assert read_rejected(out) == {}
    manifest = read_manifest(out)
    assert len(manifest) == 33
    group = manifest[manifest["path"].isin(copies + [abspath(class_folders / "fox" / "01.png")])]
    assert len(group) == 4
    assert group["split"].nunique() == 1


# ----------------------------------------------------------------------------- too many rejected


def _mostly_bad(root: Path, good: int, bad: int) -> Path:
    for i in range(good):
        make_image(root / ("a" if i % 2 else "b") / f"good{i}.png", seed=i)
    kinds = ["empty", "text", "truncated-png", "truncated-jpeg", "bomb"]
    for i in range(bad):
        kind = kinds[i % len(kinds)]
        write_bad(kind, root / ("a" if i % 2 else "b") / f"bad{i}.{'jpg' if 'jpeg' in kind else 'png'}")
    return root


def test_too_many_rejected_exits_2_and_leaves_nothing(runner, tmp_path):
    src = _mostly_bad(tmp_path / "src", good=3, bad=4)
    out = tmp_path / "work" / "ds"
    result = run(runner, "prepare", src, "--out", out, "--size", "8")
    assert result.exit_code == 2
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert "4 of 7" in line
    assert "reject" in line
    assert "--max-rejected" in line  # the fix
    assert result.stdout == ""
    assert not out.exists()
    assert staging_left(out) == []


def test_too_many_rejected_quiet_still_prints_the_error(runner, tmp_path):
    src = _mostly_bad(tmp_path / "src", good=1, bad=3)
    out = tmp_path / "ds"
    result = run(runner, "--quiet", "prepare", src, "--out", out)
    assert result.exit_code == 2
    assert len(error_lines(result.stderr)) == 1
    assert [line for line in result.stderr.splitlines() if line.strip()] == error_lines(result.stderr)
    assert not out.exists()
    assert staging_left(out) == []


def test_exactly_max_rejected_is_allowed(runner, tmp_path):
    src = _mostly_bad(tmp_path / "src", good=4, bad=4)
    out = tmp_path / "ds"
    result = run(runner, "prepare", src, "--out", out)
    assert result.exit_code == 0, result.stderr
    assert len(read_rejected(out)) == 4
    assert len(read_manifest(out)) == 4
    assert "4 of 8 inputs rejected" in flat(result.stderr)


def test_raising_max_rejected_lets_the_run_through(runner, tmp_path):
    src = _mostly_bad(tmp_path / "src", good=3, bad=4)
    out = tmp_path / "ds"
    assert run(runner, "prepare", src, "--out", out).exit_code == 2
    result = run(runner, "prepare", src, "--out", out, "--max-rejected", "0.6")
    assert result.exit_code == 0, result.stderr
    assert len(read_rejected(out)) == 4
    assert len(read_manifest(out)) == 3


def test_max_rejected_zero_refuses_any_bad_input(runner, class_folders, tmp_path):
    write_bad("empty", class_folders / "cat" / "empty.png")
    out = tmp_path / "ds"
    result = run(runner, "prepare", class_folders, "--out", out, "--max-rejected", "0")
    assert result.exit_code == 2
    assert len(error_lines(result.stderr)) == 1
    assert "--max-rejected" in error_lines(result.stderr)[0]
    assert not out.exists()
    assert staging_left(out) == []


def test_all_inputs_bad_exits_2_even_when_allowed(runner, tmp_path):
    src = _mostly_bad(tmp_path / "src", good=0, bad=3)
    out = tmp_path / "ds"
    result = run(runner, "prepare", src, "--out", out, "--max-rejected", "1")
    assert result.exit_code == 2
    assert "Traceback" not in flat(result.stderr)
    assert len(error_lines(result.stderr)) == 1
    assert not out.exists()
    assert staging_left(out) == []


def test_too_many_rejected_with_force_keeps_the_old_output(runner, class_folders, tmp_path):
    out = tmp_path / "ds"
    assert run(runner, "prepare", class_folders, "--out", out).exit_code == 0
    before = (out / "manifest.csv").read_bytes()
    src = _mostly_bad(tmp_path / "bad", good=1, bad=4)
    result = run(runner, "prepare", src, "--out", out, "--force")
    assert result.exit_code == 2
    assert (out / "manifest.csv").read_bytes() == before
    assert staging_left(out) == []


# ----------------------------------------------------------------------------- CSV paths


def _csv_source(root: Path, rows: list[str]) -> Path:
    for i in range(4):
        make_image(root / "imgs" / f"{i}.png", seed=i)
    lines = ["path,label"] + rows
    (root / "list.csv").write_text("\n".join(lines) + "\n")
    return root / "list.csv"


def test_csv_relative_paths_are_read(runner, tmp_path):
    source = _csv_source(tmp_path / "src", ["imgs/0.png,a", "imgs/1.png,b", "imgs/../imgs/2.png,a", "imgs/3.png,b"])
    out = tmp_path / "ds"
    result = run(runner, "prepare", source, "--out", out)
    assert result.exit_code == 0, result.stderr
    manifest = read_manifest(out)
    root = (tmp_path / "src").resolve()
    assert sorted(manifest["path"]) == [str(root / "imgs" / f"{i}.png") for i in range(4)]


@pytest.mark.parametrize("escape", ["../outside.png", "imgs/../../outside.png", "ABS"])
def test_csv_path_outside_its_folder_is_refused(runner, tmp_path, escape):
    outside = make_image(tmp_path / "outside.png", seed=42)
    if escape == "ABS":
        escape = str(outside.resolve())
    source = _csv_source(tmp_path / "src", ["imgs/0.png,a", f"{escape},b", "imgs/1.png,a", "imgs/2.png,b"])
    out = tmp_path / "ds"
    result = run(runner, "prepare", source, "--out", out)
    assert result.exit_code == 2
    assert "Traceback" not in flat(result.stderr)
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert "row 3" in lines[0]
    assert "outside" in lines[0]
    assert result.stdout == ""
    assert not out.exists()
    assert staging_left(out) == []


def test_csv_escape_on_a_later_row_names_that_row(runner, tmp_path):
    source = _csv_source(tmp_path / "src", ["imgs/0.png,a", "imgs/1.png,b", "imgs/2.png,a", "../../etc/passwd,b"])
    out = tmp_path / "ds"
    result = run(runner, "prepare", source, "--out", out)
    assert result.exit_code == 2
    assert "row 5" in error_lines(result.stderr)[0]
    assert not out.exists()


def test_csv_absolute_path_inside_its_folder_is_accepted(runner, tmp_path):
    root = tmp_path / "src"
    source = _csv_source(root, ["imgs/0.png,a", "imgs/1.png,b"])
    lines = source.read_text().splitlines() + [f"{root / 'imgs' / '2.png'},a", f"{root / 'imgs' / '3.png'},b"]
    source.write_text("\n".join(lines) + "\n")
    out = tmp_path / "ds"
    result = run(runner, "prepare", source, "--out", out)
    assert result.exit_code == 0, result.stderr
    assert len(read_manifest(out)) == 4


def test_csv_absolute_path_inside_its_folder_through_a_symlink_is_accepted(runner, tmp_path):
    """The CSV is reached through a symlinked folder (as /tmp -> /private/tmp on macOS) and lists
    images by absolute paths spelled through the same link: they are inside the CSV's folder."""
    real = tmp_path / "real"
    _csv_source(real, [])
    alias = tmp_path / "alias"
    os.symlink(real, alias)
    rows = ["path,label"] + [f"{alias / 'imgs' / f'{i}.png'},{'ab'[i % 2]}" for i in range(4)]
    (alias / "list.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "ds"
    result = run(runner, "prepare", alias / "list.csv", "--out", out)
    assert result.exit_code == 0, result.stderr
    assert len(read_manifest(out)) == 4
