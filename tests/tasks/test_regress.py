"""Regression through the CLI, on real canvases with one Fashion-MNIST item each (tests/tasks/canvases.py):
keypoints (the item's centre) learnt well above predicting the mean point, flip pairs under mirroring,
plain numeric targets without labels, the losses, prepare's refusals and the metrics against scikit-learn."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import FAST, run
from tests.hostile.test_hostile_files import one_line_error
from tests.tasks.canvases import write_keypoints, write_localize

TRAIN = [*FAST, "--epochs", "8", "--seed", "0"]


@pytest.fixture(scope="module")
def kp_data(tmp_path_factory) -> Path:
    from typer.testing import CliRunner

    root = tmp_path_factory.mktemp("regress")
    csv = write_keypoints(root / "src", 240, seed=0)
    out = root / "ds"
    runner = CliRunner()
    result = run(runner, "-q", "prepare", csv, "--out", out, "--task", "regress", "--targets", "cx,cy", "--keypoints",
                 "--size", "64", "--val", "0.2", "--test", "0.2")
    assert result.exit_code == 0, result.stderr
    assert run(runner, "-q", "normalize", out).exit_code == 0
    return out


@pytest.fixture(scope="module")
def kp_run(kp_data, tmp_path_factory) -> Path:
    from typer.testing import CliRunner

    out = tmp_path_factory.mktemp("regress_runs") / "run"
    result = run(CliRunner(), "-q", "train", kp_data, "--out", out, *TRAIN)
    assert result.exit_code == 0, result.stderr
    return out


def test_a_keypoint_run_finds_the_item_far_better_than_the_mean_point(kp_data, kp_run, runner):
    model = json.loads((kp_run / "model.json").read_text())
    assert model["task"] == "regress" and model["classes"] == ["cx", "cy"] and model["num_outputs"] == 2
    state = model["task_state"]
    manifest = pd.read_csv(kp_data / "manifest.csv")
    train = manifest.query("split == 'train'")[["cx", "cy"]].to_numpy()
    assert state["mean"] == pytest.approx(train.mean(0)) and state["std"] == pytest.approx(train.std(0))
    assert state["keypoints"] is True and state["input_size"] == [64, 64]
    metrics = pd.read_csv(kp_run / "metrics.csv")
    assert "val_mae" in metrics.columns and "val_acc" not in metrics.columns
    assert model["val_acc"] == pytest.approx(metrics["val_mae"].min(), rel=1e-5)  # the best epoch: the lowest val MAE

    result = run(runner, "evaluate", kp_run, "--split", "test", "--json")
    assert result.exit_code == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["task"] == "regress" and figures["count"] == 48
    assert {"mae", "rmse", "r2", "pck"} <= set(figures)
    # the baseline: every test image's point predicted at the train split's mean point
    test = manifest.query("split == 'test'")[["cx", "cy"]].to_numpy()
    baseline = float((np.linalg.norm(test - train.mean(0), axis=1) <= 0.1 * 64).mean())
    assert figures["pck"] > baseline + 0.3, (figures["pck"], baseline)
    assert figures["mae"] < np.abs(test - train.mean(0)).mean() / 2 and figures["r2"] > 0.5

    out = kp_run / "eval_test"
    assert {"metrics.json", "predictions.csv", "per_target.csv", "regression.png"} <= {p.name for p in out.iterdir()}
    table = pd.read_csv(out / "predictions.csv")
    assert list(table.columns) == ["path", "cx", "true_cx", "cy", "true_cy"]
    truth = manifest.set_index("path").loc[table["path"], ["cx", "cy"]].to_numpy()
    assert table[["true_cx", "true_cy"]].to_numpy() == pytest.approx(truth)  # a 64 px source in a 64 px cache
    mae = np.abs(table[["cx", "cy"]].to_numpy() - truth).mean()
    assert mae == pytest.approx(figures["mae"], abs=1e-3)
    per_target = pd.read_csv(out / "per_target.csv")
    assert list(per_target["name"]) == ["cx", "cy"] and list(per_target.columns) == ["name", "mae", "rmse", "r2"]


def test_predict_writes_the_points_in_the_image_files_pixels(kp_data, kp_run, runner, tmp_path):
    # its own evaluation: under xdist the test above may run in another process, on another kp_run
    assert run(runner, "-q", "evaluate", kp_run, "--out", tmp_path / "e").exit_code == 0
    evaluated = pd.read_csv(tmp_path / "e" / "predictions.csv").head(4)
    result = run(runner, "-q", "predict", kp_run, *evaluated["path"], "--out", tmp_path / "p")
    assert result.exit_code == 0, result.stderr
    table = pd.read_csv(tmp_path / "p" / "predictions.csv")
    assert list(table.columns) == ["path", "cx", "cy"]
    assert table[["cx", "cy"]].to_numpy() == pytest.approx(evaluated[["cx", "cy"]].to_numpy(), abs=1e-3)
    result = run(runner, "-q", "predict", kp_run, *evaluated["path"], "--out", tmp_path / "tta", "--tta")
    assert result.exit_code == 0, result.stderr
    tta = pd.read_csv(tmp_path / "tta" / "predictions.csv")[["cx", "cy"]].to_numpy()
    truth = evaluated[["true_cx", "true_cy"]].to_numpy()
    assert np.abs(tta - truth).mean() < 0.1 * 64  # the mirrored image's points were mirrored back


def _pairs_task(tmp_path: Path, flip_pairs: bool):
    from typer.testing import CliRunner

    from cvkit.data import load_split
    from cvkit.files.dataset import DatasetInfo
    from cvkit.tasks import TaskSpec, create_task

    csv = write_keypoints(tmp_path / "src", 12, seed=1, pairs=True)
    out = tmp_path / ("ds_pairs" if flip_pairs else "ds")
    extra = ["--flip-pairs", "lx:rx"] if flip_pairs else []
    result = run(CliRunner(), "-q", "prepare", csv, "--out", out, "--task", "regress", "--targets", "lx,ly,rx,ry",
                 "--keypoints", *extra, "--size", "64", "--val", "0", "--test", "0")
    assert result.exit_code == 0, result.stderr
    info = DatasetInfo.read(out)
    spec = TaskSpec([], options={"targets": info.targets, "keypoints": info.keypoints, "flip_pairs": info.flip_pairs})
    split = load_split(out, "train")
    task = create_task("regress", spec)
    return task, split


def test_mirrored_images_swap_the_flip_pairs_so_left_stays_left(tmp_path):
    from cvkit.tasks import TaskSpec, create_task
    from cvkit.transforms.geometric import geometric
    from cvkit.transforms.policy import AugmentPolicy

    task, split = _pairs_task(tmp_path, flip_pairs=True)
    labels = torch.from_numpy(task.targets(split).copy())
    assert (labels[:, 0] < labels[:, 2]).all()
    x = torch.from_numpy(np.array(split.images)).permute(0, 3, 1, 2).float() / 255
    flipped, matrices = geometric(x, AugmentPolicy(hflip=1.0), torch.Generator().manual_seed(0), track=True)
    assert torch.equal(flipped, x.flip(3))
    moved = task.move(labels, matrices, (64, 64))
    assert (moved[:, 0] < moved[:, 2]).all()  # lx < rx still: the pair traded places
    assert moved[:, 0] == pytest.approx(64 - labels[:, 2]) and moved[:, 2] == pytest.approx(64 - labels[:, 0])
    assert moved[:, [1, 3]] == pytest.approx(labels[:, [3, 1]])  # each y follows its x
    assert task.flip_back(moved) == pytest.approx(labels)  # predict --tta's way back
    # the state alone (as model.json keeps it) rebuilds the same task
    again = create_task("regress", TaskSpec(task.classes, state=json.loads(json.dumps(task.state()))))
    assert again.move(labels, matrices, (64, 64)) == pytest.approx(moved)

    unpaired, _ = _pairs_task(tmp_path, flip_pairs=False)
    assert (unpaired.move(labels, matrices, (64, 64))[:, 0] > moved[:, 0]).all()  # without pairs left lands right


@pytest.mark.parametrize("cell, args, needles", [
    ("nan", [], ["row 3", "'cx'", "not a finite number"]),
    ("", [], ["row 3", "'cx'", "is empty"]),
    ("abc", [], ["row 3", "'cx'", "'abc'"]),
    (None, ["--targets", "cx", "--keypoints"], ["--keypoints", "even number"]),
    (None, ["--targets", "cx,cy", "--keypoints", "--flip-pairs", "cy:cx"], ["--flip-pairs", "'cy'", "x column"]),
    (None, ["--targets", "cx,cy", "--keypoints", "--flip-pairs", "zz:cx"], ["--flip-pairs", "'zz'"]),
    (None, ["--targets", "cx,cz"], ["'cz'", "--targets"]),
])
def test_prepare_refuses_bad_targets_in_one_line(tmp_path, runner, cell, args, needles):
    csv = write_keypoints(tmp_path / "src", 6, seed=2)
    if cell is not None:
        frame = pd.read_csv(csv, dtype=str)
        frame.loc[1, "cx"] = cell  # CSV row 3 (row 1 is the header)
        frame.to_csv(csv, index=False)
    out = tmp_path / "ds"
    one_line_error(run(runner, "prepare", csv, "--out", out, "--task", "regress",
                       *(args or ["--targets", "cx,cy"])), *needles)
    assert not (out / "dataset.json").exists()


@pytest.fixture(scope="module")
def plain_data(tmp_path_factory) -> Path:
    """Each item's box width and height as targets, in a CSV without a label column."""
    from typer.testing import CliRunner

    root = tmp_path_factory.mktemp("plain")
    boxes = pd.read_csv(write_localize(root / "src", 60, seed=3))
    csv = root / "src" / "sizes.csv"
    pd.DataFrame({"path": boxes["path"], "w": boxes["x1"] - boxes["x0"],
                  "h": boxes["y1"] - boxes["y0"]}).to_csv(csv, index=False)
    out = root / "ds"
    runner = CliRunner()
    result = run(runner, "-q", "prepare", csv, "--out", out, "--task", "regress", "--targets", "w,h", "--size", "32",
                 "--val", "0.2", "--test", "0.2")
    assert result.exit_code == 0, result.stderr
    assert run(runner, "-q", "normalize", out).exit_code == 0
    return out


def test_plain_targets_without_labels_train_with_l1_and_evaluate(plain_data, runner, tmp_path):
    out = tmp_path / "run"
    result = run(runner, "-q", "train", plain_data, "--out", out, *FAST, "--epochs", "2", "--seed", "0",
                 "--loss", "l1")
    assert result.exit_code == 0, result.stderr
    model = json.loads((out / "model.json").read_text())
    assert model["classes"] == ["w", "h"] and model["loss"] == "l1" and model["task_state"]["keypoints"] is False
    result = run(runner, "evaluate", out, "--split", "test", "--json")
    assert result.exit_code == 0, result.stderr
    figures = json.loads(result.stdout)
    assert {"mae", "rmse", "r2", "count", "per_target"} <= set(figures) and "pck" not in figures
    assert figures["count"] == 12 and 0 <= figures["mae"] <= figures["rmse"] and figures["r2"] <= 1
    assert [row["name"] for row in figures["per_target"]] == ["w", "h"]
    assert {"predictions.csv", "per_target.csv", "regression.png"} <= {p.name for p in (out / "eval_test").iterdir()}
    # retrieval works on the features; its eval scores by label, which this dataset has none of
    assert run(runner, "-q", "retrieve", "index", out, plain_data, "--out", tmp_path / "idx").exit_code == 0
    one_line_error(run(runner, "retrieve", "eval", tmp_path / "idx", "--queries", plain_data, "--split", "val"),
                   "has no labels")


def test_regress_refuses_bce_and_augmentation_its_targets_cannot_follow(plain_data, kp_data, runner, tmp_path):
    one_line_error(run(runner, "train", plain_data, "--out", tmp_path / "bce", *FAST, "--epochs", "1",
                       "--loss", "bce"), "--loss bce", "mse, l1 or smooth_l1")
    mixup = tmp_path / "mixup.json"
    mixup.write_text(json.dumps({"format": 1, "policy": {"mixup": 0.2}}))
    one_line_error(run(runner, "train", plain_data, "--out", tmp_path / "mix", *FAST, "--epochs", "1",
                       "--augment", mixup), "mixup and cutmix", "--task regress")
    elastic = tmp_path / "elastic.json"
    elastic.write_text(json.dumps({"format": 1, "policy": {"elastic": 0.05}}))
    one_line_error(run(runner, "train", kp_data, "--out", tmp_path / "el", *FAST, "--epochs", "1",
                       "--augment", elastic), "elastic", "--elastic 0")


def test_the_metrics_agree_with_scikit_learn_and_stay_finite():
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    from cvkit.tasks.regress_metrics import regression_metrics

    rng = np.random.default_rng(0)
    labels = rng.normal(10, 3, (50, 3))
    probs = labels + rng.normal(0, 1, (50, 3))
    figures = regression_metrics(labels, probs, ["a", "b", "c"])
    assert figures["mae"] == pytest.approx(mean_absolute_error(labels, probs))
    assert figures["rmse"] == pytest.approx(np.mean([np.sqrt(mean_squared_error(labels[:, k], probs[:, k]))
                                                     for k in range(3)]))
    assert figures["r2"] == pytest.approx(r2_score(labels, probs))
    per_target = r2_score(labels, probs, multioutput="raw_values")
    assert [row["r2"] for row in figures["per_target"]] == pytest.approx(per_target)
    assert "pck" not in figures and figures["count"] == 50
    constant = np.full((4, 2), 5.0)
    for predicted, r2 in ((constant, 1.0), (constant + 1, 0.0)):
        figures = regression_metrics(constant, predicted, ["x", "y"], radius=6.4)
        assert figures["r2"] == r2 and figures["pck"] == 1.0
        json.dumps(figures, allow_nan=False)
