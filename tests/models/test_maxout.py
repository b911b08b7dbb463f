"""``--activation maxout:K``: each unit the max over K linear pieces, in the nets cvkit builds itself."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from tests.conftest import FAST, run, run_ok


def linears(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


@pytest.mark.parametrize("arch", ["mlp", "smallcnn", "lenet5", "nin"])
@pytest.mark.parametrize("k", [2, 3])
def test_the_layer_before_each_maxout_makes_k_pieces_per_unit(arch, k):
    from cvkit.models import create_model
    from cvkit.models.layers import Maxout

    torch.manual_seed(0)
    plain = create_model(arch, 10, 1, (28, 28), activation="relu")
    maxout = create_model(arch, 10, 1, (28, 28), activation=f"maxout:{k}")
    assert len([m for m in maxout.modules() if isinstance(m, Maxout)]) == len(
        [m for m in plain.modules() if isinstance(m, nn.ReLU)]) > 0
    for a, b in zip(linears(plain), linears(maxout), strict=True):
        if b is maxout.get_classifier():  # the logits: no activation after them
            assert b.weight.shape == a.weight.shape
            continue
        pieces_in = b.weight.shape[1] // a.weight.shape[1]  # the layer reads the units, not the pieces
        assert b.weight.shape[0] == k * a.weight.shape[0] and pieces_in == 1
        assert b.weight.numel() == k * a.weight.numel()
    x = torch.randn(2, 1, 28, 28)
    assert maxout.eval()(x).shape == (2, 10)
    assert maxout.forward_features(x).shape == plain.eval().forward_features(x).shape


def test_a_unit_is_the_max_of_its_pieces_computed_by_hand():
    from cvkit.models import create_model

    torch.manual_seed(0)
    model = create_model("mlp", 3, 1, (4, 4), activation="maxout:3", hidden=[5], dropout=0.0).eval()
    x = torch.randn(7, 1, 4, 4)
    first = model.features[1][0]  # Linear(16, 15): 5 units x 3 pieces
    pieces = (x.flatten(1) @ first.weight.T + first.bias).reshape(7, 5, 3)
    by_hand = pieces.max(dim=2).values
    assert torch.allclose(model.forward_features(x), by_hand, atol=1e-6)
    assert torch.allclose(model(x), model.get_classifier()(by_hand), atol=1e-6)
    # on a feature map, at each position
    from cvkit.models.layers import Maxout

    maps = torch.randn(2, 6, 3, 3)
    expected = torch.stack([maps[:, 2 * c:2 * c + 2].max(1).values for c in range(3)], 1)
    assert torch.equal(Maxout(2)(maps), expected)


def test_training_with_maxout_through_the_cli(data, tmp_path):
    from cvkit.models.layers import Maxout
    from cvkit.runtime.run import load_run

    out = tmp_path / "maxout"
    assert run_ok("-q", "train", data, "--out", out, "--arch", "mlp", "--hidden", "32", "--activation", "maxout:2",
                  "--epochs", "2", *FAST)
    assert json.loads((out / "model.json").read_text())["arch_options"]["activation"] == "maxout:2"
    metrics = pd.read_csv(out / "metrics.csv")
    assert len(metrics) == 2 and np.isfinite(metrics["val_loss"]).all()
    loaded = load_run(out, torch.device("cpu"))
    assert [m.pieces for m in loaded.model.modules() if isinstance(m, Maxout)] == [2]
    assert loaded.model.features[1][0].out_features == 64


@pytest.mark.parametrize(("arch", "activation", "message"), [
    ("mlp", "maxout:0", "--activation maxout:0: maxout takes K, its number of linear pieces per unit, a whole number "
                        "of 2 or more"),
    ("mlp", "maxout:1", "--activation maxout:1: maxout takes K"),
    ("mlp", "maxout:2.5", "--activation maxout:2.5: maxout takes K"),
    ("mlp", "maxout", "--activation maxout: maxout takes K"),
    ("resnet18", "maxout:2", "--activation maxout:2: maxout widens the layer before it K times, which cvkit can do in "
                             "its own nets"),
])
def test_bad_maxout_values_are_refused_in_one_line(data, tmp_path, arch, activation, message):
    result = run(CliRunner(), "train", data, "--out", tmp_path / "r", "--arch", arch, "--epochs", "1", *FAST,
                 "--activation", activation)
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith("Error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()
