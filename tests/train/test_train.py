"""`cvkit train` through the CLI and the library, on sample_data with tiny runs."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.conftest import FAST, SAMPLE, run, run_ok, run_stdout


def test_train_writes_the_whole_run_directory(trained):
    for name in ("model.safetensors", "model.json", "last.ckpt", "metrics.csv", "config.json", "curves.png"):
        assert (trained / name).is_file(), name
    metrics = pd.read_csv(trained / "metrics.csv")
    assert list(metrics.columns) == ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds",
                                     "images_per_s"]
    assert list(metrics["epoch"]) == [1, 2]
    assert np.isfinite(metrics[["train_loss", "val_loss"]].to_numpy()).all()
    info = json.loads((trained / "model.json").read_text())
    assert info["format"] == 1 and info["arch"] == "smallcnn" and info["in_chans"] == 1
    assert info["input_size"] == [28, 28] and len(info["classes"]) == 10
    assert info["epoch"] == int(metrics["val_acc"].idxmax()) + 1  # the best epoch's weights
    config = json.loads((trained / "config.json").read_text())
    stats = json.loads((Path(config["data"]) / "stats.json").read_text())
    assert info["mean"] == stats["mean"] and info["std"] == stats["std"]
    assert config["epochs"] == 2 and config["resolved"]["precision"] == "fp32"
    assert config["resolved"]["loader_workers"] == 0
    ckpt = torch.load(trained / "last.ckpt", weights_only=True)
    assert ckpt["epoch"] == 2


def test_default_options_probe_precision_and_memory_format(data, tmp_path):
    out = tmp_path / "auto"
    assert run_ok("-q", "train", data, "--out", out, "--epochs", "1")  # --precision auto, --memory-format auto
    resolved = json.loads((out / "config.json").read_text())["resolved"]
    assert resolved["precision"] in ("fp32", "bf16") and resolved["memory_format"] in ("contiguous", "channels_last")
    timed = resolved["speed_probe_ms_per_step"]
    assert {"fp32/contiguous", "fp32/channels_last"} <= set(timed) and all(v > 0 for v in timed.values())
    assert f"{resolved['precision']}/{resolved['memory_format']}" == min(timed, key=timed.get)
    assert run_ok("-q", "evaluate", out)  # the chosen precision is reused for inference
    from cvkit.device import cpu_bf16_flags

    assert (("bf16/channels_last" in timed) == bool(cpu_bf16_flags())) or cpu_bf16_flags() is None


def test_a_cpu_without_bf16_instructions_does_not_time_bf16(data, tmp_path, monkeypatch, runner):
    from cvkit.device import cpu_bf16_flags
    from cvkit.train import speed

    avx2 = tmp_path / "cpuinfo"
    avx2.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n\nprocessor\t: 1\nflags\t\t: avx2\n")
    amx = tmp_path / "cpuinfo_amx"
    amx.write_text("flags\t\t: avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n")
    assert cpu_bf16_flags(str(avx2)) == [] and cpu_bf16_flags(str(amx)) == ["amx_bf16", "avx512_bf16"]
    assert cpu_bf16_flags(str(tmp_path / "missing")) is None
    monkeypatch.setattr(speed, "cpu_bf16_flags", lambda: [])
    cpu = torch.device("cpu")
    assert {p for p, _ in speed.candidates(cpu, "auto", "auto")} == {"fp32"}
    assert {p for p, _ in speed.candidates(cpu, "bf16", "auto")} == {"bf16"}  # asked for: kept
    out = tmp_path / "run"
    result = run(runner, "train", data, "--out", out, "--epochs", "1")
    assert result.exit_code == 0, result.stderr
    assert "bf16 not timed: this CPU has no bf16 instructions" in " ".join(result.stderr.split())
    resolved = json.loads((out / "config.json").read_text())["resolved"]
    assert set(resolved["speed_probe_ms_per_step"]) == {"fp32/contiguous", "fp32/channels_last"}
    assert resolved["speed_probe_skipped"].startswith("bf16 not timed")
    monkeypatch.setattr(speed, "cpu_bf16_flags", lambda: ["avx512_bf16"])
    assert {p for p, _ in speed.candidates(cpu, "auto", "auto")} == {"fp32", "bf16"}


def test_same_seed_same_weights_on_cpu(data, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        assert run_ok("-q", "train", data, "--out", out, "--epochs", "1", *FAST)
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_early_stopping_stops(data, tmp_path):
    from typer.testing import CliRunner

    out = tmp_path / "es"
    # No learning, and a frozen backbone so BatchNorm's running statistics stay put too: val_acc cannot improve.
    result = run(CliRunner(), "train", data, "--out", out, "--epochs", "10", "--patience", "1", "--lr", "1e-12",
                 "--schedule", "none", "--freeze", "backbone", *FAST)
    assert result.exit_code == 0, result.stderr
    assert "Early stop: val_acc has not improved for 1 epochs" in result.stderr
    assert len(pd.read_csv(out / "metrics.csv")) == 2


def two_class_data(data: Path, tmp_path: Path) -> Path:
    src = tmp_path / "two"
    for name in ("trouser", "bag"):
        shutil.copytree(SAMPLE / "fashion" / name, src / name)
    out = tmp_path / "two_ds"
    assert run_ok("-q", "prepare", src, "--out", out, "--size", "28", "--val", "0.25", "--test", "0.25")
    return out


def test_bce_two_classes_has_one_output_and_evaluates(data, tmp_path):
    ds = two_class_data(data, tmp_path)
    out = tmp_path / "bce"
    assert run_ok("-q", "train", ds, "--out", out, "--epochs", "2", "--loss", "bce", *FAST)
    info = json.loads((out / "model.json").read_text())
    assert info["num_outputs"] == 1 and info["loss"] == "bce"
    assert load_file(out / "model.safetensors")["head.fc.weight"].shape[0] == 1  # one sigmoid output
    assert run_ok("-q", "evaluate", out, "--split", "test")
    preds = pd.read_csv(out / "eval_test" / "predictions.csv")
    probs = preds[["prob_bag", "prob_trouser"]].to_numpy()
    assert np.allclose(probs.sum(1), 1.0, atol=1e-5)


def test_mse_loss_trains(data, tmp_path):
    out = tmp_path / "mse"
    assert run_ok("-q", "train", data, "--out", out, "--epochs", "2", "--loss", "mse", *FAST)
    metrics = pd.read_csv(out / "metrics.csv")
    assert np.isfinite(metrics["train_loss"]).all() and metrics["train_loss"].iloc[-1] < 1.0


def test_freeze_backbone_leaves_backbone_weights_unchanged(data, tmp_path):
    from cvkit.models import create_model, head_parameter_names

    model = create_model("smallcnn", 10, 1, (28, 28))
    start = {k: v.clone() for k, v in model.state_dict().items()}
    save_file({k: v.contiguous() for k, v in start.items()}, tmp_path / "init.safetensors")
    head = head_parameter_names(model)
    out = tmp_path / "frozen"
    assert run_ok("-q", "train", data, "--out", out, "--epochs", "2", "--weights", tmp_path / "init.safetensors",
                  "--freeze", "backbone", *FAST)
    trained = load_file(out / "model.safetensors")
    params = dict(model.named_parameters())
    backbone = [k for k in params if k not in head]
    assert backbone and head
    assert all(torch.equal(trained[k], start[k]) for k in backbone)
    assert any(not torch.equal(trained[k], start[k]) for k in head)


class Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


MARKER = Path("/tmp/cvkit-test-pwned")


def test_checkpoint_that_would_run_code_is_refused(trained, tmp_path):
    MARKER.unlink(missing_ok=True)
    evil = tmp_path / "evil"
    shutil.copytree(trained, evil)
    with open(evil / "last.ckpt", "wb") as f:
        pickle.dump({"format": 1, "model": Exploit()}, f)
    from typer.testing import CliRunner

    result = run(CliRunner(), "train", "--resume", evil)
    assert result.exit_code == 2
    assert result.stderr.startswith("Error:") and "refuses" in result.stderr and "Traceback" not in result.stderr
    assert not MARKER.exists()
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"weight": Exploit()}, f)
    data = json.loads((trained / "config.json").read_text())["data"]
    result = run(CliRunner(), "train", data, "--out", tmp_path / "w", "--weights", tmp_path / "evil.pt", *FAST)
    assert result.exit_code == 2 and "Error:" in result.stderr
    assert not MARKER.exists()
    assert not (tmp_path / "w" / "model.safetensors").exists()


def test_diverging_loss_stops_with_an_error(data, tmp_path):
    from typer.testing import CliRunner

    result = run(CliRunner(), "train", data, "--out", tmp_path / "nan", "--epochs", "2", "--lr", "1e30",
                 "--schedule", "none", *FAST)
    assert result.exit_code == 2
    assert "the loss became" in result.stderr and "--lr" in result.stderr


def test_lr_find_writes_plot_and_suggestion(data, tmp_path):
    out = tmp_path / "lrf"
    stdout = run_stdout("train", data, "--out", out, "--lr-find", *FAST)
    assert stdout.strip() == str(out / "lr_find.png")
    assert (out / "lr_find.png").is_file()
    frame = pd.read_csv(out / "lr_find.csv")
    assert len(frame) >= 10 and frame["lr"].is_monotonic_increasing


def test_arch_errors(data, tmp_path):
    from typer.testing import CliRunner

    result = run(CliRunner(), "train", data, "--arch", "resnt18", "--out", tmp_path / "x")
    assert result.exit_code == 2 and "Did you mean resnet18" in result.stderr
    result = run(CliRunner(), "train", data, "--arch", "vgg11", "--out", tmp_path / "y", *FAST)
    assert result.exit_code == 2 and "at least 32x32" in result.stderr and "--size" in result.stderr
    assert not (tmp_path / "y" / "model.safetensors").exists()


@pytest.mark.parametrize("arch", ["perceptron", "mlp", "lenet5", "nin"])
def test_classic_nets_train_through_the_cli(data, tmp_path, arch):
    out = tmp_path / arch
    assert run_ok("-q", "train", data, "--arch", arch, "--out", out, "--epochs", "1", *FAST)
    assert run_ok("-q", "evaluate", out)


def test_a_budget_ends_in_time_with_a_complete_run(data, tmp_path, runner):
    import time

    out = tmp_path / "budget"
    started = time.perf_counter()
    result = run(runner, "train", data, "--budget", "15s", "--out", out, *FAST)
    took = time.perf_counter() - started
    assert result.exit_code == 0, result.stderr
    assert took <= 15 + 1.5, took
    for name in ("model.safetensors", "model.json", "last.ckpt", "metrics.csv", "config.json", "curves.png"):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    metrics = pd.read_csv(out / "metrics.csv")
    # How many epochs fit depends on how busy the machine is; the plan must match what ran.
    assert config["budget"] == "15s" and config["resolved"]["epochs"] == len(metrics) >= 1
    assert config["resolved"]["budget"]["first_plan"].startswith("--budget 15 s:")
    assert "--budget 15 s:" in " ".join(result.stderr.split())  # the plan is printed
    assert metrics["lr"].iloc[-1] < 0.05 * metrics["lr"].max()  # the schedule annealed within the budget
    # The net was left open and the budget fits many epochs of the tiny set: the wider net, timed and said
    wider = config["resolved"]["budget"]["wider_net"]
    assert wider["options"] == {"base": 32} and wider["epochs"] >= wider["needs_epochs"] and wider["step_ratio"] > 0
    assert json.loads((out / "model.json").read_text())["arch_options"]["base"] == 32
    assert "--budget: smallcnn --base 32" in " ".join(result.stderr.split())


def test_budget_errors_and_a_budget_shorter_than_an_epoch(data, tmp_path, runner):
    for args, named in ((["--budget", "ten minutes"], "--budget"), (["--budget", "0s"], "--budget"),
                        (["--budget", "1m", "--epochs", "3"], "--epochs")):
        result = run(runner, "train", data, "--out", tmp_path / "x", *args, *FAST)
        assert result.exit_code == 2 and named in result.stderr and "Traceback" not in result.stderr
        assert not (tmp_path / "x").exists()
    result = run(runner, "train", data, "--out", tmp_path / "short", "--budget", "0.1s", *FAST)
    assert result.exit_code == 0 and "runs over" in " ".join(result.stderr.split())
    assert len(pd.read_csv(tmp_path / "short" / "metrics.csv")) == 1
    # too short for enough epochs of the wider net: the default stays
    assert json.loads((tmp_path / "short" / "config.json").read_text())["resolved"]["budget"]["wider_net"] is None
    assert json.loads((tmp_path / "short" / "model.json").read_text())["arch_options"]["base"] == 16


def test_smallcnn_base_and_depth_through_the_cli(data, tmp_path):
    out = tmp_path / "narrow"
    assert run_ok("-q", "train", data, "--out", out, "--epochs", "1", *FAST, "--base", "8", "--depth", "3")
    info = json.loads((out / "model.json").read_text())
    assert info["arch_options"]["base"] == 8 and info["arch_options"]["depth"] == 3
    weights = load_file(out / "model.safetensors")
    convs = sorted((k, v.shape[0]) for k, v in weights.items() if v.ndim == 4)
    assert [c for _, c in convs] == [8, 8, 16, 16, 32, 32]  # stages of 8, 16, 32 channels, two convs each
    assert json.loads(run_stdout("-q", "evaluate", out, "--json"))["count"] > 0  # rebuilt from model.json


def test_a_smallcnn_run_saved_before_base_and_depth_loads_as_the_32_64_net(data, tmp_path):
    out = tmp_path / "old"
    assert run_ok("-q", "train", data, "--out", out, "--epochs", "1", *FAST, "--base", "32", "--depth", "2")
    now = json.loads(run_stdout("-q", "evaluate", out, "--json", "--out", tmp_path / "now"))
    info = json.loads((out / "model.json").read_text())
    info["arch_options"] = {k: v for k, v in info["arch_options"].items() if k not in ("base", "depth")}
    (out / "model.json").write_text(json.dumps(info))  # as cvkit wrote it before these options
    before = json.loads(run_stdout("-q", "evaluate", out, "--json", "--out", tmp_path / "before"))
    assert before["accuracy"] == now["accuracy"] and before["log_loss"] == now["log_loss"]
