"""`cvkit evaluate`: metrics, ensembles and TTA of a tiny trained run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from typer.testing import CliRunner

from tests.conftest import run, run_stdout


def test_evaluate_metrics_match_predictions_csv(trained):
    from sklearn.metrics import accuracy_score, f1_score, log_loss

    from typer.testing import CliRunner

    result = run(CliRunner(), "evaluate", trained, "--split", "test", "--json")
    assert result.exit_code == 0, result.stderr
    metrics = json.loads(result.stdout)
    out = trained / "eval_test"
    for name in ("metrics.json", "predictions.csv", "confusion_matrix.csv", "confusion_matrix.png", "top_losses.csv",
                 "top_losses.png"):
        assert (out / name).is_file(), name
    preds = pd.read_csv(out / "predictions.csv")
    classes = json.loads((trained / "model.json").read_text())["classes"]
    probs = preds[[f"prob_{c}" for c in classes]].to_numpy()
    labels = np.array([classes.index(c) for c in preds["label"]])
    assert len(preds) == metrics["count"] == 40
    assert metrics["accuracy"] == pytest.approx(accuracy_score(labels, probs.argmax(1)))
    assert metrics["accuracy"] == pytest.approx((preds["label"] == preds["predicted"]).mean())
    normalized = probs / probs.sum(1, keepdims=True)  # the CSV keeps 6 significant digits
    assert metrics["log_loss"] == pytest.approx(log_loss(labels, normalized, labels=range(10)), rel=1e-4)
    assert metrics["macro_f1"] == pytest.approx(f1_score(labels, probs.argmax(1), average="macro", labels=range(10),
                                                         zero_division=0), rel=1e-6)
    assert "top5_accuracy" in metrics and "ece" in metrics and "most_confused" in metrics
    matrix = pd.read_csv(out / "confusion_matrix.csv", index_col=0)
    assert matrix.to_numpy().sum() == 40 and list(matrix.columns) == classes
    assert "accuracy" in result.stderr


def test_ensemble_of_a_run_with_itself_equals_the_run(trained, tmp_path):
    single = json.loads(run_stdout("-q", "evaluate", trained, "--json", "--out", tmp_path / "s"))
    double = json.loads(run_stdout("-q", "evaluate", trained, trained, "--json", "--out", tmp_path / "d"))
    for key in ("accuracy", "log_loss", "macro_f1", "balanced_accuracy", "ece"):
        assert double[key] == pytest.approx(single[key], abs=1e-12), key
    assert len(double["members"]) == 2 and double["members"][0]["accuracy"] == pytest.approx(single["accuracy"])
    a = pd.read_csv(tmp_path / "s" / "predictions.csv")
    b = pd.read_csv(tmp_path / "d" / "predictions.csv")
    pd.testing.assert_frame_equal(a, b)


def test_tta_runs(trained, data, tmp_path):
    import torch

    from cvkit.data import load_split
    from cvkit.runtime import load_run

    metrics = json.loads(run_stdout("-q", "evaluate", trained, "--tta", "--json", "--split", "val", "--out", tmp_path / "t"))
    assert metrics["tta"] is True and 0.0 <= metrics["accuracy"] <= 1.0
    assert run_stdout("-q", "evaluate", trained, "--split", "val", "--no-tta", "--out", tmp_path / "p")
    classes = json.loads((trained / "model.json").read_text())["classes"]
    columns = [f"prob_{c}" for c in classes]
    tta = pd.read_csv(tmp_path / "t" / "predictions.csv")
    plain = pd.read_csv(tmp_path / "p" / "predictions.csv")
    assert list(tta["path"]) == list(plain["path"])
    assert np.abs(tta[columns].to_numpy() - plain[columns].to_numpy()).max() > 1e-3  # --tta changed something
    # ... and it is the mean of the plain and the mirrored images' probabilities, through the library
    loaded = load_run(trained, torch.device("cpu"))
    images = load_split(data, "val", loaded.input_size)
    assert list(images.paths) == list(plain["path"])
    mirrored = np.ascontiguousarray(images.images[:, :, ::-1])
    expected = (loaded.predict(images.images)[0] + loaded.predict(mirrored)[0]) / 2
    assert np.allclose(tta[columns].to_numpy(), expected, atol=2e-5)
    assert np.allclose(plain[columns].to_numpy(), loaded.predict(images.images)[0], atol=2e-5)


def test_training_chooses_flip_tta_on_val_and_evaluate_follows(trained, data, tmp_path):
    import shutil

    model_json = json.loads((trained / "model.json").read_text())
    chosen = model_json["tta"]
    assert chosen["metric"] == "val_acc" and chosen["chosen"] in ("flip", "none")
    assert chosen["plain"] == pytest.approx(model_json["val_acc"])  # the best epoch's val figure
    val_tta = json.loads(run_stdout("-q", "evaluate", trained, "--tta", "--json", "--split", "val", "--out", tmp_path / "t"))
    val_plain = json.loads(run_stdout("-q", "evaluate", trained, "--no-tta", "--json", "--split", "val",
                                      "--out", tmp_path / "p"))
    assert chosen["flip"] == pytest.approx(val_tta["accuracy"], abs=1e-6)  # the same weights, scored the same way
    assert chosen["plain"] == pytest.approx(val_plain["accuracy"], abs=1e-6)
    assert (chosen["chosen"] == "flip") == (chosen["flip"] > chosen["plain"])
    # Without --tta/--no-tta, evaluate and predict do what model.json says, and say so
    run_dir = tmp_path / "run"
    shutil.copytree(trained, run_dir)
    for choice, expected in (("flip", val_tta), ("none", val_plain)):
        (run_dir / "model.json").write_text(json.dumps({**model_json, "tta": {**chosen, "chosen": choice}}))
        result = run(CliRunner(), "evaluate", run_dir, "--json", "--split", "val", "--out", tmp_path / f"d_{choice}")
        assert result.exit_code == 0, result.stderr
        metrics = json.loads(result.stdout)
        assert metrics["tta"] is (choice == "flip") and metrics["accuracy"] == pytest.approx(expected["accuracy"])
        assert ("flip TTA" in result.stderr) is (choice == "flip")
        shown = pd.read_csv(tmp_path / f"d_{choice}" / "predictions.csv")
        want = pd.read_csv(tmp_path / ("t" if choice == "flip" else "p") / "predictions.csv")
        pd.testing.assert_frame_equal(shown, want)
        image = want["path"].iloc[0]
        source = data / image if not str(image).startswith("/") else image
        predicted = pd.read_csv(run_stdout("-q", "predict", run_dir, source, "--out", tmp_path / f"q_{choice}").strip())
        forced = "--tta" if choice == "flip" else "--no-tta"
        predicted_forced = pd.read_csv(run_stdout("-q", "predict", run_dir, source, forced,
                                                  "--out", tmp_path / f"f_{choice}").strip())
        pd.testing.assert_frame_equal(predicted, predicted_forced)
