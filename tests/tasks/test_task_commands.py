"""Every command with the localize and regress tasks, through the CLI: crossval's alpha grid and its ranking
direction, predict's positions in each file's own pixels, export checking both heads, cam, retrieve, inspect,
and evaluate refusing a dataset of another task. Tiny runs on canvases of real Fashion-MNIST items."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.conftest import FAST, run
from tests.hostile.test_hostile_files import one_line_error
from tests.tasks.canvases import write_keypoints, write_localize

TRAIN = [*FAST, "--epochs", "2", "--seed", "0"]


def _prepare(runner, csv, out, *options):
    result = run(runner, "-q", "prepare", csv, "--out", out, "--size", "64", "--val", "0.25", "--test", "0.25",
                 *options)
    assert result.exit_code == 0, result.stderr
    assert run(runner, "-q", "normalize", out).exit_code == 0
    return out


@pytest.fixture(scope="module")
def task_runs(tmp_path_factory):
    """A localize dataset whose files are twice the cache's size (boxes mapped back through the resize), a
    keypoint dataset, and a short run of each."""
    from typer.testing import CliRunner

    runner = CliRunner()
    root = tmp_path_factory.mktemp("taskcmds")
    boxes = write_localize(root / "boxsrc", 120, seed=1, scale=2)
    points = write_keypoints(root / "pointsrc", 120, seed=2)
    loc = _prepare(runner, boxes, root / "loc", "--task", "localize")
    kp = _prepare(runner, points, root / "kp", "--task", "regress", "--targets", "cx,cy", "--keypoints")
    for data, name in ((loc, "locrun"), (kp, "kprun")):
        result = run(runner, "-q", "train", data, "--out", root / name, *TRAIN)
        assert result.exit_code == 0, result.stderr
    return {"root": root, "loc": loc, "kp": kp, "locrun": root / "locrun", "kprun": root / "kprun"}


def test_crossval_grids_alpha_and_ranks_regress_by_the_lowest_error(task_runs, runner, tmp_path):
    out = tmp_path / "cv"
    result = run(runner, "-q", "crossval", task_runs["loc"], "--grid", "alpha=0.1,0.5", "--holdout", "0.3",
                 "--no-refit", "--out", out, *TRAIN[:-2], "--epochs", "1")
    assert result.exit_code == 0, result.stderr
    summary = pd.read_csv(out / "summary.csv")
    assert sorted(summary["alpha"]) == [0.1, 0.5] and summary["val_acc_mean"].between(0, 1).all()
    configs = {json.loads(p.read_text())["task_state"]["alpha"] for p in out.glob("folds/*/*/model.json")}
    assert configs == {0.1, 0.5}
    out = tmp_path / "cvk"
    result = run(runner, "-q", "crossval", task_runs["kp"], "--grid", "loss=mse,l1", "--holdout", "0.3",
                 "--no-refit", "--out", out, *TRAIN[:-2], "--epochs", "1")
    assert result.exit_code == 0, result.stderr
    summary = pd.read_csv(out / "summary.csv")  # val_acc stands for the task's metric: here MAE, lowest first
    assert summary["val_acc_mean"].is_monotonic_increasing and (summary["val_acc_mean"] > 0).all()


def test_predict_writes_boxes_in_each_files_pixels_and_overlays(task_runs, runner, tmp_path):
    src = task_runs["root"] / "boxsrc"
    images = sorted((src / "images").glob("*.png"))[:3]
    result = run(runner, "-q", "predict", task_runs["locrun"], *images, "--out", tmp_path / "p", "--tta")
    assert result.exit_code == 0, result.stderr
    table = pd.read_csv(tmp_path / "p" / "predictions.csv")
    boxes = table[["x0", "y0", "x1", "y1"]].to_numpy()
    # the files are 128 px, the network's input 64 px: boxes come back in the files' pixels
    assert (boxes >= 0).all() and (boxes <= 128).all() and (boxes[:, 2:] > boxes[:, :2]).all()
    assert boxes.max() > 64  # not left in the input's 64 px frame
    assert sorted(p.name for p in (tmp_path / "p" / "overlays").iterdir()) == sorted(p.name for p in images)
    result = run(runner, "-q", "predict", task_runs["kprun"], *sorted((task_runs["root"] / "pointsrc" / "images").glob(
        "*.png"))[:2], "--out", tmp_path / "k")
    assert result.exit_code == 0, result.stderr
    assert len(list((tmp_path / "k" / "overlays").glob("*.png"))) == 2


@pytest.mark.parametrize("name", ["locrun", "kprun"])
def test_export_checks_every_output_against_the_run(task_runs, runner, tmp_path, name):
    result = run(runner, "-q", "export", task_runs[name], "--format", "onnx", "--out", tmp_path / "onnx")
    assert result.exit_code == 0, result.stderr
    checked = json.loads((tmp_path / "onnx" / "export.json").read_text())
    assert checked["max_abs_prob_diff"] < 1e-3
    if name == "locrun":  # the box head is checked on its own
        assert checked["max_abs_box_diff"] is not None and checked["max_abs_box_diff"] < 1e-3
    import onnxruntime as ort

    session = ort.InferenceSession(str(tmp_path / "onnx" / "model.onnx"))
    out = session.run(None, {session.get_inputs()[0].name: np.random.default_rng(0).random((2, 3, 64, 64),
                                                                                          dtype=np.float32)})[0]
    assert out.shape == ((2, 14) if name == "locrun" else (2, 2))


def test_cam_retrieve_and_inspect_take_localize_and_regress_runs(task_runs, runner, tmp_path):
    image = sorted((task_runs["root"] / "boxsrc" / "images").glob("*.png"))[0]
    result = run(runner, "-q", "cam", task_runs["locrun"], image, "--out", tmp_path / "cam")
    assert result.exit_code == 0, result.stderr
    cams = pd.read_csv(tmp_path / "cam" / "cams.csv")
    classes = json.loads((task_runs["locrun"] / "model.json").read_text())["classes"]
    assert set(cams["class"]) <= set(classes) and cams["score"].between(0, 1).all()  # a class, never a box output
    for name, data in (("locrun", "loc"), ("kprun", "kp")):
        result = run(runner, "-q", "retrieve", "index", task_runs[name], task_runs[data], "--out", tmp_path / f"i{name}")
        assert result.exit_code == 0, result.stderr
        result = run(runner, "-q", "retrieve", "query", tmp_path / f"i{name}", image, "-k", "2",
                     "--out", tmp_path / f"q{name}")
        assert result.exit_code == 0, result.stderr
        result = run(runner, "inspect", task_runs[name], "--json")
        assert result.exit_code == 0, result.stderr


def test_evaluate_refuses_a_dataset_of_another_task(task_runs, data, runner):
    for run_name, dataset in (("locrun", data), ("kprun", task_runs["loc"]), ("locrun", task_runs["kp"])):
        result = run(runner, "evaluate", task_runs[run_name], "--data", dataset)
        assert result.exit_code == 2
        one_line_error(result, "prepared for")


def test_convolutionalize_and_visualize_keep_to_the_class_outputs(task_runs, runner, tmp_path):
    image = sorted((task_runs["root"] / "boxsrc" / "images").glob("*.png"))[0]
    result = run(runner, "-q", "convolutionalize", task_runs["locrun"], "--image", image, "--out", tmp_path / "dense")
    assert result.exit_code == 0, result.stderr
    scores = np.load(next((tmp_path / "dense").glob("*_scores.npy")))
    assert scores.shape[0] == 10 and np.allclose(scores.sum(0), 1.0, atol=1e-4)  # the class maps, no box channel
    result = run(runner, "-q", "visualize", task_runs["locrun"], "--confusion", "--out", tmp_path / "vis")
    assert result.exit_code == 0, result.stderr
    assert list((tmp_path / "vis").glob("confusion_*.png"))
    one_line_error(run(runner, "visualize", task_runs["kprun"], "--confusion", "--out", tmp_path / "v2"),
                   "--confusion counts classes")


@pytest.mark.parametrize("name", ["locrun", "kprun"])
def test_evaluate_twice_replaces_its_own_files(task_runs, runner, name):
    for _ in range(2):  # the second run replaces every file the task wrote (boxes.png, per_target.csv, ...)
        result = run(runner, "-q", "evaluate", task_runs[name], "--split", "val")
        assert result.exit_code == 0, result.stderr


def test_augment_previews_every_task_and_materializes_only_single_labels(task_runs, runner, tmp_path):
    import shutil

    for name in ("loc", "kp"):
        data = tmp_path / name
        shutil.copytree(task_runs[name], data)
        result = run(runner, "-q", "augment", data, "--preset", "light", "--preview", "2")
        assert result.exit_code == 0, result.stderr
        assert (data / "augment_preview.png").is_file()
        before = (data / "manifest.csv").read_bytes()
        one_line_error(run(runner, "augment", data, "--preset", "light", "--materialize", "1"),
                       "--materialize writes copies that carry one class label", "drop --materialize")
        assert (data / "manifest.csv").read_bytes() == before and not (data / "augmented").exists()
    result = run(runner, "-q", "visualize", task_runs["kprun"], "--embedding", "--out", tmp_path / "emb")
    assert result.exit_code == 0, result.stderr
    table = pd.read_csv(next((tmp_path / "emb").glob("embedding_*.csv")))
    classes = json.loads((task_runs["kp"] / "classes.json").read_text())["classes"]
    assert set(table["label"]) <= set(classes)  # the dataset's classes, not the run's target names


def test_evaluate_shards_merge_with_what_the_task_saved(task_runs, runner, tmp_path):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    run_dir = task_runs["kprun"]
    assert run(runner, "-q", "evaluate", run_dir, "--split", "val", "--out", whole).exit_code == 0
    for i in range(2):
        result = run(runner, "-q", "evaluate", run_dir, "--split", "val", "--out", parts, "--shard", f"{i}/2")
        assert result.exit_code == 0, result.stderr
    result = run(runner, "-q", "evaluate", run_dir, "--split", "val", "--out", parts, "--merge")
    assert result.exit_code == 0, result.stderr
    a, b = (json.loads((folder / "metrics.json").read_text()) for folder in (whole, parts))
    for key in ("mae", "rmse", "r2", "pck"):  # pck needs the run's saved keypoint state at the merge too
        assert b[key] == pytest.approx(a[key], abs=1e-5), key
