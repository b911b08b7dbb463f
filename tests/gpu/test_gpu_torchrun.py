"""``torchrun -m cvkit train`` on the device: one process on one GPU, and NCCL where two GPUs are present.

With ``--nproc_per_node 1`` torchrun sets WORLD_SIZE=1, and cvkit then trains as one process with no
process group at all (cvkit.train.distributed.World.start): NCCL is used only from two processes up, so
the NCCL test needs two GPUs and skips on one.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO
from tests.gpu.conftest import DEVICE, GPU, ON_CUDA, metrics, resolved, same_device_type

pytestmark = GPU


def torchrun(processes: int, *args: object, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                           str(processes), "-m", "cvkit", "--device", DEVICE, *map(str, args)],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=300)


def test_one_process_under_torchrun_trains_on_the_device(data, tmp_path):
    out = tmp_path / "run"
    done = torchrun(1, "-q", "train", data, "--out", out, "--epochs", "2", "--batch-size", "32")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == [str(out)]
    r = resolved(out)
    assert (r["world_size"], r["global_batch_size"], r["batch_size_per_process"]) == (1, 32, 32)
    assert same_device_type(r["device"]) and r["resident"] is True
    assert list(metrics(out)["epoch"]) == [1, 2]


@pytest.mark.skipif(not ON_CUDA or torch.cuda.device_count() < 2,
                    reason="NCCL needs two processes, each on a GPU of its own: this machine has fewer than 2 GPUs")
def test_two_gpus_train_over_nccl(data, tmp_path):
    out = tmp_path / "run"
    done = torchrun(2, "-q", "train", data, "--out", out, "--epochs", "3", "--batch-size", "32",
                    env={"NCCL_DEBUG": "INFO"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "NCCL INFO" in done.stdout + done.stderr  # the process group ran on NCCL (it logs on stdout)
    assert str(out) in done.stdout.split()
    r = resolved(out)
    assert (r["world_size"], r["global_batch_size"], r["batch_size_per_process"]) == (2, 32, 16)
    assert r["device"] == "cuda:0"  # rank 0's GPU: each process takes the GPU of its local rank
    table = metrics(out)
    assert list(table["epoch"]) == [1, 2, 3] and table["train_loss"].iloc[-1] < table["train_loss"].iloc[0]
    assert table["val_acc"].between(0, 1).all()
