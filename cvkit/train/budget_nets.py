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
from typing import Any

import torch

from cvkit.device import autocast, set_memory_format
from cvkit.files.config import TrainConfig

# (smallcnn options, the fewest epochs of them that beat the default on val in the same time)
WIDER_NETS: tuple[tuple[dict[str, int], int], ...] = (({"base": 32}, 12),)
TIMED_STEPS = 3  # each net: one warm-up step, then the best of these


def net_is_open(cfg: TrainConfig) -> bool:
    """Whether the user left the net for ``--budget`` to choose."""
    return (cfg.arch == "smallcnn" and cfg.base is None and cfg.depth is None and not cfg.weights
            and not cfg.pretrained)


def step_seconds(model: torch.nn.Module, x: torch.Tensor, precision: str) -> float:
    """Best-of time of a forward, backward and Adam step of ``model`` on ``x`` (the loss does not change
    the cost: the sum of the outputs)."""
    optimizer = torch.optim.Adam(model.parameters(), 1e-9)
    best = float("inf")
    for i in range(TIMED_STEPS + 1):
        start = time.perf_counter()
        with autocast(x.device, precision):
            loss = model(x).float().sum()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if x.device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            best = min(best, time.perf_counter() - start)
    return best


def wider_net(trainer: Any, plan: Any) -> dict[str, Any] | None:
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
        own = step_seconds(build({}), x, trainer.precision)
        for options, fewest in sorted(WIDER_NETS, key=lambda n: -n[0]["base"]):
            ratio = step_seconds(build(options), x, trainer.precision) / own
            epochs = plan(trainer.step_seconds() * ratio)
            if epochs >= fewest:
                return {"options": options, "epochs": epochs, "step_ratio": round(ratio, 2), "needs_epochs": fewest}
    finally:
        torch.set_rng_state(gen_state)
    return None
