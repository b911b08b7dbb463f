"""train --budget's planning (cvkit.train.budget) and duration parsing, without training."""

from __future__ import annotations

import time

import pytest

from cvkit.errors import OptionError
from cvkit.files.config import parse_budget
from cvkit.train.budget import MAX_BUDGET_EPOCHS, Budget


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("10m", 600), ("1h", 3600), ("1h30m", 5400), ("45", 45),
                                           ("2.5m", 150)])
def test_durations(text, seconds):
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["", "10x", "m", "0s", "-5s", "ten minutes", "1h m"])
def test_bad_durations_name_the_option(text):
    with pytest.raises(OptionError, match="--budget"):
        parse_budget(text)


def test_first_plan_fills_the_budget_from_the_step_time():
    budget = Budget(600.0, started=time.perf_counter())
    epochs, why = budget.first_plan(step_seconds=0.17, steps_per_epoch=421, val_images=6000, train_batch=128)
    epoch = 1.05 * 0.17 * 421 + 0.35 * 0.17 / 128 * 6000
    assert epochs == int(budget.usable // epoch) == 7 and "7 epochs" in why
    tiny = Budget(1.0, started=time.perf_counter())
    assert tiny.first_plan(0.17, 421, 0, 128)[0] == 1  # at least one epoch, said to run over
    assert "runs over" in tiny.first_plan(0.17, 421, 0, 128)[1]
    huge = Budget(1e6, started=time.perf_counter())
    assert huge.first_plan(0.01, 10, 0, 128)[0] == MAX_BUDGET_EPOCHS


def test_replans_follow_the_measured_epochs():
    now = time.perf_counter()
    budget = Budget(100.0, started=now - 20.0)  # 20 s gone; usable 94 s, so 74 s left
    assert budget.after_epoch(1, 10.0, planned=5) == 8  # epochs of 10 s: 7 more fit
    budget = Budget(100.0, started=now - 60.0)  # 34 s left
    assert budget.after_epoch(3, 20.0, planned=6) == 4  # only one more 20 s epoch fits
    budget = Budget(100.0, started=now - 60.0)
    assert budget.after_epoch(3, 20.0, planned=4) is None  # on plan
    budget = Budget(100.0, started=now - 20.0)
    assert budget.after_epoch(4, 10.0, planned=5) is None  # more fit, but the last epoch is under way
    assert budget.replans == []


def test_the_budget_chooses_the_net_only_where_it_was_left_open():
    from cvkit.files.config import TrainConfig
    from cvkit.train.budget_nets import WIDER_NETS, net_is_open

    assert net_is_open(TrainConfig(data="d", budget="10m"))
    for given in ({"base": 16}, {"depth": 3}, {"arch": "lenet5"}, {"weights": "w.safetensors"}, {"pretrained": True}):
        assert not net_is_open(TrainConfig(data="d", budget="10m", **given)), given
    assert all(options["base"] > 16 and epochs >= 1 for options, epochs in WIDER_NETS)
