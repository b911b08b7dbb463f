"""`cvkit prepare` never loses a user's data: --out rules, a full disk, sizes, bad options and inputs."""

from __future__ import annotations

import os
import shutil
from collections import namedtuple
from pathlib import Path

import pytest

from tests.conftest import leftovers, make_image, run, run_with_file_limit, tree


def _count(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file())


# ----------------------------------------------------------------------------- 10. --out over the source


@pytest.mark.parametrize("where", ["source", "parent"])
def test_out_over_the_source_is_refused_even_with_force(runner, class_folders, where):
    before = tree(class_folders)
    out = class_folders if where == "source" else class_folders.parent
    result = run(runner, "prepare", class_folders, "--out", out, "--force")
    assert result.exit_code == 2
    verb = "is" if where == "source" else "contains"
    assert result.stderr.startswith(f"Error: --out {out} {verb} {class_folders}, which this command reads")
    assert tree(class_folders) == before and _count(class_folders) == 30


def test_out_inside_the_source_is_refused(runner, class_folders):
    out = class_folders / "prepared"
    result = run(runner, "prepare", class_folders, "--out", out)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: --out {out} lies inside the source {class_folders}")
    assert not out.exists() and _count(class_folders) == 30


# ----------------------------------------------------------------------------- 4. links out of a CSV's folder


@pytest.mark.parametrize("kind", ["file", "directory"])
def test_csv_symlink_pointing_outside_its_folder_is_refused(runner, tmp_path, kind):
    outside = tmp_path / "outside"
    make_image(outside / "secret.png", seed=1)
    folder = tmp_path / "csvdir"
    make_image(folder / "ok.png", seed=2)
    if kind == "file":
        (folder / "link.png").symlink_to(outside / "secret.png")
        listed = "link.png"
    else:
        (folder / "linked").symlink_to(outside, target_is_directory=True)
        listed = "linked/secret.png"
    csv = folder / "list.csv"
    csv.write_text(f"path,label\nok.png,a\n{listed},b\n")
    result = run(runner, "prepare", csv, "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {csv} row 3: path '{listed}' is outside the CSV's folder")
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- 12. a full disk with --force


def test_full_disk_with_force_keeps_the_old_dataset(runner, class_folders, tmp_path):
    out = tmp_path / "ds"
    assert run(runner, "-q", "prepare", class_folders, "--out", out, "--size", "8").exit_code == 0
    before = tree(out)
    # The new cache (30 x 64 x 64 x 3 bytes, twice while built) cannot be written under a 64 KB file limit.
    proc = run_with_file_limit(64_000, "-q", "prepare", class_folders, "--out", out, "--size", "64", "--force",
                               "--workers", "1")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: the disk is full"), proc.stderr
    assert tree(out) == before
    assert leftovers(tmp_path) == []
    result = run(runner, "-q", "prepare", class_folders, "--out", out, "--size", "64", "--force")
    assert result.exit_code == 0, result.stderr
    assert (out / "cache").is_dir() and tree(out) != before


# ----------------------------------------------------------------------------- 14. sizes


def test_huge_size_is_refused_at_once(runner, class_folders, tmp_path):
    result = run(runner, "prepare", class_folders, "--out", tmp_path / "ds", "--size", "100000")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: --size '100000' is over the largest side cvkit handles, 4096 pixels")
    assert not (tmp_path / "ds").exists() and leftovers(tmp_path) == []


def test_size_whose_cache_does_not_fit_is_refused(class_folders, tmp_path, monkeypatch):
    from cvkit.data import prepare
    from cvkit.errors import OptionError

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(2**30, 2**30 - 2**20, 2**20))  # 1 MiB free
    with pytest.raises(OptionError, match=r"^--size 256x256: the packed cache of 30 images would take 0\.0 GiB "
                                          r"while it is built, and .* has 0\.0 GiB free; choose a smaller --size$"):
        prepare(str(class_folders), tmp_path / "ds", size=(256, 256))
    assert not (tmp_path / "ds").exists() and leftovers(tmp_path) == []


# ----------------------------------------------------------------------------- 15. bad inputs are exit 2


def test_nul_byte_in_a_csv_path_is_a_clean_error(runner, tmp_path):
    folder = tmp_path / "csvdir"
    make_image(folder / "ok.png", seed=2)
    csv = folder / "list.csv"
    csv.write_bytes(b"path,label\nok.png,a\nbad\x00name.png,b\n")
    result = run(runner, "prepare", csv, "--out", tmp_path / "out")
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith(f"Error: {csv} row 3: the path holds a NUL byte")
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


# ----------------------------------------------------------------------------- 16. options that cannot work


def test_negative_workers_is_refused(runner, class_folders, tmp_path):
    result = run(runner, "prepare", class_folders, "--out", tmp_path / "ds", "--workers", "-3")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: --workers -3 must be at least 1 (or left out: one per core)")


def test_more_folds_than_the_smallest_class_is_refused(runner, class_folders, tmp_path):
    for i in range(10, 13):  # 'fox' gets 3 more images; 'dog' keeps 10 (9 in train+val, one in test)
        make_image(class_folders / "fox" / f"{i}.png", seed=900 + i)
    os.remove(class_folders / "cat" / "01.png")
    os.remove(class_folders / "cat" / "02.png")  # 'cat': 8 images, 7 in train+val
    result = run(runner, "prepare", class_folders, "--out", tmp_path / "ds", "--folds", "8")
    assert result.exit_code == 2
    assert "\nError: --folds 8: class 'cat' has only 7 image(s) in train+val" in result.stderr  # after decoding
    assert "--folds 7 or fewer" in result.stderr
    assert not (tmp_path / "ds").exists() and leftovers(tmp_path) == []
    assert run(runner, "-q", "prepare", class_folders, "--out", tmp_path / "ds", "--folds", "7").exit_code == 0


# ----------------------------------------------------------------------------- 17. messages


def test_a_file_as_out_is_called_a_file(runner, class_folders, tmp_path):
    out = tmp_path / "empty.txt"
    out.write_text("")
    result = run(runner, "prepare", class_folders, "--out", out, "--force")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: --out {out} is a file, not a folder")
    assert out.read_text() == ""
