"""`cvkit crossval` end to end on sample_data with tiny mlp runs: fold runs, tables, refit, reruns, --fold."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from tests.conftest import FAST, run, run_ok

CV = ["--arch", "mlp", "--epochs", "2", *FAST, "--folds", "3", "--grid", "lr=0.001,0.01"]
CONFIGS = ("lr=0.001", "lr=0.01")


@pytest.fixture(scope="module")
def cv(data, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("cv") / "out"
    result = run(CliRunner(), "crossval", data, *CV, "--out", out, "--json")
    assert result.exit_code == 0, result.stderr
    return out, json.loads(result.stdout)


def test_every_configuration_is_trained_on_every_fold(cv, data):
    out, printed = cv
    assert sorted(p.name for p in (out / "folds").iterdir()) == sorted(CONFIGS)
    for config in CONFIGS:
        runs = sorted((out / "folds" / config).iterdir())
        assert [r.name for r in runs] == ["0", "1", "2"]
        for r in runs:
            for name in ("model.safetensors", "model.json", "metrics.csv", "config.json", "last.ckpt"):
                assert (r / name).is_file(), (r, name)
    assert printed["trained"] == 6 and printed["skipped"] == 0 and printed["missing"] == []
    plan = json.loads((out / "crossval.json").read_text())
    assert plan["format"] == 1 and plan["folds"] == "kfold" and plan["k"] == 3 and plan["seed"] == 0
    assert plan["grid"] == {"lr": [0.001, 0.01]} and plan["base"]["arch"] == "mlp" and plan["base"]["epochs"] == 2
    assert [c["name"] for c in plan["configs"]] == list(CONFIGS)
    assert "budget" not in plan["base"] and plan["data"] == str(data.resolve())


def test_folds_are_stratified_over_train_and_val_only(cv, data):
    out, _ = cv
    folds = pd.read_csv(out / "folds.csv")
    manifest = pd.read_csv(data / "manifest.csv")
    assert list(folds.columns) == ["row", "path", "label", "split", "fold", "augmented_from"]
    assert sorted(folds["row"]) == sorted(np.flatnonzero(manifest["split"].isin(["train", "val"])))
    assert set(folds["split"]) == {"train", "val"} and sorted(set(folds["fold"])) == [0, 1, 2]
    per_class = folds.groupby(["label", "fold"]).size().unstack()
    assert (per_class.max(axis=1) - per_class.min(axis=1)).max() <= 1
    config = json.loads((out / "folds" / "lr=0.01" / "1" / "config.json").read_text())
    val_rows = config["resolved"]["selections"]["val"]["rows"]
    assert sorted(val_rows) == sorted(folds.loc[folds["fold"] == 1, "row"])
    assert (data / "manifest.csv").read_text() == manifest.to_csv(index=False, lineterminator="\n")


def test_results_and_summary_hold_each_fold_and_mean_std(cv):
    out, printed = cv
    results = pd.read_csv(out / "results.csv")
    assert list(results.columns) == ["config", "lr", "fold", "val_acc", "val_loss", "best_epoch", "epochs", "seconds"]
    assert len(results) == 6 and set(results["epochs"]) == {2}
    run_dir = out / "folds" / "lr=0.001" / "2"
    model = json.loads((run_dir / "model.json").read_text())
    row = results[(results["config"] == "lr=0.001") & (results["fold"] == 2)].iloc[0]
    assert row["val_acc"] == pytest.approx(model["val_acc"]) and row["best_epoch"] == model["epoch"]
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary.columns[:3]) == ["rank", "config", "lr"] and list(summary["rank"]) == [1, 2]
    for _, s in summary.iterrows():
        acc = results.loc[results["config"] == s["config"], "val_acc"].to_numpy()
        assert s["folds"] == 3
        assert s["val_acc_mean"] == pytest.approx(acc.mean()) and s["val_acc_std"] == pytest.approx(acc.std(ddof=1))
    assert summary["val_acc_mean"].is_monotonic_decreasing  # best first
    assert (out / "crossval.png").stat().st_size > 1000
    best = json.loads((out / "best.json").read_text())
    assert best["config"] == summary["config"][0] == printed["best"]["config"]
    assert best["mean"] == pytest.approx(summary["val_acc_mean"][0])


def test_the_refit_trains_on_train_and_val_for_the_mean_best_epoch(cv, data):
    out, printed = cv
    best = json.loads((out / "best.json").read_text())
    results = pd.read_csv(out / "results.csv")
    epochs = results.loc[results["config"] == best["config"], "best_epoch"]
    assert best["best_epochs"] == list(epochs) and best["refit_epochs"] == int(np.floor(epochs.mean() + 0.5))
    final = out / "final"
    assert printed["final"] == str(final) and best["final"] == "final"
    config = json.loads((final / "config.json").read_text())
    assert config["epochs"] == best["refit_epochs"] and config["lr"] == best["options"]["lr"]
    assert config["patience"] is None and config["out"] == str(final)
    assert config["resolved"]["selections"] == {"train": {"splits": ["train", "val"], "fold": None,
                                                          "in_fold": False, "rows": None}, "val": None}
    assert len(pd.read_csv(final / "metrics.csv")) == best["refit_epochs"]
    result = run(CliRunner(), "evaluate", final, "--split", "test", "--out", out.parent / "eval")
    assert result.exit_code == 0, result.stderr
    assert json.loads((out.parent / "eval" / "metrics.json").read_text())["count"] == 40


def test_each_fold_normalizes_with_its_own_training_images(cv, data):
    from cvkit.data.selection import Selection, load_selection
    from cvkit.transforms.stats import image_stats

    out, _ = cv
    stats = json.loads((data / "stats.json").read_text())
    folds = pd.read_csv(out / "folds.csv")
    means = set()
    for i in range(3):
        model = json.loads((out / "folds" / "lr=0.01" / str(i) / "model.json").read_text())
        assert model["mean"] != stats["mean"] and model["std"] != stats["std"]
        images = load_selection(data, Selection.of_rows(folds.loc[folds["fold"] != i, "row"].tolist())).images
        mean, std, _ = image_stats(images, False)
        assert np.allclose(model["mean"], mean) and np.allclose(model["std"], std)
        means.add(tuple(model["mean"]))
    assert len(means) == 3
    final = json.loads((out / "final" / "model.json").read_text())
    assert final["mean"] != stats["mean"]  # the refit's train+val, not the train split's stats.json


def test_folds_trained_one_by_one_then_summarized_match_the_full_run(cv, data, tmp_path):
    full, _ = cv
    out = tmp_path / "parts"
    for i in range(3):
        result = run(CliRunner(), "crossval", data, *CV, "--out", out, "--fold", i)
        assert result.exit_code == 0, result.stderr
        assert result.stdout.strip() == str(out)
        assert not (out / "results.csv").exists() and not (out / "final").exists()
    assert "When every fold is done: cvkit crossval summarize" in " ".join(result.stderr.split())
    result = run(CliRunner(), "crossval", "summarize", out, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["best"]["config"] == json.loads((full / "best.json").read_text())["config"]
    a, b = pd.read_csv(full / "summary.csv"), pd.read_csv(out / "summary.csv")
    columns = ["rank", "config", "lr", "folds", "val_acc_mean", "val_acc_std", "val_loss_mean", "val_loss_std",
               "best_epoch_mean"]
    pd.testing.assert_frame_equal(a[columns], b[columns])
    wa, wb = load_file(full / "final" / "model.safetensors"), load_file(out / "final" / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)  # same seed on the CPU: the same refit


def test_a_rerun_skips_finished_folds_and_trains_the_missing_one(cv, data, tmp_path):
    out = tmp_path / "again"
    shutil.copytree(cv[0], out)
    weights = sorted(out.glob("folds/*/*/model.safetensors"))
    before = {p: p.stat().st_mtime_ns for p in [*weights, out / "final" / "model.safetensors"]}
    shutil.rmtree(out / "folds" / "lr=0.01" / "1")
    result = run(CliRunner(), "crossval", data, *CV, "--out", out, "--json")
    assert result.exit_code == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["trained"] == 1 and printed["skipped"] == 5
    assert result.stderr.count("finished before, skipped") == 5
    assert "lr=0.01 was refit before, kept" in result.stderr
    redone = out / "folds" / "lr=0.01" / "1" / "model.safetensors"
    assert all(p.stat().st_mtime_ns == t for p, t in before.items() if p != redone)
    assert pd.read_csv(out / "summary.csv").equals(pd.read_csv(cv[0] / "summary.csv").assign(
        seconds=pd.read_csv(out / "summary.csv")["seconds"]))


def test_another_plan_is_refused_unless_force(cv, data, tmp_path):
    out = tmp_path / "other"
    shutil.copytree(cv[0], out)
    result = run(CliRunner(), "crossval", data, *CV, "--folds", "2", "--out", out)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: --out {out} holds a crossval with another plan (different number of "
                                    f"folds); rerun with the same options to continue it, pass --force"), result.stderr
    result = run(CliRunner(), "crossval", data, *CV, "--out", out, "--label-smoothing", "0.1")
    assert result.exit_code == 2 and "(different --label-smoothing)" in result.stderr
    assert run_ok("-q", "crossval", data, *CV, "--folds", "2", "--out", out, "--fold", "0", "--force")
    assert sorted(p.name for p in (out / "folds" / "lr=0.01").iterdir()) == ["0"]
    assert not (out / "results.csv").exists() and json.loads((out / "crossval.json").read_text())["k"] == 2
    config = json.loads((out / "folds" / "lr=0.01" / "0" / "config.json").read_text())
    assert config["out"] == str(out / "folds" / "lr=0.01" / "0")  # not the staging folder it was built in
    assert [p.name for p in tmp_path.iterdir()] == ["other"]


def test_summarize_takes_no_train_options_and_needs_a_crossval_folder(cv, tmp_path):
    result = run(CliRunner(), "crossval", "summarize", cv[0], "--lr", "0.1", "--folds", "2")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: 'crossval summarize' uses the options in {cv[0]}/crossval.json; drop "
                                    f"--folds, --lr")
    result = run(CliRunner(), "-q", "crossval", "summarize", cv[0], "--no-refit")
    assert result.exit_code == 0 and result.stdout == f"{cv[0]}\n" and result.stderr == ""
    result = run(CliRunner(), "crossval", "summarize", tmp_path)
    assert result.exit_code == 2 and result.stderr.startswith(f"Error: {tmp_path}/crossval.json is missing")
    result = run(CliRunner(), "crossval", "summarize")
    assert result.exit_code == 2 and "cvkit crossval summarize OUT" in result.stderr
