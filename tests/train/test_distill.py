"""``train --teacher RUN``: knowledge distillation from a trained run."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from typer.testing import CliRunner

from tests.conftest import run, run_ok

SAME = ["--epochs", "2", "--dropout", "0", "--augment", "none", "--precision", "fp32", "--memory-format",
        "contiguous", "--batch-size", "32", "--seed", "3"]


def test_the_distillation_term_is_the_kl_divergence_of_the_softened_outputs():
    from cvkit.models.losses import distillation

    torch.manual_seed(0)
    s, t = torch.randn(6, 4), torch.randn(6, 4)
    for T in (1.0, 4.0):
        expected = F.kl_div(F.log_softmax(s / T, 1), F.log_softmax(t / T, 1), log_target=True,
                            reduction="batchmean") * T * T
        assert distillation(s, t, "ce", T) == pytest.approx(float(expected), rel=1e-5)
    assert float(distillation(t, t, "ce", 4.0)) == pytest.approx(0.0, abs=1e-6)
    # sigmoid outputs: each output's two-way distribution
    q, p = torch.sigmoid(t / 2), torch.sigmoid(s / 2)
    bernoulli = (q * (q / p).log() + (1 - q) * ((1 - q) / (1 - p)).log())
    assert distillation(s, t, "bce", 2.0) == pytest.approx(float(bernoulli.sum(1).mean() * 4), rel=1e-4)
    assert distillation(s, t, "bce", 2.0, per_output=True) == pytest.approx(float(bernoulli.mean() * 4), rel=1e-4)
    # the teacher's side carries no gradient
    s.requires_grad_(True), t.requires_grad_(True)
    distillation(s, t, "ce", 2.0).backward()
    assert s.grad is not None and t.grad is None


def test_each_step_scores_the_teachers_outputs_on_the_students_batch(data, trained, tmp_path):
    from cvkit.files.config import TrainConfig
    from cvkit.train.trainer import Trainer

    cfg = TrainConfig(data=str(data), out=str(tmp_path / "s"), teacher=str(trained), kd_weight=1.0,
                      kd_temperature=2.0, augment="none", dropout=0.0, precision="fp32",
                      memory_format="contiguous", batch_size=32, seed=0)
    trainer = Trainer.build(cfg)
    images, labels = next(trainer.batches.epoch(torch.Generator().manual_seed(5)))
    teacher = trainer.teacher.run
    with torch.no_grad():
        student_out = trainer.model.train()(trainer.pre(images))
        teacher_out = teacher.model(teacher.pre(images))  # its own normalization, eval mode
    trainer.step(images, labels)
    expected = F.kl_div(F.log_softmax(student_out / 2, 1), F.log_softmax(teacher_out / 2, 1), log_target=True,
                        reduction="batchmean") * 4
    assert float(trainer.kd_losses[-1]) == pytest.approx(float(expected), rel=1e-4)
    assert not any(p.requires_grad for p in teacher.model.parameters())


def test_a_student_with_a_teacher_trains_differently_and_lists_the_term(data, trained, tmp_path):
    alone, taught = tmp_path / "alone", tmp_path / "taught"
    assert run_ok("-q", "train", data, "--out", alone, *SAME)
    assert run_ok("-q", "train", data, "--out", taught, *SAME, "--teacher", trained, "--kd-temperature", "2")
    a, b = load_file(alone / "model.safetensors"), load_file(taught / "model.safetensors")
    assert any(not torch.allclose(a[k], b[k], atol=1e-4) for k in a if a[k].is_floating_point())
    metrics = pd.read_csv(taught / "metrics.csv")
    assert "kd_loss" in metrics.columns and (metrics["kd_loss"] > 0).all()
    assert "kd_loss" not in pd.read_csv(alone / "metrics.csv").columns
    config = json.loads((taught / "config.json").read_text())
    assert config["teacher"] == str(trained) and config["kd_temperature"] == 2.0
    # the student is a plain run: evaluate needs no teacher
    assert run_ok("-q", "evaluate", taught, "--split", "val", "--out", tmp_path / "eval")


@pytest.mark.parametrize(("args", "message"), [
    (["--kd-weight", "0.5"], "--kd-weight and --kd-temperature tune --teacher; give --teacher RUN"),
    (["--teacher", "TRAINED", "--kd-weight", "0"], "--kd-weight 0.0 must be a weight above 0 and at most 1"),
    (["--teacher", "TRAINED", "--kd-weight", "1.5"], "--kd-weight 1.5 must be a weight above 0 and at most 1"),
    (["--teacher", "TRAINED", "--kd-temperature", "0"], "--kd-temperature 0.0 must be above 0"),
    (["--teacher", "MISSING"], "not a run directory (no model.json)"),
    (["--teacher", "SHAPES"], "a teacher needs the same task and classes in the same order"),
    (["--teacher", "TRAINED", "--loss", "bce"], "their outputs are not comparable; give the same --loss"),
])
def test_bad_teachers_are_refused_in_one_line(data, trained, shapes_run, tmp_path, args, message):
    swap = {"TRAINED": str(trained), "MISSING": str(tmp_path / "nothing"), "SHAPES": str(shapes_run)}
    result = run(CliRunner(), "train", data, "--out", tmp_path / "r", "--epochs", "1", "--batch-size", "32",
                 *(swap.get(a, a) for a in args))
    assert result.exit_code == 2, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_crossval_does_not_take_a_teacher(data, trained, tmp_path):
    result = run(CliRunner(), "crossval", data, "--out", tmp_path / "cv", "--teacher", str(trained))
    assert result.exit_code == 2 and "--teacher" in result.stderr
