"""Ranking configurations, the refit's epochs, and Ctrl-C in the middle of a cross-validation."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from typer.testing import CliRunner

from cvkit.crossval.summary import choose_best, summarize_results
from cvkit.files.crossval import CrossvalPlan
from tests.conftest import FAST, run


def plan(monitor: str) -> CrossvalPlan:
    configs = [{"name": f"c{i}", "options": {"lr": lr}} for i, lr in enumerate((0.1, 0.2, 0.3))]
    return CrossvalPlan("d", "kfold", 2, 0, {"lr": [0.1, 0.2, 0.3]}, configs, {"monitor": monitor}, "key")


def results() -> pd.DataFrame:
    rows = [("c0", 0, 0.5, 1.0, 1), ("c0", 1, 0.7, 0.8, 2),   # acc 0.6 +- 0.14, loss 0.9
            ("c1", 0, 0.6, 0.5, 3), ("c1", 1, 0.6, 0.7, 4),   # acc 0.6 +- 0,    loss 0.6
            ("c2", 0, 0.4, 0.4, 2), ("c2", 1, 0.5, 0.6, 2)]   # acc 0.45,        loss 0.5
    return pd.DataFrame([{"config": c, "lr": None, "fold": f, "val_acc": a, "val_loss": v, "best_epoch": e,
                          "epochs": 4, "seconds": 1.0} for c, f, a, v, e in rows])


def test_val_acc_ranks_highest_first_and_ties_go_to_the_smaller_spread():
    summary = summarize_results(results(), plan("val_acc"))
    assert summary["config"].tolist() == ["c1", "c0", "c2"] and summary["rank"].tolist() == [1, 2, 3]
    assert summary["lr"].tolist() == [0.2, 0.1, 0.3]
    assert summary["val_acc_std"][1] == pytest.approx(math.sqrt(0.02))  # sample standard deviation
    best = choose_best(summary, results(), plan("val_acc"))
    assert (best.config, best.options, best.best_epochs, best.refit_epochs) == ("c1", {"lr": 0.2}, [3, 4], 4)
    assert best.mean == pytest.approx(0.6) and best.std == 0.0  # 3.5 epochs round up


def test_val_loss_ranks_lowest_first():
    summary = summarize_results(results(), plan("val_loss"))
    assert summary["config"].tolist() == ["c2", "c1", "c0"]
    assert choose_best(summary, results(), plan("val_loss")).refit_epochs == 2


def test_ctrl_c_keeps_the_finished_folds(data, tmp_path, monkeypatch):
    import cvkit.train
    from cvkit.errors import Interrupted

    real, calls = cvkit.train.fit, []

    def fit(cfg, **kwargs):
        calls.append(cfg.out)
        if len(calls) == 2:
            raise Interrupted("interrupted in epoch 1 of 1; continue with 'cvkit train --resume ...'")
        return real(cfg, **kwargs)

    monkeypatch.setattr(cvkit.train, "fit", fit)
    out = tmp_path / "cv"
    args = ["crossval", data, "--arch", "mlp", "--epochs", "1", *FAST, "--folds", "2", "--out", out]
    result = run(CliRunner(), *args)
    assert result.exit_code == 130
    assert result.stderr.strip().splitlines()[-1] == ("Interrupted: interrupted in default, fold 1; 1 finished fold "
                                                      "run(s) are kept: rerun the same command to go on")
    monkeypatch.setattr(cvkit.train, "fit", real)
    result = run(CliRunner(), *args, "--no-refit")
    assert result.exit_code == 0, result.stderr
    assert "[1/2] default, fold 0: finished before, skipped" in result.stderr
    assert (out / "best.json").is_file() and not (out / "final").exists()


def test_plan_differences_are_named_as_on_the_command_line():
    a, b = plan("val_acc"), plan("val_acc")
    assert a.differences(b) == []
    b.k, b.rows_key, b.refit, b.cvkit_version = 5, "other", False, "9"
    b.grid, b.configs = {"lr": [0.1]}, b.configs[:1]
    b.base = {"monitor": "val_acc", "label_smoothing": 0.1}
    assert a.differences(b) == ["number of folds", "--grid", "train+val images in DATA", "--label-smoothing"]
