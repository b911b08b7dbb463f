"""``cvkit export``: each format written, read back and checked against the run; BatchNorm folding."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import onnxruntime as ort
import pytest
import torch
from safetensors.torch import load_file

from cvkit.export.fuse import count_batchnorms, fuse_batchnorm
from cvkit.models import create_model
from tests.conftest import SAMPLE, run


@pytest.mark.parametrize("fmt,file", [("onnx", "model.onnx"), ("torchscript", "model.torchscript.pt"),
                                      ("safetensors", "model.safetensors")])
def test_each_format_is_written_and_agrees_with_the_run(trained, tmp_path, runner, fmt, file):
    out = tmp_path / fmt
    result = run(runner, "export", trained, "--format", fmt, "--out", out)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(out / file)
    meta = json.loads((out / "export.json").read_text())
    assert meta["format"] == fmt and meta["top1_agreement"] == 1.0 and meta["max_abs_prob_diff"] < 1e-5
    assert meta["check_source"].startswith("val images")
    assert "top-1 agreement 100.0%" in result.stderr
    assert {p.name for p in out.iterdir()} == {file, "model.json", "export.json"}


def test_onnx_runs_in_onnxruntime_with_the_runs_top1(trained, tmp_path, runner):
    out = tmp_path / "onnx"
    assert run(runner, "-q", "export", trained, "--fuse-bn", "--out", out).exit_code == 0
    predicted = run(runner, "-q", "predict", trained, SAMPLE / "fashion" / "bag", "--out", tmp_path / "p")
    assert predicted.exit_code == 0
    from cvkit.runtime import read_images

    info = json.loads((out / "model.json").read_text())
    paths = sorted(str(p) for p in (SAMPLE / "fashion" / "bag").iterdir())
    images = read_images(paths, tuple(info["input_size"]), info["in_chans"]).images
    x = images.transpose(0, 3, 1, 2).astype(np.float32) / 255
    probs = ort.InferenceSession(str(out / "model.onnx")).run(None, {"image": x})[0]
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    import pandas as pd

    table = pd.read_csv(tmp_path / "p" / "predictions.csv")
    classes = info["classes"]
    table = table.set_index("path").loc[paths]
    assert [classes[i] for i in probs.argmax(1)] == list(table["predicted"])
    assert np.abs(probs - table[[f"prob_{c}" for c in classes]].to_numpy()).max() < 1e-4


def test_safetensors_export_is_a_run_predict_reads_and_half_halves_it(trained, tmp_path, runner):
    out = tmp_path / "st"
    assert run(runner, "-q", "export", trained, "--format", "safetensors", "--half", "--out", out).exit_code == 0
    assert all(t.dtype == torch.float16 for t in load_file(out / "model.safetensors").values() if t.is_floating_point())
    assert run(runner, "-q", "predict", out, SAMPLE / "fashion" / "bag" / "000.png", "--out", tmp_path / "p").exit_code == 0


@pytest.mark.parametrize("arch,options", [("smallcnn", {}), ("lenet5", {"batchnorm": True}), ("nin", {"batchnorm": True}),
                                          ("resnet10t", {})])
def test_fuse_bn_folds_batchnorm_and_keeps_the_outputs(arch, options):
    torch.manual_seed(0)
    model = create_model(arch, 5, 3, (32, 32), **options)
    for m in model.modules():  # running statistics far from (0, 1), as after training
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(-1.5, 1.5)  # negative gammas too: folding across a max-pool would be wrong
    model.eval()
    x = torch.randn(4, 3, 32, 32)
    fused, folded, left = fuse_batchnorm(model, arch)
    assert folded > 0 and count_batchnorms(model) == folded + left
    with torch.no_grad():
        assert torch.allclose(fused(x), model(x), atol=1e-4, rtol=1e-4)


def test_a_net_without_batchnorm_folds_nothing():
    model = create_model("mlp", 3, 1, (8, 8)).eval()
    fused, folded, left = fuse_batchnorm(model, "mlp")
    assert (folded, left) == (0, 0) and fused is model


def test_bad_options_and_outputs_are_refused(trained, tmp_path, runner):
    result = run(runner, "export", trained, "--format", "tflite", "--out", tmp_path / "x")
    assert result.exit_code == 2 and "--format tflite must be one of onnx, torchscript, safetensors" in result.stderr
    result = run(runner, "export", trained, "--format", "safetensors", "--fuse-bn", "--out", tmp_path / "x")
    assert result.exit_code == 2 and "--fuse-bn" in result.stderr
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    result = run(runner, "export", trained, "--out", tmp_path / "full")
    assert result.exit_code == 2 and "already exists" in result.stderr
    assert not (tmp_path / "x").exists()


def test_a_run_whose_weights_would_run_code_is_refused(trained, tmp_path, runner):
    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {tmp_path / 'RAN'}",)

    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    torch.save({"w": Payload()}, copy / "model.safetensors")
    result = run(runner, "export", copy, "--out", tmp_path / "x")
    assert result.exit_code == 2 and "model.safetensors" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "RAN").exists() and not (tmp_path / "x").exists()
