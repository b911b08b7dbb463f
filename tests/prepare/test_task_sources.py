"""prepare --task localize: boxes checked row by row, kept in the files' pixels, and mapped into every cache
exactly as the images are resized (squash, crop, another --size); one-line refusals that write nothing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cvkit.data.cache import load_split
from tests.conftest import run
from tests.hostile.test_hostile_files import one_line_error
from tests.tasks.canvases import write_localize


def _prepare(runner, csv, out, *options):
    return run(runner, "-q", "prepare", csv, "--out", out, "--task", "localize", "--val", "0.2", "--test", "0.2",
               *options)


def _boxes_by_name(dataset, split="train", size=None) -> dict[str, np.ndarray]:
    data = load_split(dataset, split, size)
    return {p.rsplit("/", 1)[-1]: box for p, box in zip(data.paths, data.values)}


def test_boxes_follow_the_resize_exactly(tmp_path, runner):
    plain = write_localize(tmp_path / "plain", 30, seed=3)
    double = write_localize(tmp_path / "double", 30, seed=3, scale=2)
    assert _prepare(runner, plain, tmp_path / "a", "--size", "64").exit_code == 0
    result = _prepare(runner, double, tmp_path / "b", "--size", "64")
    assert result.exit_code == 0, result.stderr
    manifest = pd.read_csv(tmp_path / "b" / "manifest.csv")
    assert (manifest["width"] == 128).all() and (manifest["height"] == 128).all()
    source = pd.read_csv(double)
    assert np.allclose(np.sort(manifest["x1"].to_numpy()), np.sort(source["x1"].to_numpy()))  # the file's pixels
    a, b = _boxes_by_name(tmp_path / "a"), _boxes_by_name(tmp_path / "b")
    assert a.keys() == b.keys() and all(np.allclose(a[k], b[k]) for k in a)  # halved into the 64 px cache
    half = _boxes_by_name(tmp_path / "b", size=(32, 32))  # another cache size maps from the files again
    assert all(np.allclose(half[k], a[k] / 2) for k in a)


@pytest.mark.parametrize("resize", ["squash", "crop"])
def test_a_wide_image_maps_its_box_as_the_resize_moves_its_pixels(tmp_path, runner, resize):
    wide = write_localize(tmp_path / "src", 20, seed=4, wide=True)  # 64 x 96: the item in the left 64 columns
    result = _prepare(runner, wide, tmp_path / "ds", "--size", "64", "--resize", resize)
    if resize == "crop":  # the centre crop keeps columns 16..80: boxes mostly left of 16 are refused
        cut = pd.read_csv(wide).eval("(x1 - 16).clip(lower=0) < (x1 - x0) / 2").any()
        if cut:
            one_line_error(result, "--resize crop cuts off more than half of the box", "use --resize squash")
            assert not (tmp_path / "ds").exists()
            return
    assert result.exit_code == 0, result.stderr
    frame = pd.read_csv(wide).set_index(pd.read_csv(wide)["path"].str.rsplit("/", n=1).str[-1])
    for name, box in _boxes_by_name(tmp_path / "ds").items():
        x0, y0, x1, y1 = frame.loc[name, ["x0", "y0", "x1", "y1"]]
        if resize == "squash":
            expected = [x0 * 64 / 96, y0, x1 * 64 / 96, y1]
        else:
            expected = [max(x0 - 16, 0), y0, min(x1 - 16, 64), y1]
        assert np.allclose(box, expected, atol=1e-4), (name, box, expected)


@pytest.mark.parametrize("column, value, needles", [
    ("x1", "200", ["row 2", "reaches outside the", "image"]),
    ("x1", "{x0}", ["row 2", "has no area"]),
    ("y0", "-3", ["row 2", "negative corner"]),
    ("y1", "abc", ["row 2", "'y1' holds 'abc'"]),
    ("x0", "nan", ["row 2", "not a finite number"]),
    ("y1", "", ["row 2", "'y1' is empty"]),
])
def test_a_bad_box_is_refused_with_its_row_and_nothing_is_written(tmp_path, runner, column, value, needles):
    csv = write_localize(tmp_path / "src", 12, seed=5)
    frame = pd.read_csv(csv, dtype=str)
    frame.loc[0, column] = value.format(x0=frame.loc[0, "x0"])
    frame.to_csv(csv, index=False)
    result = _prepare(runner, csv, tmp_path / "ds", "--size", "64")
    one_line_error(result, *needles)
    assert not (tmp_path / "ds").exists()


def test_a_csv_without_box_columns_or_with_a_size_column_is_refused(tmp_path, runner):
    csv = write_localize(tmp_path / "src", 12, seed=6)
    frame = pd.read_csv(csv)
    frame.drop(columns=["y1"]).to_csv(tmp_path / "src" / "no_y1.csv", index=False)
    one_line_error(_prepare(runner, tmp_path / "src" / "no_y1.csv", tmp_path / "ds"), "no 'y1' column",
                   "path,label,x0,y0,x1,y1")
    frame.assign(width=64).to_csv(tmp_path / "src" / "width.csv", index=False)
    one_line_error(_prepare(runner, tmp_path / "src" / "width.csv", tmp_path / "ds"), "'width' column")
    one_line_error(_prepare(runner, tmp_path / "src", tmp_path / "ds"), "--task localize reads a CSV")
    one_line_error(run(runner, "prepare", csv, "--out", tmp_path / "ds", "--targets", "x0"), "--task regress")
    assert not (tmp_path / "ds").exists()
