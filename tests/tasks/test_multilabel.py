"""Multi-label classification through the CLI, on 2x2 mosaics of real Fashion-MNIST items (tests/tasks/mosaics.py):
prepare, train with the sigmoid loss, thresholds chosen on val, evaluate's figures, predict, and the refusals."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.conftest import FAST, run
from tests.hostile.test_hostile_files import one_line_error
from tests.tasks.mosaics import write_mosaics

TRAIN = [*FAST, "--epochs", "12", "--seed", "0"]


@pytest.fixture(scope="module")
def ml_data(tmp_path_factory):
    from typer.testing import CliRunner

    root = tmp_path_factory.mktemp("multilabel")
    csv = write_mosaics(root / "src", 300, seed=0)
    out = root / "ds"
    runner = CliRunner()
    assert run(runner, "-q", "prepare", csv, "--out", out, "--task", "multilabel", "--size", "56", "--val", "0.2",
               "--test", "0.2").exit_code == 0
    assert run(runner, "-q", "normalize", out).exit_code == 0
    return out


@pytest.fixture(scope="module")
def ml_run(ml_data, tmp_path_factory):
    from typer.testing import CliRunner

    out = tmp_path_factory.mktemp("mlruns") / "run"
    result = run(CliRunner(), "-q", "train", ml_data, "--out", out, *TRAIN, "--pos-weight", "auto")
    assert result.exit_code == 0, result.stderr
    return out


def test_a_multilabel_run_learns_and_keeps_thresholds_chosen_on_val(ml_data, ml_run, runner):
    model = json.loads((ml_run / "model.json").read_text())
    assert model["task"] == "multilabel" and model["num_outputs"] == 10
    thresholds = model["task_state"]["thresholds"]
    assert len(thresholds) == 10 and all(0 <= t <= 1 for t in thresholds)
    metrics = pd.read_csv(ml_run / "metrics.csv")
    assert "val_map" in metrics.columns and "val_acc" not in metrics.columns
    result = run(runner, "evaluate", ml_run, "--split", "test", "--json")
    assert result.exit_code == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["task"] == "multilabel"
    for key in ("map", "micro_f1", "macro_f1", "exact_match", "hamming_loss"):
        assert 0 <= figures[key] <= 1, key
    # chance: each class ranked at random, AP about its share of the images
    prevalence = pd.read_csv(ml_data / "manifest.csv").query("split == 'test'")["labels"].str.split("|").explode()
    chance = float((prevalence.value_counts() / (figures["count"])).mean())
    assert figures["map"] > chance + 0.2, (figures["map"], chance)
    out = ml_run / "eval_test"
    assert {"metrics.json", "predictions.csv", "per_class.csv", "precision_recall.png"} <= {p.name for p in out.iterdir()}
    table = pd.read_csv(out / "per_class.csv")
    assert list(table["threshold"].round(6)) == pytest.approx(thresholds)


def test_predict_writes_the_labels_above_threshold_and_threshold_overrides(ml_data, ml_run, runner, tmp_path):
    images = sorted((ml_data.parent / "src" / "images").glob("*.png"))[:6]
    result = run(runner, "-q", "predict", ml_run, *images, "--out", tmp_path / "p")
    assert result.exit_code == 0, result.stderr
    table = pd.read_csv(tmp_path / "p" / "predictions.csv", keep_default_na=False)
    probs = table[[c for c in table.columns if c.startswith("prob_")]].to_numpy()
    thresholds = np.array(json.loads((ml_run / "model.json").read_text())["task_state"]["thresholds"])
    classes = [c[5:] for c in table.columns if c.startswith("prob_")]
    for row, p in zip(table["predicted"], probs):
        assert row.split() == [c for c, v, t in zip(classes, p, thresholds) if v >= t]
    result = run(runner, "-q", "predict", ml_run, *images, "--out", tmp_path / "all", "--threshold", "0.000001")
    assert result.exit_code == 0, result.stderr
    every = pd.read_csv(tmp_path / "all" / "predictions.csv")["predicted"]
    assert all(len(row.split()) == 10 for row in every)
    one_line_error(run(runner, "predict", ml_run, *images, "--threshold", "1.5"), "--threshold 1.5 must be")


def test_tasks_that_do_not_fit_are_refused(ml_data, ml_run, data, trained, runner, tmp_path):
    one_line_error(run(runner, "evaluate", ml_run, "--data", data, "--split", "val"),
                   "predicts multilabel", "was prepared for classify")
    one_line_error(run(runner, "evaluate", trained, "--data", ml_data, "--split", "val"),
                   "predicts classify", "was prepared for multilabel")
    one_line_error(run(runner, "train", ml_data, "--out", tmp_path / "r", "--task", "classify", *FAST),
                   "--task classify", "was prepared for multilabel")
    one_line_error(run(runner, "train", ml_data, "--out", tmp_path / "r", "--loss", "mse", *FAST), "--loss mse")
    one_line_error(run(runner, "predict", trained, next((ml_data.parent / "src" / "images").iterdir()),
                       "--threshold", "0.5", "--out", tmp_path / "p"), "--threshold is not available for --task classify")
    assert not (tmp_path / "r").exists() and not (tmp_path / "p").exists()


def test_mixup_blends_the_multi_hot_targets(ml_data, runner, tmp_path):
    result = run(runner, "-q", "train", ml_data, "--out", tmp_path / "r", *FAST, "--epochs", "1",
                 "--augment", "none", "--hflip", "0")
    assert result.exit_code == 0, result.stderr
    policy = tmp_path / "mix.json"
    policy.write_text(json.dumps({"format": 1, "policy": {"mixup": 0.4, "cutmix": 1.0}}))
    result = run(runner, "-q", "train", ml_data, "--out", tmp_path / "m", *FAST, "--epochs", "1", "--augment", policy)
    assert result.exit_code == 0, result.stderr


def test_crossval_stratifies_folds_over_every_label(ml_data, runner, tmp_path):
    out = tmp_path / "cv"
    result = run(runner, "-q", "crossval", ml_data, "--folds", "3", "--epochs", "1", *FAST, "--out", out, "--no-refit",
                 "--grid", "pos_weight=none,auto")
    assert result.exit_code == 0, result.stderr
    folds = pd.read_csv(out / "folds.csv")
    manifest = pd.read_csv(ml_data / "manifest.csv", keep_default_na=False)
    folds["labels"] = manifest.loc[folds["row"], "labels"].to_numpy()
    per_label = folds.assign(label=folds["labels"].str.split("|")).explode("label")
    counts = pd.crosstab(per_label["label"], per_label["fold"])
    assert (counts.max(axis=1) - counts.min(axis=1)).max() <= 2  # each label spread evenly over the folds
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 2 and summary["val_acc_mean"].between(0, 1).all()  # val_acc: the task's val mAP


def test_export_cam_and_retrieve_take_a_multilabel_run(ml_data, ml_run, runner, tmp_path):
    result = run(runner, "-q", "export", ml_run, "--format", "onnx", "--out", tmp_path / "onnx")
    assert result.exit_code == 0, result.stderr
    checked = json.loads((tmp_path / "onnx" / "export.json").read_text())
    assert checked["max_abs_prob_diff"] < 1e-3 and checked["check_images"] > 0
    import onnxruntime as ort

    session = ort.InferenceSession(str(tmp_path / "onnx" / "model.onnx"))
    x = np.random.default_rng(0).random((2, 3, 56, 56), dtype=np.float32)
    probs = session.run(None, {session.get_inputs()[0].name: x})[0]
    assert probs.shape == (2, 10) and not np.allclose(probs.sum(1), 1.0)  # independent sigmoids, not a softmax
    image = sorted((ml_data.parent / "src" / "images").glob("*.png"))[0]
    for target in ("coat", "bag"):  # any label of the image can be explained
        result = run(runner, "-q", "cam", ml_run, image, "--class", target, "--out", tmp_path / f"cam_{target}")
        assert result.exit_code == 0, result.stderr
    cams = pd.read_csv(tmp_path / "cam_bag" / "cams.csv")
    assert set(cams["class"]) == {"bag"} and cams["score"].between(0, 1).all()
    result = run(runner, "-q", "retrieve", "index", ml_run, ml_data, "--out", tmp_path / "idx")
    assert result.exit_code == 0, result.stderr
    result = run(runner, "-q", "retrieve", "query", tmp_path / "idx", image, "-k", "3", "--out", tmp_path / "q")
    assert result.exit_code == 0, result.stderr
