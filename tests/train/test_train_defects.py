"""Defects found in review (--freeze N, the lr range test, --resume, mixup's RNG, in-place
activations, progress output in a log), each pinned by a test that failed on the code before."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from tests.conftest import FAST, run, run_ok

# ----------------------------------------------------------------------------- 1. --freeze N


def _trained_from(data, tmp_path, freeze: str) -> tuple[dict, dict]:
    """Train smallcnn one epoch from known starting weights; returns (start, end) parameters."""
    from cvkit.models import create_model

    torch.manual_seed(0)
    start = {k: v.clone() for k, v in create_model("smallcnn", 10, 1, (28, 28)).state_dict().items()}
    save_file(start, tmp_path / "init.safetensors")
    out = tmp_path / f"freeze{freeze}"
    assert run_ok("-q", "train", data, "--out", out, "--epochs", "1", "--weights", tmp_path / "init.safetensors",
                  "--freeze", freeze, *FAST)
    return start, load_file(out / "model.safetensors")


def _changed(start: dict, end: dict, names: list[str]) -> list[bool]:
    return [not torch.equal(start[n], end[n]) for n in names]


def test_freeze_1_trains_the_head_and_the_last_group_only(data, tmp_path):
    from cvkit.models import block_groups, create_model, head_parameter_names

    groups = block_groups(create_model("smallcnn", 10, 1, (28, 28)))
    assert len(groups) == 2
    start, end = _trained_from(data, tmp_path, "1")
    assert not any(_changed(start, end, groups[0]))  # frozen
    assert all(_changed(start, end, [n for n in groups[1] if n.endswith("weight")]))
    assert all(_changed(start, end, sorted(head_parameter_names(create_model("smallcnn", 10, 1, (28, 28))))))


@pytest.mark.parametrize("freeze", ["3", "99"])
def test_freeze_more_than_the_groups_trains_every_group(data, tmp_path, freeze):
    from cvkit.models import block_groups, create_model

    groups = block_groups(create_model("smallcnn", 10, 1, (28, 28)))
    start, end = _trained_from(data, tmp_path, freeze)
    for group in groups:
        assert all(_changed(start, end, [n for n in group if n.endswith("weight")])), group


# ----------------------------------------------------------------------------- 2. lr range test at a divergence


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_suggest_lr_stops_before_a_diverged_tail(bad):
    from cvkit.train.range_test import suggest_lr

    lrs = list(np.logspace(-5, 0, 40))
    losses = [2.3 - 0.05 * i if i < 25 else 1.05 + 0.3 * (i - 25) for i in range(40)]
    losses[30:] = [bad] * 10  # diverged inside the window the suggestion is taken from
    lr = suggest_lr(lrs, losses)
    assert lr is not None and math.isfinite(lr)
    assert lr in lrs[:25]  # on the falling part, before the divergence


def test_suggest_lr_all_non_finite_gives_none():
    from cvkit.train.range_test import suggest_lr

    assert suggest_lr(list(np.logspace(-5, 0, 20)), [float("nan")] * 20) is None


# ----------------------------------------------------------------------------- 3. --resume


def test_resume_refuses_other_options(trained):
    result = run(CliRunner(), "train", "--resume", trained, "--epochs", "5")
    assert result.exit_code == 2
    assert "Error:" in result.stderr and "--epochs" in result.stderr and "drop" in result.stderr


def test_resume_refuses_a_complete_run_and_points_to_weights(trained):
    result = run(CliRunner(), "train", "--resume", trained)
    assert result.exit_code == 2
    assert "the run is complete" in result.stderr
    assert f"--weights {trained / 'model.safetensors'}" in result.stderr.replace("\n", "")


def test_resumed_run_continues_at_the_right_epoch_with_its_lr_schedule(data, tmp_path):
    from cvkit.errors import Interrupted
    from cvkit.train import TrainConfig, fit

    whole, part = tmp_path / "whole", tmp_path / "part"
    assert run_ok("-q", "train", data, "--out", whole, "--epochs", "3", *FAST)

    def interrupt(epoch, row):
        if epoch == 1:
            raise KeyboardInterrupt

    cfg = TrainConfig(data=str(data), out=str(part), epochs=3, precision="fp32", memory_format="contiguous",
                      batch_size=32)
    with pytest.raises(Interrupted, match=f"continue with 'cvkit train --resume {part}'"):
        fit(cfg, callbacks=(interrupt,))
    assert len(pd.read_csv(part / "metrics.csv")) == 1
    result = run(CliRunner(), "train", "--resume", part)
    assert result.exit_code == 0, result.stderr
    assert "epoch 2/3" in result.stderr and "epoch 1/3" not in result.stderr
    a, b = pd.read_csv(whole / "metrics.csv"), pd.read_csv(part / "metrics.csv")
    assert list(b["epoch"]) == [1, 2, 3]
    assert list(a["lr"]) == list(b["lr"])  # the one-cycle schedule goes on where it stopped


def test_a_run_interrupted_before_a_default_changed_resumes_as_the_net_it_was(data, tmp_path):
    """A smallcnn run started when the default was the 32-64 net with dropout 0.25 (config.json without
    base, depth and dropout) resumes as that net, read from its model.json."""
    from cvkit.errors import Interrupted
    from cvkit.train import TrainConfig, fit

    def interrupt(epoch, row):
        if epoch == 1:
            raise KeyboardInterrupt

    part = tmp_path / "part"
    cfg = TrainConfig(data=str(data), out=str(part), epochs=2, precision="fp32", memory_format="contiguous",
                      batch_size=32, base=32, dropout=0.25)
    with pytest.raises(Interrupted):
        fit(cfg, callbacks=(interrupt,))
    config, info = json.loads((part / "config.json").read_text()), json.loads((part / "model.json").read_text())
    config["base"] = config["dropout"] = None  # as cvkit wrote them before
    info["arch_options"] = {k: v for k, v in info["arch_options"].items() if k not in ("base", "depth")}
    (part / "config.json").write_text(json.dumps(config))
    (part / "model.json").write_text(json.dumps(info))
    result = run(CliRunner(), "train", "--resume", part)
    assert result.exit_code == 0, result.stderr
    assert "epoch 2/2" in result.stderr
    weights = load_file(part / "model.safetensors")
    assert weights["features.0.0.0.weight"].shape[0] == 32  # not the 16 of today's default
    dropout = json.loads((part / "model.json").read_text())["arch_options"]["dropout"]
    assert dropout == 0.25


# ----------------------------------------------------------------------------- 5. mixup draws from the generator


@pytest.mark.parametrize("policy", [{"mixup": 0.4}, {"cutmix": 1.0}, {"mixup": 0.4, "cutmix": 1.0}])
def test_mix_depends_on_the_generator_only(policy):
    from cvkit.transforms.batch import AugmentPolicy, mix

    x = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    targets = torch.eye(4)[torch.arange(8) % 4]
    outs = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        np.random.seed(global_seed)
        outs.append(mix(x, targets, AugmentPolicy(**policy), torch.Generator().manual_seed(7)))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
    assert not torch.equal(outs[0][0], x)  # it did mix


# ----------------------------------------------------------------------------- 6. activations not in-place


def test_feature_hooks_see_batchnorm_outputs_before_their_relu():
    from cvkit.models import create_model
    from cvkit.runtime import capture

    torch.manual_seed(0)
    model = create_model("smallcnn", 10, 1, (28, 28)).eval()
    bn = "features.0.0.1"
    assert isinstance(dict(model.named_modules())[bn], torch.nn.BatchNorm2d)
    with capture(model, [bn]) as seen, torch.no_grad():
        model(torch.randn(2, 1, 28, 28))
    assert (seen[bn] < 0).any()  # the following ReLU did not clip it in place


def test_no_cvkit_net_has_an_in_place_module():
    from cvkit.models import create_model
    from cvkit.models.registry import CVKIT_MODELS

    for arch in CVKIT_MODELS:
        for activation in ("relu", "leaky_relu", "elu"):
            try:
                model = create_model(arch, 3, 3, (32, 32), activation=activation)
            except Exception:  # an architecture that takes no --activation
                model = create_model(arch, 3, 3, (32, 32))
            inplace = [name for name, m in model.named_modules() if getattr(m, "inplace", False)]
            assert not inplace, (arch, activation, inplace)


# ----------------------------------------------------------------------------- 9. no bars in a log


BAR_CHARS = re.compile("[━╸╺─█▏▎▍▌▋▊▉]")


def test_no_progress_bars_when_stderr_is_not_a_terminal(data, tmp_path, class_folders):
    result = run(CliRunner(), "train", data, "--out", tmp_path / "r", "--epochs", "2", *FAST)
    assert result.exit_code == 0, result.stderr
    assert not BAR_CHARS.search(result.stderr.split("┏")[0]), result.stderr  # the summary table uses box lines
    epochs = [line for line in result.stderr.splitlines() if re.match(r"epoch \d/2 ", line)]
    assert [line.split()[1] for line in epochs] == ["1/2", "2/2"]
    result = run(CliRunner(), "prepare", class_folders, "--out", tmp_path / "d", "--size", "8")
    assert result.exit_code == 0, result.stderr
    assert not BAR_CHARS.search(result.stderr.split("┏")[0]), result.stderr  # the summary table may use box lines
    assert len([line for line in result.stderr.splitlines() if line.startswith("Importing")]) == 1
