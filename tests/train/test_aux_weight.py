"""``train --aux-weight W``: GoogLeNet's auxiliary classifiers in the loss while training, gone from the saved run."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from tests.conftest import FAST, SAMPLE, run


def cli(*args):
    return run(CliRunner(), *args)


def test_googlenet_trains_with_aux_classifiers_and_saves_the_plain_net(data, tmp_path):
    from cvkit.models import create_model

    out = tmp_path / "googlenet"
    result = cli("train", data, "--out", out, "--arch", "googlenet", "--aux-weight", "0.3", "--epochs", "1", *FAST)
    assert result.exit_code == 0, result.stderr
    saved = load_file(out / "model.safetensors")
    assert not [k for k in saved if "aux" in k]
    info = json.loads((out / "model.json").read_text())
    plain = create_model("googlenet", len(info["classes"]), 3, (28, 28), **info["arch_options"])
    assert set(saved) == set(plain.state_dict())  # exactly the plain net's tensors
    assert json.loads((out / "config.json").read_text())["aux_weight"] == 0.3
    # the checkpoint keeps the classifiers, for --resume
    checkpoint = torch.load(out / "last.ckpt", weights_only=True)
    assert any(k.startswith("aux.") for k in checkpoint["model"])
    evaluated = cli("evaluate", out, "--split", "test", "--out", tmp_path / "eval")
    assert evaluated.exit_code == 0, evaluated.stderr
    predicted = cli("predict", out, SAMPLE / "fashion" / "bag", "--out", tmp_path / "pred")
    assert predicted.exit_code == 0, predicted.stderr


def test_the_first_step_loss_adds_the_weighted_aux_losses(data, tmp_path):
    """At initialization every classifier scores about ln(K): with two auxiliary classifiers at 0.3, the first
    step's loss is about 1.6 times that of the same net trained without them."""
    from cvkit.files.config import TrainConfig
    from cvkit.train.trainer import Trainer

    losses = {}
    for weight in (0.0, 0.3):
        cfg = TrainConfig(data=str(data), out=str(tmp_path / str(weight)), arch="googlenet", aux_weight=weight,
                          epochs=1, precision="fp32", memory_format="contiguous", batch_size=32, label_smoothing=0.0)
        trainer = Trainer.build(cfg)
        assert hasattr(trainer.model, "aux") == (weight > 0)
        images, labels = next(trainer.batches.epoch(torch.Generator().manual_seed(0)))
        losses[weight] = float(trainer.step(images, labels, advance_schedule=False)[0])
    assert losses[0.0] == pytest.approx(math.log(10), rel=0.25)
    assert losses[0.3] == pytest.approx(1.6 * losses[0.0], rel=0.2)


def test_task_train_loss_is_the_main_loss_plus_weighted_aux_losses():
    from cvkit.models.auxiliary import AuxOutputs
    from cvkit.tasks import TaskSpec, create_task

    torch.manual_seed(0)
    logits, aux1, aux2 = torch.randn(3, 4, 3).unbind(0)
    targets = torch.eye(3)[[0, 1, 2, 0]]
    task = create_task("classify", TaskSpec(["a", "b", "c"], aux_weight=0.3))
    expected = task.loss(logits, targets) + 0.3 * (task.loss(aux1, targets) + task.loss(aux2, targets))
    assert torch.allclose(task.train_loss(AuxOutputs(logits, (aux1, aux2)), targets), expected)
    assert torch.equal(task.train_loss(logits, targets), task.loss(logits, targets))


def test_googlenet_aux_net_returns_aux_logits_only_in_training_mode():
    from cvkit.models import create_model
    from cvkit.models.auxiliary import AuxOutputs, plain_state_dict

    model = create_model("googlenet", 3, 1, (32, 32), aux=True)
    x = torch.randn(2, 1, 32, 32)
    out = model.train()(x)
    assert isinstance(out, AuxOutputs) and out.logits.shape == (2, 3) and [a.shape for a in out.aux] == [(2, 3)] * 2
    assert model.eval()(x).shape == (2, 3)
    plain = create_model("googlenet", 3, 1, (32, 32))
    plain.load_state_dict(plain_state_dict(model))  # strict: the same tensors, no more
    assert torch.allclose(plain.eval()(x), model(x))


@pytest.mark.parametrize("args, message", [
    (["--aux-weight", "-0.1"], "--aux-weight -0.1 must be a weight of 0 or more"),
    (["--aux-weight", "0.3"], "--aux-weight applies to the nets with auxiliary classifiers (googlenet, inception_v3), "
                              "not to --arch smallcnn; leave it out (or 0)"),
])
def test_bad_aux_weight_is_refused(data, tmp_path, args, message):
    out = tmp_path / "run"
    result = cli("train", data, "--out", out, *args, "--epochs", "1", *FAST)
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()
