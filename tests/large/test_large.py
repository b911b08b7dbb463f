"""A split bigger than the memory budget: batches streamed from the cache's memory map train and
evaluate exactly as a split held in memory does (bench/bench_large.py runs 1,000,000 images)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from safetensors.torch import load_file

import cvkit.data.batches as batches
from tests.conftest import FAST, run, write_idx


@pytest.fixture(scope="module")
def small_images(tmp_path_factory):
    """10,000 generated 8x8 images of 10 classes as an IDX pair, prepared at 8 px."""
    from typer.testing import CliRunner

    root = tmp_path_factory.mktemp("large")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 10_000).astype(np.uint8)
    base = rng.integers(0, 256, (10, 8, 8)).astype(np.int16)
    images = np.clip(base[labels] + rng.integers(-40, 41, (len(labels), 8, 8)), 0, 255).astype(np.uint8)
    (root / "src").mkdir()
    write_idx(root / "src" / "train-images-idx3-ubyte", images)
    write_idx(root / "src" / "train-labels-idx1-ubyte", labels)
    assert run(CliRunner(), "-q", "prepare", root / "src", "--out", root / "data", "--size", "8").exit_code == 0
    return root / "data"


def test_a_streamed_split_trains_and_evaluates_as_a_resident_one(small_images, tmp_path, runner, monkeypatch):
    args = ["--epochs", "1", *FAST, "--seed", "1"]
    assert run(runner, "-q", "train", small_images, "--out", tmp_path / "resident", *args).exit_code == 0
    monkeypatch.setitem(batches.RESIDENT_BYTES, "cpu", 0)  # as if the split did not fit in memory
    assert run(runner, "-q", "train", small_images, "--out", tmp_path / "streamed", *args).exit_code == 0
    config = json.loads((tmp_path / "streamed" / "config.json").read_text())["resolved"]
    assert config["resident"] is False
    a, b = (load_file(tmp_path / r / "model.safetensors") for r in ("resident", "streamed"))
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
    times = ["seconds", "images_per_s"]
    assert pd.read_csv(tmp_path / "resident" / "metrics.csv").drop(columns=times).equals(
        pd.read_csv(tmp_path / "streamed" / "metrics.csv").drop(columns=times))
    result = run(runner, "-q", "evaluate", tmp_path / "streamed", "--split", "val", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["accuracy"] > 0.5
