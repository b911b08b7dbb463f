"""Crashes and failures during training, each in a real subprocess on the CPU with a tiny model.

A fault is injected by ``wrapper.py`` (a sleep per step so that a kill lands inside an epoch, a
checkpoint write that stops half-way, a NaN loss at a chosen step) or by the operating system
(``kill -9``, a file-size limit).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import load_file

from tests.conftest import FAST, REPO, leftovers, run, run_with_file_limit

WRAPPER = Path(__file__).with_name("wrapper.py")
ENV = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
# 120 train images in batches of 32: 3 steps an epoch; --seed fixed, fp32 contiguous: bit-repeatable on the CPU
TRAIN = ["--epochs", "6", *FAST, "--seed", "3"]


def start(mode: str, arg: str, *cvkit_args: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(WRAPPER), mode, arg, "--", "-q", *map(str, cvkit_args)], cwd=REPO,
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the run ended first: {proc.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def epochs_done(run_dir: Path) -> int:
    try:
        return len(pd.read_csv(run_dir / "metrics.csv"))
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return 0


def kill_in_epoch(data: Path, out: Path, epoch: int) -> None:
    """Train with a slow step and kill -9 once ``epoch - 1`` epochs are saved (so inside ``epoch``)."""
    proc = start("slow", "0.05", "train", data, "--out", out, *TRAIN)
    wait_for(lambda: epochs_done(out) >= epoch - 1, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert epochs_done(out) == epoch - 1


def test_kill_9_in_an_epoch_then_resume_equals_an_uninterrupted_run(data, tmp_path, runner):
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert run(runner, "-q", "train", data, "--out", whole, *TRAIN).exit_code == 0
    kill_in_epoch(data, part, 3)
    assert torch.load(part / "last.ckpt", weights_only=True)["epoch"] == 2
    assert run(runner, "-q", "train", "--resume", part).exit_code == 0
    assert list(pd.read_csv(part / "metrics.csv")["epoch"]) == [1, 2, 3, 4, 5, 6]  # none repeated or skipped
    for name, tensor in load_file(whole / "model.safetensors").items():
        assert torch.equal(tensor, load_file(part / "model.safetensors")[name]), name
    a, b = (torch.load(r / "last.ckpt", weights_only=True)["model"] for r in (whole, part))
    assert all(torch.equal(a[k], b[k]) for k in a)
    times = ["seconds", "images_per_s"]
    assert pd.read_csv(whole / "metrics.csv").drop(columns=times).equals(pd.read_csv(part / "metrics.csv").drop(columns=times))


def test_kill_9_while_the_checkpoint_is_written(data, tmp_path, runner):
    out = tmp_path / "run"
    proc = start("hang-in-checkpoint", "2", "train", data, "--out", out, *TRAIN)
    wait_for(lambda: (tmp_path / "writing").exists(), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    temporary = [p.name for p in out.iterdir() if p.name.startswith(".last.ckpt.")]
    assert len(temporary) == 1  # the half-written file, beside the intact checkpoint
    assert torch.load(out / "last.ckpt", weights_only=True)["epoch"] == 1
    result = run(runner, "train", "--resume", out)
    assert result.exit_code == 0, result.stderr
    assert "Removed 1 temporary file" in result.stderr
    assert leftovers(out) == [] and not (out / temporary[0]).exists()
    assert list(pd.read_csv(out / "metrics.csv")["epoch"]) == [1, 2, 3, 4, 5, 6]


def test_disk_full_keeps_the_previous_checkpoint(data, tmp_path):
    out = tmp_path / "run"
    kill_in_epoch(data, out, 2)
    before = (out / "last.ckpt").read_bytes()
    limit = (out / "model.safetensors").stat().st_size + 4096  # room for the weights, not the checkpoint
    assert len(before) > limit
    proc = run_with_file_limit(limit, "-q", "train", "--resume", out)
    assert proc.returncode == 2, proc.stderr
    assert "disk is full" in proc.stderr and "last.ckpt" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert (out / "last.ckpt").read_bytes() == before
    assert torch.load(out / "last.ckpt", weights_only=True)["epoch"] == 1
    assert leftovers(out) == []


def test_a_nan_loss_stops_within_the_step_and_keeps_the_last_good_files(data, tmp_path):
    out = tmp_path / "run"
    proc = start("nan-at", "5", "train", data, "--out", out, *TRAIN)  # epoch 2, its 2nd step
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    assert re.search(r"the loss became nan at epoch 2, step 2; lower --lr", err) and "Traceback" not in err
    for name in ("model.safetensors", "last.ckpt", "metrics.csv"):
        assert (out / name).read_bytes() == (tmp_path / "snapshot" / name).read_bytes(), name
    assert torch.load(out / "last.ckpt", weights_only=True)["epoch"] == 1


def test_same_seed_same_metrics_and_weights(data, tmp_path, runner):
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        assert run(runner, "-q", "train", data, "--out", out, "--epochs", "2", *FAST, "--seed", "5").exit_code == 0
    times = ["seconds", "images_per_s"]
    assert pd.read_csv(a / "metrics.csv").drop(columns=times).equals(pd.read_csv(b / "metrics.csv").drop(columns=times))
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()


def test_no_code_path_unpickles_with_weights_only_false():
    """Every torch.load in cvkit passes weights_only=True: loading a file never runs its code."""
    offenders = []
    for path in (REPO / "cvkit").rglob("*.py"):
        text = path.read_text()
        if "weights_only=False" in text:
            offenders.append(f"{path}: weights_only=False")
        for call in re.finditer(r"torch\.load\((?:[^()]|\([^()]*\))*\)", text):
            if "weights_only=True" not in call.group(0):
                offenders.append(f"{path}: {call.group(0)}")
        if re.search(r"\bpickle\.loads?\(", text):
            offenders.append(f"{path}: pickle.load")
        # TorchScript archives run code when loaded: only export's check of the file it has just written loads one
        if "jit.load(" in text and path.relative_to(REPO).as_posix() != "cvkit/export/command.py":
            offenders.append(f"{path}: torch.jit.load")
    assert offenders == []


def test_a_second_writer_is_refused_while_a_run_is_written_and_a_killed_run_blocks_nobody(data, tmp_path, runner):
    """Issue 19.3: two trains into one --out both succeeded, one silently replacing the other."""
    out = tmp_path / "run"
    proc = start("slow", "0.05", "train", data, "--out", out, *TRAIN)
    wait_for(lambda: epochs_done(out) >= 1, proc)
    lock = tmp_path / ".run.lock"
    assert lock.is_file()
    for args in (["train", data, "--out", out, *TRAIN], ["train", data, "--out", out, *TRAIN, "--force"],
                 ["train", "--resume", out]):
        result = run(runner, *args)
        assert result.exit_code == 2, (args, result.stderr)
        assert f"is being written by another cvkit process (pid {proc.pid} on " in result.stderr, result.stderr
        assert f"-q train {data} --out {out}" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = epochs_done(out)
    assert lock.is_file()  # left by kill -9: the kernel released its flock, so it blocks nobody
    result = run(runner, "-q", "train", "--resume", out)
    assert result.exit_code == 0, result.stderr
    assert list(pd.read_csv(out / "metrics.csv")["epoch"]) == list(range(1, 7)) and done >= 1
    assert not lock.exists()  # released and removed when the command ended


def test_weights_that_become_nan_without_a_nan_loss_are_never_kept(data, tmp_path):
    """Issue 19.4: an optimizer step after the last finite loss left NaN weights, saved as the best epoch."""
    out = tmp_path / "run"
    proc = start("nan-weights-at", "6", "train", data, "--out", out, *TRAIN)  # epoch 2's last step
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    assert re.search(r"the weights became NaN or infinite in epoch 2 \([0-9,]+ values\); lower --lr", err), err
    assert "Traceback" not in err
    assert "--precision fp32" not in err  # it was fp32 already
    for name in ("model.safetensors", "last.ckpt", "metrics.csv"):
        assert (out / name).read_bytes() == (tmp_path / "snapshot" / name).read_bytes(), name
    assert all(torch.isfinite(t).all() for t in load_file(out / "model.safetensors").values())
    assert torch.load(out / "last.ckpt", weights_only=True)["epoch"] == 1
