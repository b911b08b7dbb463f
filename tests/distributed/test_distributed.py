"""Training under torchrun: 2 processes on the CPU with Gloo, the way a user scales out.

The torchrun tests are real subprocesses (``python -m torch.distributed.run --standalone``); each
costs about 15 s on 2 cores, so there are two of them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cvkit.data.batches import Batches
from cvkit.errors import OptionError
from cvkit.train.distributed import World, check_sync_bn
from tests.conftest import REPO, run

FIXED = ("--precision", "fp32", "--memory-format", "contiguous")


def torchrun(*args: object, script: Path | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1"}
    target = [str(script)] if script else ["-m", "cvkit"]
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           *target, *map(str, args)], capture_output=True, text=True, cwd=cwd or REPO, env=env,
                          timeout=300)


def test_two_processes_write_the_run_one_process_writes(data, tmp_path, runner):
    one, two = tmp_path / "one", tmp_path / "two"
    assert run(runner, "-q", "train", data, "--out", one, "--epochs", "3", "--batch-size", "32", *FIXED).exit_code == 0
    done = torchrun("-q", "train", data, "--out", two, "--epochs", "3", "--batch-size", "32", *FIXED)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    assert done.stdout.split() == [str(two)]  # rank 0 alone prints the result
    metrics = pd.read_csv(two / "metrics.csv")
    assert list(metrics["epoch"]) == [1, 2, 3]
    assert metrics["train_loss"].iloc[-1] < metrics["train_loss"].iloc[0]
    resolved = json.loads((two / "config.json").read_text())["resolved"]
    assert (resolved["world_size"], resolved["global_batch_size"], resolved["batch_size_per_process"]) == (2, 32, 16)
    single = json.loads((one / "config.json").read_text())["resolved"]
    assert resolved["lr"] == single["lr"]  # the lr follows the global batch, the same on 1 and 2 processes
    # both processes' images are counted: an epoch sees as many images as on one process
    n_train = len(pd.read_csv(data / "manifest.csv").query("split == 'train'"))
    steps = n_train // 32
    assert metrics["images_per_s"].iloc[0] * metrics["seconds"].iloc[0] == pytest.approx(steps * 32, rel=1e-3)
    assert run(runner, "-q", "evaluate", two, "--split", "val").exit_code == 0


INTERRUPT_AFTER_EPOCH_1 = """
import sys
from cvkit.files.config import TrainConfig
from cvkit.train import fit

def stop(epoch, row):
    if epoch == 1:
        raise KeyboardInterrupt
cfg = TrainConfig(data=sys.argv[1], out=sys.argv[2], epochs=3, batch_size=32, precision="fp32",
                  memory_format="contiguous")
try:
    fit(cfg, callbacks=(stop,))
except Exception as e:
    print(type(e).__name__, e, file=sys.stderr)
"""


def test_an_interrupted_distributed_run_resumes_distributed(data, tmp_path):
    script = tmp_path / "interrupt.py"
    script.write_text(textwrap.dedent(INTERRUPT_AFTER_EPOCH_1))
    out = tmp_path / "run"
    done = torchrun(data, out, script=script)
    assert done.returncode == 0 and "Interrupted" in done.stderr, done.stderr[-3000:]
    assert list(pd.read_csv(out / "metrics.csv")["epoch"]) == [1]
    ckpt = torch.load(out / "last.ckpt", weights_only=True)
    assert ckpt["world_size"] == 2 and len(ckpt["rng_gen_ranks"]) == 2
    assert not torch.equal(ckpt["rng_gen_ranks"][0], ckpt["rng_gen_ranks"][1])  # each process draws its own
    done = torchrun("-q", "train", "--resume", out)
    assert done.returncode == 0, done.stderr[-3000:]
    assert list(pd.read_csv(out / "metrics.csv")["epoch"]) == [1, 2, 3]


def _shards(n: int, batch: int, shuffle: bool, drop_last: bool) -> list[np.ndarray]:
    labels = np.arange(n)
    images = np.zeros((n, 2, 2, 1), np.uint8)
    out = []
    for rank in range(2):
        batches = Batches(images, labels, batch, torch.device("cpu"), shuffle, drop_last, rank=rank, world_size=2)
        got = [lab.numpy() for _, lab in batches.epoch(torch.Generator().manual_seed(3))]
        assert len(got) == len(batches)
        out.append(np.concatenate(got))
    return out


def test_each_process_reads_its_own_share():
    a, b = _shards(101, 10, shuffle=True, drop_last=True)  # training: equal steps on every process
    assert len(a) == len(b) == 50 and not set(a) & set(b)
    a, b = _shards(101, 16, shuffle=False, drop_last=False)  # evaluation: every image once
    assert sorted([*a, *b]) == list(range(101))


def test_global_batch_must_split_evenly_and_sync_bn_needs_cuda():
    world = World(rank=0, world_size=2)
    assert world.per_process_batch(128) == 64
    with pytest.raises(OptionError, match="--batch-size 33 does not split evenly over 2 processes"):
        world.per_process_batch(33)
    with pytest.raises(OptionError, match="--sync-bn .* CUDA only"):
        check_sync_bn(True, torch.device("cpu"))
    check_sync_bn(False, torch.device("cpu"))


def test_one_process_commands_refuse_torchrun(data, tmp_path, runner, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    result = run(runner, "crossval", data, "--out", tmp_path / "cv", "--folds", "2")
    assert result.exit_code == 2 and "--fold I" in result.stderr
    result = run(runner, "train", data, "--out", tmp_path / "r", "--lr-find")
    assert result.exit_code == 2 and "without torchrun" in result.stderr
    assert not (tmp_path / "cv").exists() and not (tmp_path / "r").exists()


def test_a_segment_run_under_torchrun_sums_the_pixel_confusion(tmp_path):
    """Two processes validate their shares of val and sum their confusion matrices: the val mIoU of
    each epoch is the whole split's (segment's score_parts), and the run evaluates like a one-process one."""
    from typer.testing import CliRunner

    from tests.tasks.scenes import write_segment

    src = write_segment(tmp_path / "src", n=40, size=32, seed=0, lo=12, hi=20)
    data = tmp_path / "ds"
    runner = CliRunner()
    assert run(runner, "-q", "prepare", src / "images", "--masks", src / "masks", "--out", data, "--size", "32",
               "--val", "0.25", "--test", "0").exit_code == 0
    out = tmp_path / "run"
    done = torchrun("-q", "train", data, "--out", out, "--arch", "unet", "--padding", "same", "--base", "4",
                    "--depth", "2", "--epochs", "2", "--batch-size", "8", *FIXED)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = pd.read_csv(out / "metrics.csv")
    assert list(metrics["epoch"]) == [1, 2] and metrics["val_miou"].between(0, 1).all()
    result = run(runner, "-q", "evaluate", out, "--split", "val", "--json")
    assert result.exit_code == 0 and 0 <= json.loads(result.stdout)["miou"] <= 1


def test_accumulated_batches_on_two_processes_equal_one_large_batch_on_one(data, tmp_path, runner):
    """Two processes of 16 images, two batches accumulated: the gradients of the same 64 images (DDP averages
    them on the second batch only) as one process's batch of 64."""
    from safetensors.torch import load_file

    same = ["--epochs", "2", "--no-batchnorm", "--dropout", "0", "--augment", "none", *FIXED, "--seed", "2"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert run(runner, "-q", "train", data, "--out", one, *same, "--batch-size", "64").exit_code == 0
    done = torchrun("-q", "train", data, "--out", two, *same, "--batch-size", "32", "--accumulate", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = load_file(one / "model.safetensors"), load_file(two / "model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=2e-5) for k in a)
