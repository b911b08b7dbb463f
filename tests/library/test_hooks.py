"""cvkit/models/hooks.py, the one place that hooks a layer by name: every user of it (the runtime's
``capture``, ``forward_to``, the explainers' ``layer_pass``) leaves no hook behind, even on an error."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cvkit.errors import OptionError
from cvkit.explain.gradients import layer_pass
from cvkit.models import create_model
from cvkit.models.hooks import forward_to, hooked
from cvkit.runtime import capture


def net() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(2, 3))


def no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks for m in model.modules())


def test_hooked_replaces_an_output_and_removes_its_hooks():
    model, x = net(), torch.randn(2, 1, 8, 8)
    with hooked(model, {"1": lambda out: torch.zeros_like(out)}):
        zeroed = model(x)
    assert no_hooks(model)
    expected = model[5](model[4](model[3](model[2](torch.zeros(2, 2, 6, 6)))))
    assert torch.equal(zeroed, expected)
    assert not torch.equal(model(x), zeroed)


def test_an_unknown_name_registers_nothing():
    model = net()
    with pytest.raises(OptionError, match="the model has no layer '3x'; did you mean 3?"):
        with hooked(model, {"0": lambda out: None, "3x": lambda out: None}):
            pass
    assert no_hooks(model)
    with pytest.raises(OptionError, match="the model has no layer ''"):
        forward_to(model, "", torch.randn(1, 1, 8, 8))


def test_every_user_leaves_no_hook_behind_even_on_an_error():
    model, x = net(), torch.randn(2, 1, 8, 8)
    with capture(model, ["0", "2"]) as seen:
        model(x)
    assert seen["0"].shape == (2, 2, 6, 6) and seen["2"].shape == (2, 2, 4, 4) and not seen["0"].requires_grad
    with pytest.raises(RuntimeError, match="boom"):
        with capture(model, ["0"]):
            raise RuntimeError("boom")
    assert torch.equal(forward_to(model, "2", x), seen["2"])
    assert no_hooks(model)
    cnn, x = create_model("smallcnn", 3, 1, (28, 28)).eval(), torch.randn(2, 1, 28, 28)
    p = layer_pass(cnn, x, "features.1", None)
    assert p.activations.shape == p.gradients.shape and p.activations.ndim == 4
    with pytest.raises(OptionError, match="--layer head.fc: the model has no layer of that name with a feature map"):
        layer_pass(cnn, x, "head.fc", None)  # a flat output: refused once the pass is over
    assert no_hooks(cnn)
