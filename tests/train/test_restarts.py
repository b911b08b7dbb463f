"""``train --restarts N``: N seeds, the best on val kept."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from tests.conftest import FAST, run, run_ok

QUICK = ["--epochs", "1", *FAST]


def test_restarts_keep_the_seed_with_the_best_val_figure(data, tmp_path):
    out = tmp_path / "best"
    assert run_ok("-q", "train", data, "--out", out, *QUICK, "--seed", "5", "--restarts", "3")
    table = pd.read_csv(out / "restarts.csv")
    assert table["seed"].tolist() == [5, 6, 7]
    assert table["kept"].sum() == 1
    kept = table.loc[table["kept"]].iloc[0]
    assert kept["best"] == table["best"].max()  # val_acc: higher wins (the first of equals)
    assert kept["best"] == table.loc[table["best"] == table["best"].max()].iloc[0]["best"]
    config = json.loads((out / "config.json").read_text())
    assert config["seed"] == kept["seed"] and config["restarts"] == 3
    assert [r["seed"] for r in config["resolved"]["restarts"]] == [5, 6, 7]
    # the kept run is that seed's own run: the same weights as training that seed alone
    alone = tmp_path / "alone"
    assert run_ok("-q", "train", data, "--out", alone, *QUICK, "--seed", str(int(kept["seed"])))
    a, b = load_file(out / "model.safetensors"), load_file(alone / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    metrics = pd.read_csv(out / "metrics.csv")
    assert metrics["val_acc"].max() == pytest.approx(kept["best"], abs=1e-6)
    # nothing else is left beside the run, and the run can be scored and replaced like any other
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alone", "best"]
    assert run_ok("-q", "evaluate", out, "--split", "val")
    assert run_ok("-q", "train", data, "--out", out, *QUICK, "--restarts", "2", "--force")
    assert len(pd.read_csv(out / "restarts.csv")) == 2


def test_val_loss_as_monitor_keeps_the_lowest(data, tmp_path):
    out = tmp_path / "r"
    assert run_ok("-q", "train", data, "--out", out, *QUICK, "--restarts", "2", "--monitor", "val_loss")
    table = pd.read_csv(out / "restarts.csv")
    assert table.loc[table["kept"], "best"].iloc[0] == table["best"].min()


@pytest.mark.parametrize(("args", "message"), [
    (["--restarts", "0"], "--restarts 0 must be at least 1"),
])
def test_bad_restarts_are_refused_in_one_line(data, tmp_path, args, message):
    result = run(CliRunner(), "train", data, "--out", tmp_path / "r", "--epochs", "1", *args)
    assert result.exit_code == 2, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_restarts_need_a_val_split(tmp_path):
    from tests.conftest import SAMPLE

    data = tmp_path / "noval"
    assert run_ok("-q", "prepare", SAMPLE / "fashion", "--out", data, "--size", "28", "--val", "0", "--test", "0.2")
    result = run(CliRunner(), "train", data, "--out", tmp_path / "r", *QUICK, "--restarts", "2")
    assert result.exit_code == 2 and "there is no val split to pick it on" in result.stderr
    assert not (tmp_path / "r").exists()


def test_an_existing_run_is_kept_without_force(data, trained, tmp_path):
    result = run(CliRunner(), "train", data, "--out", trained, *QUICK, "--restarts", "2")
    assert result.exit_code == 2 and "pass --force" in result.stderr


def test_a_budget_is_shared_among_the_restarts(data, tmp_path):
    out = tmp_path / "r"
    assert run_ok("-q", "train", data, "--out", out, *FAST, "--budget", "8s", "--restarts", "2")
    config = json.loads((out / "config.json").read_text())
    assert config["budget"] == "8s"
    # each restart is planned for its share of what is left (the first for half), never the whole
    assert config["resolved"]["budget"]["seconds"] < 8
    assert len(config["resolved"]["restarts"]) == 2
