"""``train --whiten``: the first convolution holds the whitening of the train patches and never trains."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from sklearn.datasets import load_digits
from typer.testing import CliRunner

from tests.conftest import FAST, run

RUN = ["--epochs", "2", *FAST]


def _resolved(out) -> dict:
    return json.loads((out / "config.json").read_text())["resolved"]


def test_the_filters_whiten_real_patches():
    """On digits, the whitened patches' channels are decorrelated, with variance l/(l+eps) each."""
    from cvkit.train.whiten import EPS, whitening_filters
    from cvkit.transforms.batch import Preprocess

    digits = load_digits()
    images = (digits.images * 255 / 16).astype(np.uint8)[..., None]  # N x 8 x 8 x 1
    pre = Preprocess([0.3], [0.4], torch.device("cpu"))
    filters = whitening_filters(images, pre, (3, 3), 8, seed=0)
    assert filters.shape == (8, 1, 3, 3)
    assert torch.allclose(filters[:4], -filters[4:])
    x = pre(torch.from_numpy(images)).float()
    patches = torch.nn.functional.unfold(x, 3).transpose(1, 2).reshape(-1, 9).double()
    patches -= patches.mean(0)
    cov = patches.T @ patches / len(patches)
    values = torch.linalg.eigvalsh(cov).flip(0)[:4]
    out = patches @ filters[:4].reshape(4, 9).double().T
    got = out.T @ out / len(out)
    # SAMPLE covers every digit image here, so the diagonal is exact up to float32 filters
    assert torch.allclose(got, torch.diag(values / (values + EPS)), atol=2e-3)


def test_auto_whitens_smallcnn_and_keeps_the_filters_through_training(data, tmp_path):
    from cvkit.data.cache import load_split
    from cvkit.files.run import ModelInfo
    from cvkit.train.whiten import whitening_filters
    from cvkit.transforms.batch import Preprocess

    out = tmp_path / "run"
    result = run(CliRunner(), "train", data, "--out", out, *RUN)
    assert result.exit_code == 0, result.stderr
    assert "--whiten" in result.stderr
    assert _resolved(out)["whitened"] == "features.0.0.0"
    info = ModelInfo.read(out)
    pre = Preprocess(info.mean, info.std, torch.device("cpu"))
    expected = whitening_filters(load_split(data, "train").images, pre, (3, 3), 16, seed=0)
    weights = load_file(str(out / "model.safetensors"))
    assert torch.allclose(weights["features.0.0.0.weight"], expected, atol=1e-5)
    # the layers after it did train
    off = tmp_path / "off"
    assert run(CliRunner(), "train", data, "--out", off, *RUN, "--whiten", "off").exit_code == 0
    assert "whitened" not in _resolved(off)
    trained = load_file(str(off / "model.safetensors"))["features.0.0.0.weight"]
    assert not torch.allclose(trained, expected, atol=1e-2)


def test_resume_keeps_the_whitening_frozen(data, tmp_path):
    """An interrupted run resumes with the filters pinned: the same weights as the run never stopped."""
    from cvkit.errors import Interrupted
    from cvkit.train import TrainConfig, fit

    whole, part = tmp_path / "whole", tmp_path / "part"
    assert run(CliRunner(), "-q", "train", data, "--out", whole, *RUN, "--epochs", "3").exit_code == 0

    def interrupt(epoch, row):
        if epoch == 1:
            raise KeyboardInterrupt

    cfg = TrainConfig(data=str(data), out=str(part), epochs=3, precision="fp32", memory_format="contiguous",
                      batch_size=32)
    with pytest.raises(Interrupted):
        fit(cfg, callbacks=(interrupt,))
    assert run(CliRunner(), "-q", "train", "--resume", part).exit_code == 0
    a, b = (load_file(str(r / "model.safetensors")) for r in (whole, part))
    assert _resolved(part)["whitened"] == "features.0.0.0"
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("args, words", [
    (["--whiten", "sometimes"], "--whiten sometimes must be auto, on or off"),
    (["--whiten", "on", "--base", "20"], "20 filters, more than twice the 9 values"),
])
def test_bad_whiten_options_are_refused(data, tmp_path, args, words):
    result = run(CliRunner(), "train", data, "--out", tmp_path / "run", *RUN, *args)
    assert result.exit_code == 2
    assert words in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_auto_leaves_a_net_it_cannot_whiten_alone(data, tmp_path):
    out = tmp_path / "run"
    result = run(CliRunner(), "train", data, "--out", out, *RUN, "--base", "20")
    assert result.exit_code == 0, result.stderr
    assert "whitened" not in _resolved(out)
