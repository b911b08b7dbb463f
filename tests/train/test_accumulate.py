"""``train --accumulate K`` and ``--clip-grad NORM``."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from tests.conftest import run, run_ok

# No BatchNorm (its statistics are per batch), no dropout and no augmentation (their draws follow the
# batch size): K batches of b then give the same gradient as one batch of K x b.
SAME = ["--epochs", "2", "--no-batchnorm", "--dropout", "0", "--augment", "none", "--precision", "fp32",
        "--memory-format", "contiguous", "--seed", "4"]


def weights(run_dir) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "model.safetensors")


def test_k_accumulated_batches_equal_one_batch_k_times_larger(data, tmp_path):
    one, accumulated = tmp_path / "b32", tmp_path / "b16x2"
    assert run_ok("-q", "train", data, "--out", one, *SAME, "--batch-size", "32")
    assert run_ok("-q", "train", data, "--out", accumulated, *SAME, "--batch-size", "16", "--accumulate", "2")
    a, b = weights(one), weights(accumulated)
    assert all(torch.allclose(a[k], b[k], atol=2e-5) for k in a)
    resolved = [json.loads((r / "config.json").read_text())["resolved"] for r in (one, accumulated)]
    assert resolved[0]["lr"] == resolved[1]["lr"]  # the default lr follows the images per optimizer step
    first = [pd.read_csv(r / "metrics.csv")["val_loss"] for r in (one, accumulated)]
    assert first[0].to_numpy() == pytest.approx(first[1].to_numpy(), abs=1e-5)
    # and it is not a no-op: batches of 16 without accumulation train differently
    assert run_ok("-q", "train", data, "--out", tmp_path / "b16", *SAME, "--batch-size", "16")
    c = weights(tmp_path / "b16")
    assert any(not torch.allclose(a[k], c[k], atol=1e-3) for k in a)


def test_clip_grad_records_the_norm_before_clipping_and_changes_the_training(data, tmp_path):
    base = [*SAME, "--batch-size", "32"]
    assert run_ok("-q", "train", data, "--out", tmp_path / "plain", *base)
    assert run_ok("-q", "train", data, "--out", tmp_path / "loose", *base, "--clip-grad", "1e9")
    assert run_ok("-q", "train", data, "--out", tmp_path / "tight", *base, "--clip-grad", "0.01")
    plain, loose, tight = (weights(tmp_path / n) for n in ("plain", "loose", "tight"))
    assert all(torch.equal(plain[k], loose[k]) for k in plain)  # a bound never reached changes nothing
    assert any(not torch.allclose(plain[k], tight[k], atol=1e-4) for k in plain)
    metrics = pd.read_csv(tmp_path / "tight" / "metrics.csv")
    assert "grad_norm" in metrics.columns and (metrics["grad_norm"] > 0.01).all()  # measured before clipping
    assert "grad_norm" not in pd.read_csv(tmp_path / "plain" / "metrics.csv").columns


@pytest.mark.parametrize(("args", "message"), [
    (["--accumulate", "0"], "--accumulate 0 must be at least 1"),
    (["--accumulate", "50", "--batch-size", "32"], "--accumulate 50 is more than the 3 batch(es) of an epoch"),
    (["--clip-grad", "0"], "--clip-grad 0.0 must be a norm above 0"),
    (["--clip-grad", "-1"], "--clip-grad -1.0 must be a norm above 0"),
])
def test_bad_accumulate_and_clip_values_are_refused_in_one_line(data, tmp_path, args, message):
    result = run(CliRunner(), "train", data, "--out", tmp_path / "r", "--epochs", "1", *args)
    assert result.exit_code == 2, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()
