"""Careless inputs (issue 19): values a user typed or edited by hand that are wrong but plausible. Each
gets a one-line error naming the file or option and the fix (exit 2, nothing written), or, for unusual
but valid images, the right pixels."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import SAMPLE, copy_run_with, make_image, run
from tests.hostile.test_hostile_files import one_line_error

IMAGE = SAMPLE / "fashion" / "bag" / "000.png"


def _edit_json(path: Path, **changes: object) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


# ----------------------------------------------------------------------------- model.json values (7)


@pytest.mark.parametrize(("changes", "needles"), [
    ({"std": [0.0]}, ["'std' [0.0]", "above 0"]),
    ({"std": [-0.5]}, ["'std' [-0.5]", "above 0"]),
    ({"std": [float("nan")]}, ["'std'", "NaN or infinity"]),
    ({"mean": [float("inf")]}, ["'mean'", "NaN or infinity"]),
    ({"std": [0.3, 0.3]}, ["'std' has 2 value(s)", "'in_chans' is 1"]),
    ({"mean": [0.1, 0.1, 0.1]}, ["'mean' has 3 value(s)", "'in_chans' is 1"]),
], ids=["std-zero", "std-negative", "std-nan", "mean-inf", "std-length", "mean-length"])
def test_model_json_statistics_that_cannot_normalize_are_refused(trained, tmp_path, runner, changes, needles):
    run_dir = copy_run_with(trained, tmp_path / "run", **changes)
    out = tmp_path / "pred"
    one_line_error(run(runner, "predict", run_dir, IMAGE, "--out", out), "model.json", *needles)
    assert not out.exists()


# ----------------------------------------------------------------------------- wrong-typed JSON values (10)


@pytest.mark.parametrize(("changes", "key"), [
    ({"mean": ["x"]}, "'mean'"),
    ({"std": [0.3, "0.3"]}, "'std'"),
    ({"classes": list(range(10))}, "'classes'"),
    ({"input_size": ["28", 28]}, "'input_size'"),
    ({"input_size": [28.5, 28]}, "'input_size'"),
    ({"arch_options": {"head": "fc", "dropout": "x"}}, "'dropout'"),
    ({"arch_options": {"head": "fc", "hidden": ["a"]}}, "'hidden'"),
    ({"arch_options": {"head": "fc", "width": 3}}, "'width'"),
    ({"loss": "hinge"}, "'loss'"),
    ({"resize": "zoom"}, "'resize'"),
    ({"mean_image": "../../elsewhere.npy"}, "'mean_image'"),
], ids=["mean-str", "std-item-str", "classes-int", "size-str", "size-float", "dropout-str", "hidden-str",
        "unknown-arch-option", "loss", "resize", "mean-image"])
def test_wrong_values_in_model_json_name_the_file_and_key(trained, tmp_path, runner, changes, key):
    run_dir = copy_run_with(trained, tmp_path / "run", **changes)
    one_line_error(run(runner, "predict", run_dir, IMAGE, "--out", tmp_path / "pred"), "model.json", key)


def test_wrong_item_types_in_a_runs_config_json_are_refused(trained, tmp_path, runner):
    run_dir = tmp_path / "run"
    shutil.copytree(trained, run_dir)
    _edit_json(run_dir / "config.json", hidden=["x"])
    one_line_error(run(runner, "predict", run_dir, IMAGE, "--out", tmp_path / "pred"), "config.json", "'hidden'")


@pytest.mark.parametrize(("which", "changes", "key"), [
    ("stats.json", {"mean": ["x"]}, "'mean'"),
    ("stats.json", {"std": [float("nan")]}, "NaN or infinity"),
    ("stats.json", {"size": ["28", 28]}, "'size'"),
    ("stats.json", {"mode": "median"}, "'mode'"),
    ("dataset.json", {"counts": {"train": "x"}}, "'counts'"),
    ("dataset.json", {"size": [0, 28]}, "'size'"),
    ("dataset.json", {"resize": "zoom"}, "'resize'"),
], ids=["stats-mean-str", "stats-std-nan", "stats-size-str", "stats-mode", "dataset-counts", "dataset-size",
        "dataset-resize"])
def test_wrong_values_in_dataset_files_name_the_file_and_key(data, tmp_path, runner, which, changes, key):
    dataset = tmp_path / "data"
    shutil.copytree(data, dataset, symlinks=True)
    _edit_json(dataset / which, **changes)
    out = tmp_path / "run"
    one_line_error(run(runner, "train", dataset, "--out", out, "--epochs", "1"), which, key)
    assert not out.exists()


def test_wrong_item_types_in_an_index_meta_json_are_refused(data, trained, tmp_path, runner):
    index = tmp_path / "idx"
    assert run(runner, "-q", "retrieve", "index", trained, data, "--out", index).exit_code == 0
    _edit_json(index / "meta.json", data=[7])
    one_line_error(run(runner, "retrieve", "query", index, IMAGE), "meta.json", "'data'")


# ----------------------------------------------------------------------------- --seed and other integers (8)


@pytest.mark.parametrize("where", ["command", "global"])
def test_a_negative_seed_is_refused_by_prepare(tmp_path, runner, where):
    out = tmp_path / "n"
    source = SAMPLE / "fashion"
    args = (["prepare", source, "--out", out, "--seed", "-1"] if where == "command"
            else ["--seed", "-1", "prepare", source, "--out", out])
    one_line_error(run(runner, *args), "--seed -1", "must be a whole number from 0 to 4294967295")
    assert not out.exists()


@pytest.mark.parametrize("seed", ["-1", str(2**64)])
@pytest.mark.parametrize("command", [["augment", "DATA", "--hflip", "0.5", "--preview", "2"], ["train", "DATA"], ["crossval", "DATA"],
                                     ["visualize", "RUN", "--embedding"]])
def test_every_seeded_command_refuses_a_seed_numpy_cannot_take(data, trained, tmp_path, runner, command, seed):
    """Issue 19.8's siblings: augment and crossval ended in an internal error, train and visualize took -1."""
    args = [{"DATA": data, "RUN": trained}.get(a, a) for a in command]
    out = [] if command[0] == "augment" else ["--out", tmp_path / "out"]
    for where in (["--seed", seed], []):
        glob = [] if where else ["--seed", seed]
        one_line_error(run(runner, *glob, *args, *where, *out), f"--seed {seed} must be a whole number from 0")
    assert not (tmp_path / "out").exists() and not (data / "augment_preview.png").exists()


@pytest.mark.parametrize("option", [["--batch-size", "0"], ["--workers", "0"], ["--workers", "-1"]])
def test_retrieve_query_refuses_counts_below_one(data, trained, tmp_path, runner, option):
    index = tmp_path / "idx"
    assert run(runner, "-q", "retrieve", "index", trained, data, "--out", index).exit_code == 0
    one_line_error(run(runner, "retrieve", "query", index, IMAGE, *option), f"{option[0]} {option[1]}",
                   "must be at least 1")
    one_line_error(run(runner, "retrieve", "eval", index, "--queries", data, "--batch-size", "0"),
                   "--batch-size 0", "must be at least 1")


# ----------------------------------------------------------------------------- 32-bit integer images (15)


def _fashion_pixels() -> np.ndarray:
    pixels = np.asarray(Image.open(IMAGE))
    assert pixels.ndim == 2 and pixels.min() == 0 and pixels.max() == 255  # the scaling below is then exact
    return pixels


@pytest.fixture
def int32_tiffs(tmp_path) -> dict[str, Path]:
    """The same picture as 32-bit integer TIFFs (Pillow mode I): 16-bit values, values up to 2**31 and
    negative ones; and as 32-bit float TIFFs (mode F) beyond 0-255 (the same hole: clipped to white)."""
    pixels = _fashion_pixels().astype(np.int32)
    folder = tmp_path / "tiffs"
    folder.mkdir()
    out = {}
    for name, values, mode in (("sixteen", pixels * 257, "I"), ("wide", pixels * 2**23, "I"),
                               ("signed", pixels * 2**16 - 2**23, "I"),
                               ("float_wide", pixels.astype(np.float32) * 1000 - 5000, "F")):
        path = folder / f"{name}.tif"
        Image.fromarray(values, mode).save(path)
        with Image.open(path) as check:
            assert check.mode == mode
        out[name] = path
    return out


def test_a_32bit_tiff_is_cached_with_its_picture_not_solid_white(int32_tiffs, tmp_path, runner):
    from cvkit.data import load_split

    source = tmp_path / "src"
    shutil.copytree(next(iter(int32_tiffs.values())).parent, source / "tiff")
    for i in range(3):
        make_image(source / "png" / f"{i}.png", seed=i, size=(28, 28), mode="L")
    out = tmp_path / "ds"
    result = run(runner, "-q", "prepare", source, "--out", out, "--size", "28", "--val", "0", "--test", "0")
    assert result.exit_code == 0, result.stderr
    split = load_split(out, "train")
    pixels = _fashion_pixels()
    for name in int32_tiffs:
        row = next(i for i, p in enumerate(split.paths) if p.endswith(f"{name}.tif"))
        assert np.array_equal(split.images[row][:, :, 0], pixels), name


def test_predict_reads_a_32bit_tiff_as_prepare_does(trained, int32_tiffs, tmp_path, runner):
    import pandas as pd

    reference = run(runner, "-q", "predict", trained, IMAGE, "--out", tmp_path / "png")
    assert reference.exit_code == 0, reference.stderr
    result = run(runner, "-q", "predict", trained, int32_tiffs["wide"].parent, "--out", tmp_path / "tif")
    assert result.exit_code == 0, result.stderr
    png = pd.read_csv(tmp_path / "png" / "predictions.csv").drop(columns="path")
    tif = pd.read_csv(tmp_path / "tif" / "predictions.csv").drop(columns="path")
    assert len(tif) == len(int32_tiffs)
    for i in range(len(tif)):
        pd.testing.assert_series_equal(tif.iloc[i], png.iloc[0], check_names=False)


# ----------------------------------------------------------------------------- counts below one (16)


@pytest.mark.parametrize("option", [["--num-classes", "-1"], ["--num-classes", "0"], ["--input-size", "0"],
                                    ["--channels", "0"]])
def test_models_params_refuses_counts_below_one(runner, option):
    one_line_error(run(runner, "models", "smallcnn", "--params", *option), f"{option[0]} {option[1]}",
                   "must be at least 1")


# ----------------------------------------------------------------------------- sizes from options (18)


def test_inspect_input_size_too_small_speaks_to_the_option(runner):
    result = run(runner, "inspect", "--arch", "resnet18", "--input-size", "2")
    one_line_error(result, "--input-size 2x2 is too small for resnet18", "at least 16x16", "--input-size 16")
    assert "prepare" not in result.stderr


def test_models_input_size_too_small_speaks_to_the_option(runner):
    result = run(runner, "models", "smallcnn", "--params", "--input-size", "2")
    one_line_error(result, "--input-size 2x2 is too small for smallcnn", "--input-size 4")
    assert "prepare" not in result.stderr and "dataset" not in result.stderr


def test_inspect_of_a_run_at_another_input_size_speaks_to_the_option(trained, runner):
    result = run(runner, "inspect", trained, "--input-size", "2")
    one_line_error(result, "--input-size 2x2", "28x28", "leave it out")
    assert "train with" not in result.stderr and "prepare" not in result.stderr


# ----------------------------------------------------------------------------- convolutionalize's inputs (19)


def _big(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.random.default_rng(seed).random((40, 36)) * 255).astype(np.uint8)).save(path)
    return path


def test_convolutionalize_takes_files_folders_and_csvs_and_lists_rejects(trained, tmp_path, runner):
    one = _big(tmp_path / "one.png")
    _big(tmp_path / "a" / "x.png", 1)
    _big(tmp_path / "b" / "x.png", 2)  # the same name in another folder: its maps must not overwrite the first
    (tmp_path / "b" / "broken.png").write_bytes(b"not an image")
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "b" / "small.png")
    _big(tmp_path / "listed" / "y.png", 3)
    (tmp_path / "list.csv").write_text("path\nlisted/y.png\n")
    out = tmp_path / "conv"
    result = run(runner, "convolutionalize", trained, one, tmp_path / "a", tmp_path / "b", tmp_path / "list.csv",
                 "--out", out)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(out)
    for name in ("one", "x", "x_2", "y"):
        assert np.load(out / f"{name}_scores.npy").shape == (10, (40 - 28) // 4 + 1, (36 - 28) // 4 + 1), name
        assert (out / f"{name}_heatmap.png").is_file() and (out / f"{name}_labels.png").is_file()
    rejected = (out / "rejected.csv").read_text().splitlines()
    assert rejected[0] == "path,reason" and len(rejected) == 3
    assert any("broken.png,not an image" in line for line in rejected)
    assert any("small.png" in line and "too small: 20x20" in line for line in rejected)
    printed = result.stderr.replace("\n", "")  # rich folds long paths anywhere
    assert "skipped" in printed and "broken.png" in printed


def test_convolutionalize_image_option_is_a_deprecated_alias(trained, tmp_path, runner):
    a, b = _big(tmp_path / "a.png"), _big(tmp_path / "b.png", 1)
    out = tmp_path / "conv"
    result = run(runner, "convolutionalize", trained, "--image", a, b, "--out", out)
    assert result.exit_code == 0, result.stderr
    assert (out / "a_scores.npy").is_file() and (out / "b_scores.npy").is_file()
    assert "--image is deprecated" in result.stderr


def test_convolutionalize_with_no_usable_image_writes_nothing(trained, tmp_path, runner):
    (tmp_path / "broken.png").write_bytes(b"not an image")
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "small.png")
    out = tmp_path / "conv"
    result = run(runner, "convolutionalize", trained, tmp_path / "broken.png", tmp_path / "small.png", "--out", out)
    one_line_error(result, "none of the 2 input image(s) can be used", "broken.png")
    assert not out.exists()
    one_line_error(run(runner, "convolutionalize", trained, tmp_path / "missing.png", "--out", out), "missing.png")
    assert not out.exists()


def test_class_names_with_dollar_signs_are_drawn_as_written(tmp_path):
    """matplotlib would read "$...$" in a class name as TeX (and fail on "$\\frac$"): plots draw text as written."""
    from cvkit.plots import plot_confusion_matrix

    names = [r"$\frac$", "price $5 - $10"]
    plot_confusion_matrix(np.array([[3, 1], [0, 2]]), names, tmp_path / "cm.png")
    assert (tmp_path / "cm.png").stat().st_size > 0
