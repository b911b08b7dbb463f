"""``--activation leaky_relu:SLOPE`` / ``elu:ALPHA`` and ``--init normal:STD``: the parameters reach the net."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from tests.conftest import FAST, run, run_ok


def modules(model: nn.Module, kind: type) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, kind)]


def test_activation_parameters_build_the_layers_they_name():
    from cvkit.models import create_model

    leaky = create_model("smallcnn", 10, 1, (28, 28), activation="leaky_relu:0.1")
    assert {m.negative_slope for m in modules(leaky, nn.LeakyReLU)} == {0.1}
    assert {m.negative_slope for m in modules(create_model("smallcnn", 10, 1, (28, 28), activation="leaky_relu"),
                                              nn.LeakyReLU)} == {0.01}
    elu = create_model("mlp", 10, 1, (8, 8), activation="elu:2.5")
    assert {m.alpha for m in modules(elu, nn.ELU)} == {2.5}


def test_a_run_with_a_parameterized_activation_loads_as_it_was_trained(data, tmp_path):
    from cvkit.runtime.run import load_run

    out = tmp_path / "leaky"
    assert run_ok("-q", "train", data, "--out", out, "--epochs", "1", *FAST, "--activation", "leaky_relu:0.1")
    assert json.loads((out / "model.json").read_text())["arch_options"]["activation"] == "leaky_relu:0.1"
    loaded = load_run(out, torch.device("cpu"))
    assert {m.negative_slope for m in modules(loaded.model, nn.LeakyReLU)} == {0.1}


def test_init_normal_std_is_a_standard_deviation():
    from cvkit.models import create_model

    torch.manual_seed(0)
    for init, std in (("normal", 0.01), ("normal:0.1", 0.1)):
        model = create_model("mlp", 10, 1, (28, 28), init=init)
        weight = next(m.weight for m in model.modules() if isinstance(m, nn.Linear))
        assert float(weight.detach().std()) == pytest.approx(std, rel=0.05), init


@pytest.mark.parametrize(("args", "message"), [
    (["--activation", "leaky_relu:steep"], "--activation leaky_relu:steep: the negative slope must be a number"),
    (["--activation", "relu:0.1"], "--activation relu:0.1: relu takes no parameter"),
    (["--activation", "elu:0"], "--activation elu:0: the alpha must be a positive number"),
    (["--activation", "swish"], "--activation 'swish' is not one of"),
    (["--init", "normal:0"], "--init normal:0: STD is the standard deviation, a positive number"),
    (["--init", "normal:wide"], "--init normal:wide: STD is the standard deviation"),
    (["--init", "xavier:2"], "--init 'xavier:2' is not one of"),
    (["--init", "uniform"], "--init uniform must be one of"),
])
def test_bad_activation_and_init_values_are_refused_in_one_line(data, tmp_path, args, message):
    result = run(CliRunner(), "train", data, "--out", tmp_path / "r", "--epochs", "1", *FAST, *args)
    assert result.exit_code == 2, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()
