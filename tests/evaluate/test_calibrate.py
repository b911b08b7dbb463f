"""``evaluate --calibrate``: temperature scaling fit on val, kept in RUN/calibration.json, applied by evaluate and
predict (``--no-calibration`` turns it off), on real Fashion-MNIST items and tiny runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import FAST, SAMPLE, run
from tests.hostile.test_hostile_files import one_line_error

OVERCONFIDENT = 8.0  # the classifier's weights times this: logits 8x too large, probabilities far too sure


def said(result) -> str:
    """stderr with rich's line wrapping undone."""
    return " ".join(result.stderr.split())


@pytest.fixture(scope="module")
def sure_run(trained, tmp_path_factory) -> Path:
    """A copy of the ``trained`` run whose logits are scaled up: deliberately over-confident, same argmax."""
    from cvkit.files.run import ModelInfo, save_model_weights
    from cvkit.runtime import load_run

    folder = tmp_path_factory.mktemp("calibrate") / "sure"
    shutil.copytree(trained, folder, ignore=shutil.ignore_patterns("eval_*", "predict", "calibration.json"))
    loaded = load_run(folder, torch.device("cpu"))
    head = loaded.model.get_classifier()
    with torch.no_grad():
        head.weight.mul_(OVERCONFIDENT)
        head.bias.mul_(OVERCONFIDENT)
    save_model_weights(folder, loaded.model.state_dict(), ModelInfo.read(folder).epoch)
    return folder


@pytest.fixture(scope="module")
def calibrated(sure_run, tmp_path_factory) -> tuple[Path, dict]:
    """``sure_run`` copied and calibrated through the CLI; (run, the JSON evaluate printed)."""
    from typer.testing import CliRunner

    folder = tmp_path_factory.mktemp("calibrated") / "run"
    shutil.copytree(sure_run, folder)
    result = run(CliRunner(), "evaluate", folder, "--calibrate", "--json")
    assert result.exit_code == 0, result.stderr
    return folder, json.loads(result.stdout)


def test_calibrating_an_overconfident_run_lowers_val_nll_and_test_ece(calibrated, runner, tmp_path):
    folder, metrics = calibrated
    saved = json.loads((folder / "calibration.json").read_text())
    assert saved["format"] == 1 and saved["method"] == "temperature" and saved["split"] == "val"
    manifest = pd.read_csv(Path(json.loads((folder / "config.json").read_text())["data"]) / "manifest.csv")
    assert saved["count"] == int((manifest["split"] == "val").sum())
    t = saved["temperature"][0]
    assert t > 1.0  # an over-confident run is cooled down
    assert saved["nll_after"] < saved["nll_before"] and saved["ece_after"] < saved["ece_before"]
    block = metrics["calibration"]
    assert block["ece_after"] < block["ece_before"] and block["nll_after"] < block["nll_before"]
    assert block["fit"]["count"] == saved["count"] and block["temperature"] == saved["temperature"]
    # the report's own figures are the calibrated ones, and accuracy is what the raw logits give
    raw = json.loads(run(runner, "-q", "evaluate", folder, "--no-calibration", "--json", "--out",
                         tmp_path / "raw").stdout)
    assert "calibration" not in raw and (tmp_path / "raw" / "reliability.png").exists() is False
    assert metrics["log_loss"] == pytest.approx(block["nll_after"], rel=1e-4)
    assert raw["log_loss"] == pytest.approx(block["nll_before"], rel=1e-4)
    assert metrics["ece"] == pytest.approx(block["ece_after"]) and raw["ece"] == pytest.approx(block["ece_before"])
    assert metrics["accuracy"] == raw["accuracy"]
    assert (folder / "eval_test" / "reliability.png").stat().st_size > 1000


def test_evaluate_applies_a_saved_calibration_and_says_so(calibrated, runner, tmp_path):
    folder, first = calibrated
    result = run(runner, "evaluate", folder, "--json", "--out", tmp_path / "again")
    assert result.exit_code == 0, result.stderr
    assert "calibrated by temperature scaling" in said(result) and "--no-calibration" in said(result)
    again = json.loads(result.stdout)
    assert again["calibration"]["ece_after"] == pytest.approx(first["calibration"]["ece_after"])
    assert again["log_loss"] == pytest.approx(first["log_loss"])
    assert "Calibrated (temperature T=" in said(result)  # the summary's before/after line
    assert (tmp_path / "again" / "reliability.png").is_file()


def test_a_calibration_fit_with_multi_view_tta_scales_the_views_average(sure_run, runner, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(sure_run, folder)
    fitted = run(runner, "-q", "evaluate", folder, "--calibrate", "--tta", "flip,shift", "--json")
    assert fitted.exit_code == 0, fitted.stderr
    metrics = json.loads(fitted.stdout)
    assert metrics["tta_views"] == ["flip", "shift"] and metrics["calibration"]["temperature"][0] > 1.0
    assert metrics["calibration"]["ece_after"] < metrics["calibration"]["ece_before"]
    # the same views without the temperature: the same decisions, other probabilities
    raw = json.loads(run(runner, "-q", "evaluate", folder, "--tta", "flip,shift", "--no-calibration", "--json",
                         "--out", tmp_path / "raw").stdout)
    assert raw["accuracy"] == metrics["accuracy"] and raw["log_loss"] != pytest.approx(metrics["log_loss"])
    assert json.loads((folder / "calibration.json").read_text())["tta_views"] == ["flip", "shift"]
    # evaluated with other views, the run says its temperature was fit for these
    other = run(runner, "evaluate", folder, "--tta", "flip", "--out", tmp_path / "flip")
    assert other.exit_code == 0, other.stderr
    assert "was fit with --tta flip,shift and this evaluation uses --tta flip" in said(other)
    same = run(runner, "evaluate", folder, "--tta", "flip,shift", "--out", tmp_path / "same")
    assert "was fit with" not in said(same)


def test_predict_probabilities_change_after_calibration_and_argmax_does_not(calibrated, runner, tmp_path):
    folder, _ = calibrated
    images = SAMPLE / "fashion" / "bag"
    before = run(runner, "-q", "predict", folder, images, "--no-calibration", "--out", tmp_path / "raw")
    after = run(runner, "predict", folder, images, "--out", tmp_path / "cal")
    assert before.exit_code == 0 and after.exit_code == 0, after.stderr
    assert "calibrated by temperature scaling" in said(after)
    raw = pd.read_csv(tmp_path / "raw" / "predictions.csv")
    cal = pd.read_csv(tmp_path / "cal" / "predictions.csv")
    assert len(raw) == len(cal) > 3
    assert (raw["predicted"] == cal["predicted"]).all()
    assert (cal["probability"] < raw["probability"] - 1e-3).mean() > 0.5  # less sure once scaled down
    probs = cal[[c for c in cal.columns if c.startswith("prob_")]].to_numpy()
    assert probs.sum(1) == pytest.approx(np.ones(len(cal)), abs=1e-4)


def test_calibration_json_round_trips(tmp_path):
    from cvkit.files.calibration import Calibration

    saved = Calibration("per-class temperature", [0.5, 1.25, 3.0], "val", 123, True, 0.9, 0.7, 0.2, 0.05, "ab" * 20)
    saved.write(tmp_path)
    assert json.loads((tmp_path / "calibration.json").read_text())["format"] == 1
    assert Calibration.read(tmp_path) == saved
    assert Calibration.read_if_present(tmp_path / "none") is None


def test_fit_temperature_recovers_a_known_scale():
    """Logits drawn from a calibrated softmax, then multiplied by 3: the fit divides them by about 3."""
    from cvkit.tasks import TaskSpec, create_task
    from cvkit.tasks.calibration import fit_temperature

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (4000, 5))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(5, p=row) for row in p])
    task = create_task("classify", TaskSpec([f"c{i}" for i in range(5)]))
    t = fit_temperature(task, [torch.tensor(logits * 3.0)], torch.tensor(labels), 1)
    assert t[0] == pytest.approx(3.0, rel=0.1)


def test_multilabel_temperatures_keep_the_decisions():
    """Per-class temperatures move each class's threshold with its probabilities: the same labels stay above,
    also for an image averaged with its mirror (flip TTA: the temperature scales the mean's log-odds)."""
    from cvkit.tasks import TaskSpec, create_task
    from cvkit.tasks.calibration import calibrated

    task = create_task("multilabel", TaskSpec(["a", "b", "c"], "bce", state={"thresholds": [0.3, 0.5, 0.8]}))
    rng = np.random.default_rng(1)
    for views in ([rng.normal(0, 3, (200, 3))], [rng.normal(0, 3, (200, 3)), rng.normal(0, 3, (200, 3))]):
        task.set_temperature(None)
        raw = calibrated(task, views)
        assert raw == pytest.approx(np.mean([1 / (1 + np.exp(-v)) for v in views], axis=0))
        before = raw >= task.thresholds
        task.set_temperature([0.5, 2.0, 4.0])
        probs = calibrated(task, views)
        assert np.abs(probs - raw).max() > 0.05
        assert ((probs >= task.thresholds) == before).all()


@pytest.mark.parametrize("loss", ["ce", "bce"])
def test_a_temperature_keeps_the_argmax_with_and_without_tta(loss):
    from cvkit.tasks import TaskSpec, create_task
    from cvkit.tasks.calibration import calibrated

    task = create_task("classify", TaskSpec([f"c{i}" for i in range(4)], loss))
    rng = np.random.default_rng(2)
    for views in ([rng.normal(0, 4, (300, 4))], [rng.normal(0, 4, (300, 4)), rng.normal(0, 4, (300, 4))]):
        task.set_temperature(None)
        raw = calibrated(task, views)
        plain = np.mean([task.probabilities(torch.tensor(v)).double().numpy() for v in views], axis=0)
        assert raw == pytest.approx(plain, abs=1e-6)  # no temperature: what inference returns without one
        task.set_temperature([3.0])
        cooled = calibrated(task, views)
        assert (cooled.argmax(1) == raw.argmax(1)).all() and cooled.max(1).mean() < raw.max(1).mean() - 0.05
        assert cooled.sum(1) == pytest.approx(np.ones(300))


# ----------------------------------------------------------------------------- refusals


def test_a_corrupt_or_stale_calibration_json_is_a_one_line_error(calibrated, runner, tmp_path):
    folder, _ = calibrated
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    (broken / "calibration.json").write_text("{not json")
    one_line_error(run(runner, "evaluate", broken), "calibration.json is not valid JSON", "--calibrate")
    one_line_error(run(runner, "predict", broken, SAMPLE / "fashion" / "bag"), "calibration.json", "--calibrate")
    (broken / "calibration.json").write_text(json.dumps({"format": 1, "method": "temperature", "temperature": [-1.0]}))
    one_line_error(run(runner, "evaluate", broken), "calibration.json lacks", "--calibrate")
    assert run(runner, "-q", "evaluate", broken, "--no-calibration").exit_code == 0  # the way around it
    assert run(runner, "-q", "evaluate", broken, "--calibrate").exit_code == 0  # and the fix: fit it again
    assert json.loads((broken / "calibration.json").read_text())["temperature"][0] > 1.0
    stale = tmp_path / "stale"  # the run trained further (other weights) since it was calibrated
    shutil.copytree(folder, stale)
    saved = json.loads((stale / "calibration.json").read_text())
    (stale / "calibration.json").write_text(json.dumps({**saved, "weights_sha1": "0" * 40}))
    one_line_error(run(runner, "evaluate", stale), "was fit on other weights", "--calibrate")


def test_calibrating_with_no_val_split_is_refused_and_writes_nothing(sure_run, data, runner, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(sure_run, folder)
    no_val = tmp_path / "data"
    shutil.copytree(data, no_val)
    manifest = pd.read_csv(no_val / "manifest.csv")
    manifest.loc[manifest["split"] == "val", "split"] = "train"
    manifest.to_csv(no_val / "manifest.csv", index=False)
    one_line_error(run(runner, "evaluate", folder, "--calibrate", "--data", no_val), "no val images", "--val")
    assert not (folder / "calibration.json").exists() and not (folder / "eval_test").exists()


def test_calibrate_option_conflicts(sure_run, runner, tmp_path):
    one_line_error(run(runner, "evaluate", sure_run, "--calibrate", "--no-calibration"), "drop --no-calibration")
    one_line_error(run(runner, "evaluate", sure_run, sure_run, "--calibrate"), "calibrate each RUN on its own")
    one_line_error(run(runner, "evaluate", sure_run, "--calibrate", "--shard", "0/2"), "calibrate first")
    one_line_error(run(runner, "evaluate", sure_run, "--calibrate", "--merge"), "--merge", "--calibrate")
    assert not (sure_run / "calibration.json").exists()


def test_a_regress_run_is_refused(runner, tmp_path):
    from tests.tasks.canvases import write_keypoints

    csv = write_keypoints(tmp_path / "src", 40, seed=0, size=32, lo=10, hi=20)
    ds, out = tmp_path / "ds", tmp_path / "reg"
    assert run(runner, "-q", "prepare", csv, "--out", ds, "--task", "regress", "--targets", "cx,cy", "--size", "32",
               "--val", "0.2", "--test", "0.2").exit_code == 0
    assert run(runner, "-q", "normalize", ds).exit_code == 0
    assert run(runner, "-q", "train", ds, "--out", out, "--epochs", "1", *FAST).exit_code == 0
    one_line_error(run(runner, "evaluate", out, "--calibrate"), "predicts regress", "classify and multilabel")
    assert not (out / "calibration.json").exists()


def test_a_multilabel_run_gets_a_temperature_per_class_and_keeps_its_decisions(runner, tmp_path):
    from tests.tasks.mosaics import write_mosaics

    csv = write_mosaics(tmp_path / "src", 120, seed=0)
    ds, out = tmp_path / "ds", tmp_path / "ml"
    assert run(runner, "-q", "prepare", csv, "--out", ds, "--task", "multilabel", "--size", "28", "--val", "0.25",
               "--test", "0.25").exit_code == 0
    assert run(runner, "-q", "normalize", ds).exit_code == 0
    assert run(runner, "-q", "train", ds, "--out", out, "--epochs", "3", "--seed", "0", *FAST).exit_code == 0
    raw = json.loads(run(runner, "-q", "evaluate", out, "--json", "--out", tmp_path / "raw").stdout)
    result = run(runner, "-q", "evaluate", out, "--calibrate", "--json")
    assert result.exit_code == 0, result.stderr
    metrics = json.loads(result.stdout)
    saved = json.loads((out / "calibration.json").read_text())
    assert saved["method"] == "per-class temperature" and len(saved["temperature"]) == 10
    assert saved["nll_after"] < saved["nll_before"]
    assert metrics["calibration"]["nll_after"] < metrics["calibration"]["nll_before"]
    a = pd.read_csv(tmp_path / "raw" / "predictions.csv")
    b = pd.read_csv(out / "eval_test" / "predictions.csv")
    assert (a["predicted"].fillna("") == b["predicted"].fillna("")).all()  # thresholds moved with the temperatures
    assert metrics["map"] == pytest.approx(raw["map"]) and metrics["exact_match"] == raw["exact_match"]
    assert not np.allclose(a.filter(like="prob_").to_numpy(), b.filter(like="prob_").to_numpy(), atol=1e-3)
    assert (out / "eval_test" / "reliability.png").is_file()
