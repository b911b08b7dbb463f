"""``train --budget`` chooses the net as well as the epochs: the default smallcnn, or a wider one when
the budget fits enough epochs of it.

A wider net learns more per epoch but runs fewer epochs in the same time, so it only wins past some
number of epochs. The table below holds, for each wider net, the fewest epochs at which it beat the
narrower default on **val** at the same wall time (bench/bench_budget_fmnist.py, part ``val``, in
bench/results/budget_fmnist.json). Its step time is timed here against the default's, on the batch
the speed probe used, so the choice follows this machine's speed, not a fixed number of minutes.

The choice is only made where the user left the net open: ``--arch smallcnn`` (the default) with no
``--base``, ``--depth``, ``--weights`` or ``--pretrained``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from typing import TYPE_CHECKING

import torch

from cvkit.device import autocast, set_memory_format
from cvkit.files.config import TrainConfig

if TYPE_CHECKING:
    from cvkit.train.trainer import Trainer

# (smallcnn options, the fewest epochs of them that beat the default on val in the same time)
WIDER_NETS: tuple[tuple[dict[str, int], int], ...] = (({"base": 32}, 6),)
WARMUP_STEPS = 3  # each net's first steps (kernel selection, allocations: the first take 10-20x longer) are not timed
TIMED_ROUNDS = 5  # then the two nets' steps alternate, so a drift in the machine's speed hits both alike
# A wider net's step takes at least this many times the default's (its MACs are 4x): a budget that does
# not fit enough epochs even at this ratio keeps the default without timing anything.
FASTEST_RATIO = 1.5


def net_is_open(cfg: TrainConfig) -> bool:
    """Whether the user left the net for ``--budget`` to choose."""
    return (cfg.arch == "smallcnn" and cfg.base is None and cfg.depth is None and not cfg.weights
            and not cfg.pretrained)


def _stepper(model: torch.nn.Module, x: torch.Tensor, precision: str) -> Callable[[], float]:
    """A timed forward, backward and Adam step of ``model`` on ``x`` (the loss does not change the cost:
    the sum of the outputs)."""
    optimizer = torch.optim.Adam(model.parameters(), 1e-9)

    def step() -> float:
        start = time.perf_counter()
        with autocast(x.device, precision):
            loss = model(x).float().sum()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if x.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    return step


def step_ratio(own: torch.nn.Module, other: torch.nn.Module, x: torch.Tensor, precision: str) -> float:
    """How many times longer a training step of ``other`` takes than one of ``own`` (best of each)."""
    steps = [_stepper(own, x, precision), _stepper(other, x, precision)]
    for step in steps:
        for _ in range(WARMUP_STEPS):
            step()
    best = [float("inf"), float("inf")]
    for _ in range(TIMED_ROUNDS):
        for i, step in enumerate(steps):
            best[i] = min(best[i], step())
    return best[1] / best[0]


def wider_net(trainer: "Trainer", plan: Callable[[float], int]) -> dict[str, Any] | None:
    """The widest net of WIDER_NETS that ``plan(step seconds)`` (the budget's epochs for a step time)
    gives enough epochs, with what was timed; None to keep the trainer's own net.

    ``trainer``: the default net's, built and probed; the wider nets' step times are its probed step
    time times how much slower their raw steps are than its own on the probe's batch."""
    from cvkit.models import create_model

    cfg, data = trainer.cfg, trainer.data
    images, _ = next(trainer.batches.epoch(torch.Generator().manual_seed(0)))
    x = trainer.pre(images)

    def build(options: dict[str, Any]) -> torch.nn.Module:
        model = create_model(cfg.arch, trainer.task.num_outputs, data.in_chans, data.input_size, init=cfg.init,
                             **{**cfg.model_options(), **options}).to(trainer.device)
        set_memory_format(model, trainer.memory_format)
        return model.train()

    gen_state = torch.get_rng_state()
    try:
        own = build({})
        for options, fewest in sorted(WIDER_NETS, key=lambda n: -n[0]["base"]):
            if plan(trainer.step_seconds() * FASTEST_RATIO) < fewest:
                continue
            ratio = step_ratio(own, build(options), x, trainer.precision)
            epochs = plan(trainer.step_seconds() * ratio)
            if epochs >= fewest:
                return {"options": options, "epochs": epochs, "step_ratio": round(ratio, 2), "needs_epochs": fewest}
    finally:
        torch.set_rng_state(gen_state)
    return None
