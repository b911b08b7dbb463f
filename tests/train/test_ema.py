"""``train --ema``: the moving average of the weights is what is validated, saved and resumed."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from typer.testing import CliRunner

from tests.conftest import FAST, run, run_ok, run_stdout

EMA_RUN = ["--epochs", "3", *FAST, "--seed", "1"]


def test_the_average_moves_with_timms_warm_up():
    from cvkit.train.ema import WeightAverage, warmed_decay

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    average = WeightAverage(model, 0.999)
    start = {k: v.clone() for k, v in average.model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    model.train()(torch.randn(8, 3))  # BatchNorm's running statistics and its step counter move too
    average.update(model)
    d = warmed_decay(0.999, 1)
    assert d == pytest.approx(2 / 11)  # not 0.999: the first steps follow the weights closely
    live = model.state_dict()
    for name, value in average.model.state_dict().items():
        if value.is_floating_point():
            assert torch.allclose(value, d * start[name] + (1 - d) * live[name]), name
        else:
            assert torch.equal(value, live[name]), name
    assert warmed_decay(0.999, 10_000) == 0.999
    assert not any(p.requires_grad for p in average.model.parameters())


def test_ema_validates_and_saves_the_average_and_lists_the_live_weights(data, tmp_path):
    run_dir = tmp_path / "ema"
    assert run_ok("-q", "train", data, "--out", run_dir, *EMA_RUN, "--ema", "0.9")
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert {"live_val_loss", "live_val_acc"} <= set(metrics.columns)
    assert (metrics["val_loss"] != metrics["live_val_loss"]).all()  # two sets of weights were scored
    ckpt = torch.load(run_dir / "last.ckpt", weights_only=True)
    assert ckpt["ema"]["updates"] == ckpt["scheduler"]["last_epoch"] > 0  # one update per optimizer step
    saved = load_file(run_dir / "model.safetensors")
    best = json.loads((run_dir / "model.json").read_text())["epoch"]
    if best == 3:  # the last epoch was kept: its weights are the average, not the trained model's
        assert all(torch.equal(saved[k], ckpt["ema"]["model"][k].cpu()) for k in saved)
    assert any(not torch.equal(saved[k], ckpt["model"][k].cpu()) for k in saved if saved[k].is_floating_point())
    # what evaluate scores from model.safetensors is what training recorded for the best epoch
    scored = json.loads(run_stdout("-q", "evaluate", run_dir, "--split", "val", "--no-tta", "--json",
                                   "--out", tmp_path / "eval"))
    assert scored["accuracy"] == pytest.approx(metrics.loc[best - 1, "val_acc"], abs=1e-6)


def test_without_ema_the_saved_weights_are_the_trained_ones(data, tmp_path):
    run_dir = tmp_path / "plain"
    assert run_ok("-q", "train", data, "--out", run_dir, *EMA_RUN)
    assert "live_val_acc" not in pd.read_csv(run_dir / "metrics.csv").columns
    ckpt = torch.load(run_dir / "last.ckpt", weights_only=True)
    assert ckpt["ema"] is None
    if json.loads((run_dir / "model.json").read_text())["epoch"] == 3:
        saved = load_file(run_dir / "model.safetensors")
        assert all(torch.equal(saved[k], ckpt["model"][k].cpu()) for k in saved)


def test_an_interrupted_ema_run_resumes_its_average(data, tmp_path):
    from cvkit.errors import Interrupted
    from cvkit.train import TrainConfig, fit

    whole, part = tmp_path / "whole", tmp_path / "part"
    assert run_ok("-q", "train", data, "--out", whole, *EMA_RUN, "--ema", "0.9")

    def interrupt(epoch, row):
        if epoch == 1:
            raise KeyboardInterrupt

    cfg = TrainConfig(data=str(data), out=str(part), epochs=3, precision="fp32", memory_format="contiguous",
                      batch_size=32, seed=1, ema=0.9)
    with pytest.raises(Interrupted):
        fit(cfg, callbacks=(interrupt,))
    assert run_ok("-q", "train", "--resume", part)
    a, b = (torch.load(r / "last.ckpt", weights_only=True)["ema"] for r in (whole, part))
    assert a["updates"] == b["updates"]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    times = ["seconds", "images_per_s"]
    assert pd.read_csv(whole / "metrics.csv").drop(columns=times).equals(
        pd.read_csv(part / "metrics.csv").drop(columns=times))


@pytest.mark.parametrize("value", ["0", "1", "1.5", "-0.2", "nan"])
def test_ema_out_of_range_is_refused_in_one_line(data, tmp_path, value):
    result = run(CliRunner(), "train", data, "--out", tmp_path / "r", "--epochs", "1", "--ema", value)
    assert result.exit_code == 2
    assert "--ema" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()
