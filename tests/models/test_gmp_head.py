"""``--head gmp``: global max pooling then one linear layer, wherever ``--head gap`` is offered."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from cvkit.errors import OptionError
from cvkit.models import create_model
from tests.conftest import FAST, run


def pooled_logits(model: torch.nn.Module, x: torch.Tensor, pool: str) -> torch.Tensor:
    features = model.forward_features(x)
    pooled = features.amax((2, 3)) if pool == "max" else features.mean((2, 3))
    classifier = model.get_classifier()
    return pooled @ classifier.weight.T + classifier.bias


@pytest.mark.parametrize("arch, size", [("smallcnn", 32), ("lenet5", 32), ("resnet18", 64), ("vgg11", 64),
                                        ("mobilenetv3_small_050", 64), ("alexnet", 128), ("googlenet", 64)])
def test_gmp_head_is_the_classifier_over_each_maps_maximum(arch, size):
    torch.manual_seed(0)
    model = create_model(arch, 3, 3, (size, size), head="gmp").eval()
    if arch == "googlenet":  # freshly drawn (std 0.01), its eval-mode features are all zero: batch statistics then
        model.train()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        logits = model(x)
        scale = float(logits.abs().max())
        assert float((logits - pooled_logits(model, x, "max")).abs().max()) <= 1e-4 * scale
        assert float((logits - pooled_logits(model, x, "mean")).abs().max()) > 1e-2 * scale  # not a GAP head


@pytest.mark.parametrize("arch, message", [
    ("perceptron", "--head gmp needs a feature map, and --arch perceptron flattens the image"),
    ("mlp", "--head gmp needs a feature map, and --arch mlp flattens the image"),
    ("nin", "--arch nin averages its class maps by design"),
    ("unet", "--head gmp does not apply to --arch unet"),
])
def test_gmp_is_refused_where_it_cannot_apply(arch, message):
    with pytest.raises(OptionError, match=message):
        create_model(arch, 3, 3, (32, 32), head="gmp")


def test_train_records_the_gmp_head_and_load_run_rebuilds_it(data, tmp_path):
    from cvkit.runtime import load_run

    out = tmp_path / "gmp"
    result = run(CliRunner(), "train", data, "--out", out, "--head", "gmp", "--epochs", "1", *FAST)
    assert result.exit_code == 0, result.stderr
    assert json.loads((out / "model.json").read_text())["arch_options"]["head"] == "gmp"
    loaded = load_run(out, torch.device("cpu"), precision="fp32")
    assert any(isinstance(m, torch.nn.AdaptiveMaxPool2d) for m in loaded.model.modules())
    assert not any(isinstance(m, torch.nn.AdaptiveAvgPool2d) for m in loaded.model.modules())


def test_bad_head_is_refused(data, tmp_path):
    result = run(CliRunner(), "train", data, "--out", tmp_path / "run", "--head", "gmax", "--epochs", "1", *FAST)
    assert result.exit_code == 2
    assert "Error: --head gmax must be one of auto, fc, gap, gmp" in result.stderr
    assert not (tmp_path / "run").exists()
