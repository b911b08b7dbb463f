"""The GPU suite (``make test-gpu``): cvkit's CUDA path through the CLI, as a user runs it on one GPU.

Every test runs its commands with ``--device DEVICE``: ``cuda`` unless ``CVKIT_GPU_TEST_DEVICE`` names
another device, and the suite is skipped where that is CUDA and no CUDA GPU is present, so ``make test``
stays green on a CPU machine. ``CVKIT_GPU_TEST_DEVICE=cpu`` runs the same tests on the CPU to check their
logic without a GPU; the checks only CUDA can make (fp16 with loss scaling, NCCL, CUDA memory) skip then.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from tests.conftest import run

DEVICE = os.environ.get("CVKIT_GPU_TEST_DEVICE", "cuda")
ON_CUDA = DEVICE.startswith("cuda")

# Each module of this folder sets ``pytestmark = GPU``.
GPU = [pytest.mark.gpu,
       pytest.mark.skipif(ON_CUDA and not torch.cuda.is_available(),
                          reason="no CUDA GPU here: make test-gpu runs these where one is")]
CUDA_ONLY = pytest.mark.skipif(not ON_CUDA, reason=f"checks CUDA itself (CVKIT_GPU_TEST_DEVICE={DEVICE})")

# Probabilities on CUDA and on the CPU, both at fp32, differ by more than on one CPU: cuDNN convolutions
# run in TF32 by default (torch.backends.cudnn.allow_tf32), a 10-bit mantissa.
FP32_TOLERANCE = 5e-3 if ON_CUDA else 1e-3
# The same, between the run's own precision on the device (bf16: an 8-bit mantissa) and fp32 on the CPU.
RUN_PRECISION_TOLERANCE = 3e-2


def cli(*args: object, device: str = DEVICE):
    """``cvkit --device DEVICE ARGS`` in this process; fails the test on a nonzero exit code."""
    result = run(CliRunner(), "--device", device, *args)
    assert result.exit_code == 0, result.stderr
    return result


def resolved(run_dir: Path) -> dict:
    return json.loads((run_dir / "config.json").read_text())["resolved"]


def metrics(run_dir: Path) -> pd.DataFrame:
    """metrics.csv, checked to hold only finite numbers."""
    table = pd.read_csv(run_dir / "metrics.csv")
    assert np.isfinite(table.to_numpy(dtype=float)).all(), table
    return table


def same_device_type(recorded: str) -> bool:
    return recorded.split(":")[0] == DEVICE.split(":")[0]


@pytest.fixture(scope="session")
def device_run(data, tmp_path_factory) -> Path:
    """smallcnn trained 4 epochs on DEVICE with the defaults' speed choices (--precision auto and
    --memory-format auto: on CUDA bf16, or fp16 with loss scaling, and channels-last)."""
    out = tmp_path_factory.mktemp("gpu_runs") / "default"
    cli("-q", "train", data, "--out", out, "--epochs", "4", "--batch-size", "32")
    return out
