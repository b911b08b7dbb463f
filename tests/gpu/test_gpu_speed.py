"""The speed options on the device: each --precision, --memory-format channels_last, --compile, and the
same seed giving the same run."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from cvkit.data import load_split
from cvkit.runtime import load_run
from tests.gpu.conftest import DEVICE, FP32_TOLERANCE, GPU, ON_CUDA, cli, metrics, resolved

pytestmark = GPU

SHORT = ["--epochs", "3", "--batch-size", "32"]


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_each_precision_trains_to_finite_metrics(precision, data, tmp_path):
    if precision == "bf16" and ON_CUDA and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    if precision == "fp16" and not ON_CUDA:
        pytest.skip("fp16 with loss scaling is the CUDA path (a CPU runs fp16 autocast slowly and unscaled)")
    out = tmp_path / precision
    cli("-q", "train", data, "--out", out, *SHORT, "--precision", precision, "--memory-format", "contiguous")
    assert resolved(out)["precision"] == precision
    table = metrics(out)
    assert table["train_loss"].iloc[-1] < table["train_loss"].iloc[0] - 0.1  # the steps were taken, not skipped
    scores = json.loads(cli("-q", "evaluate", out, "--split", "val", "--json").stdout)
    assert math.isfinite(scores["log_loss"]) and 0 <= scores["accuracy"] <= 1
    assert load_run(out, torch.device(DEVICE)).precision == precision  # inference reuses it on this device
    if precision == "fp16":  # the loss scale is live and kept for --resume
        assert torch.load(out / "last.ckpt", weights_only=True)["scaler"]["scale"] > 0


def test_channels_last_is_recorded_and_predicts_as_contiguous(data, tmp_path):
    out = tmp_path / "cl"
    cli("-q", "train", data, "--out", out, *SHORT, "--precision", "fp32", "--memory-format", "channels_last")
    assert resolved(out)["memory_format"] == "channels_last"
    loaded = load_run(out, torch.device(DEVICE))
    conv = next(m for m in loaded.model.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1)
    assert loaded.pre.channels_last and conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not conv.weight.is_contiguous()
    images = np.asarray(load_split(data, "val", (28, 28)).images)
    here, _ = loaded.predict(images)
    cpu, _ = load_run(out, torch.device("cpu"), precision="fp32").predict(images)  # contiguous there
    assert np.abs(here - cpu).max() <= FP32_TOLERANCE


def test_compile_trains_as_the_eager_model_does(data, tmp_path, monkeypatch):
    """--compile changes how the steps run, not what they compute: the same seed gives nearly the same
    run (inductor fuses and reorders float operations, so not bit for bit). Inductor draws dropout masks
    from a generator of its own unless told to fall back to eager's; here it is told, so that both runs
    drop the same units."""
    import torch._inductor.config

    monkeypatch.setattr(torch._inductor.config, "fallback_random", True)
    eager, compiled = tmp_path / "eager", tmp_path / "compiled"
    speed = ["--precision", "bf16" if ON_CUDA and torch.cuda.is_bf16_supported() else "fp32",
             "--memory-format", "channels_last" if ON_CUDA else "contiguous"]
    cli("-q", "train", data, "--out", eager, *SHORT, *speed)
    cli("-q", "train", data, "--out", compiled, *SHORT, *speed, "--compile")
    assert json.loads((compiled / "config.json").read_text())["compile"] is True
    a, b = metrics(eager), metrics(compiled)
    assert b["train_loss"].iloc[-1] < b["train_loss"].iloc[0] - 0.1
    assert np.allclose(a[["train_loss", "val_loss"]], b[["train_loss", "val_loss"]], rtol=0.05), (a, b)
    state = load_file(compiled / "model.safetensors")  # the plain model's weights, no compiled wrapper's names
    assert state.keys() == load_file(eager / "model.safetensors").keys()
    assert math.isfinite(json.loads(cli("-q", "evaluate", compiled, "--split", "val", "--json").stdout)["log_loss"])


def test_the_same_seed_gives_the_same_run(data, tmp_path):
    """On the CPU bit for bit. On CUDA cvkit leaves cuDNN free to pick its algorithms
    (torch.backends.cudnn.deterministic is off), and some weight-gradient kernels add in a different order
    on each run, so losses are compared to a relative 1e-3 and weights to 1e-3; another seed differs by
    far more."""
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        # --precision/--memory-format auto: on CUDA a fixed rule; on the CPU a timing, which two runs may
        # decide differently, so the CPU gets the choice spelled out
        speed = [] if ON_CUDA else ["--precision", "fp32", "--memory-format", "contiguous"]
        cli("-q", "train", data, "--out", tmp_path / name, *SHORT, "--seed", str(seed), *speed)
        runs[name] = (metrics(tmp_path / name), load_file(tmp_path / name / "model.safetensors"))
    (a, wa), (b, wb), (c, _) = runs["a"], runs["b"], runs["c"]
    losses = ["train_loss", "val_loss"]
    if ON_CUDA:
        assert np.allclose(a[losses], b[losses], rtol=1e-3), (a, b)
        assert all(torch.allclose(wa[k].float(), wb[k].float(), rtol=1e-3, atol=1e-3) for k in wa)
    else:
        assert a.drop(columns=["seconds", "images_per_s"]).equals(b.drop(columns=["seconds", "images_per_s"]))
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not np.allclose(a[losses], c[losses], rtol=1e-2)  # the comparison can tell two runs apart
