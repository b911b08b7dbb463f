"""`cvkit convolutionalize` through the CLI: the converted run, its equivalence, and score maps."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from tests.conftest import run


def cli(*args):
    return run(CliRunner(), *args)


@pytest.fixture
def big_image(tmp_path):
    path = tmp_path / "big.png"
    Image.fromarray((np.random.default_rng(0).random((56, 64)) * 255).astype(np.uint8)).save(path)
    return path


def test_converted_run_is_equivalent_and_loads(trained, data, tmp_path):
    from cvkit.runtime import load_run

    out = tmp_path / "conv"
    result = cli("convolutionalize", trained, "--out", out)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(out)
    assert "max |converted - original| = " in result.stderr and "output stride 4x4 px" in result.stderr
    facts = json.loads((out / "convolutional.json").read_text())
    assert facts["format"] == 1 and facts["output_stride"] == [4, 4] and facts["max_abs_difference"] < 1e-4
    assert json.loads((out / "model.json").read_text())["convolutional"] is True
    images = np.load(next((data / "cache").glob("val_*.npy")))[:8]
    before = load_run(trained, torch.device("cpu"), precision="fp32").predict(images)[0]
    after = load_run(out, torch.device("cpu"), precision="fp32").predict(images)[0]
    assert np.abs(before - after).max() < 1e-5
    again = cli("convolutionalize", out, "--out", tmp_path / "twice")
    assert again.exit_code == 2 and "is already convolutional" in again.stderr


def test_score_maps_of_a_larger_image(trained, big_image, tmp_path):
    out = tmp_path / "maps"
    result = cli("convolutionalize", trained, big_image, "--out", out)
    assert result.exit_code == 0, result.stderr
    scores = np.load(out / "big_scores.npy")
    k = len(json.loads((trained / "model.json").read_text())["classes"])
    assert scores.shape == (k, (56 - 28) // 4 + 1, (64 - 28) // 4 + 1)
    assert np.allclose(scores.sum(0), 1.0, atol=1e-5)  # probabilities over the classes at every cell
    for name in ("big_heatmap.png", "big_labels.png"):
        assert len(np.unique(np.asarray(Image.open(out / name)))) > 10


@pytest.mark.parametrize("options", [["--upsample"], ["--stitch", "--upsample"]])
def test_maps_in_the_image_frame(trained, big_image, tmp_path, options):
    out = tmp_path / "frame"
    result = cli("convolutionalize", trained, big_image, *options, "--out", out)
    assert result.exit_code == 0, result.stderr
    assert np.load(out / "big_scores.npy").shape[1:] == (56, 64)


def test_stitch_is_denser(trained, big_image, tmp_path):
    result = cli("convolutionalize", trained, big_image, "--stitch", "--out", tmp_path / "s")
    assert result.exit_code == 0, result.stderr
    # each of the 4 x 4 shifted copies is cut to (H - 3) x (W - 3); its map has (side - 28) // 4 + 1 cells
    assert np.load(tmp_path / "s" / "big_scores.npy").shape[1:] == (4 * ((56 - 3 - 28) // 4 + 1), 4 * ((64 - 3 - 28) // 4 + 1))


def test_image_smaller_than_training_size(trained, tmp_path):
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(small)
    result = cli("convolutionalize", trained, small, "--out", tmp_path / "o")
    assert result.exit_code == 2
    assert "smaller than the training size 28x28" in result.stderr
    assert not (tmp_path / "o").exists()
