"""``train --ema DECAY``: an exponential moving average of the weights, the model that is validated and saved.

After every optimizer step each floating-point tensor of the model's state (weights and BatchNorm's
running statistics) moves towards the live one: ``avg = d * avg + (1 - d) * live``, one fused
``lerp`` over all of them. The decay warms up as in timm's ``ModelEmaV3``:
``d = min(DECAY, (1 + n) / (10 + n))`` at step n, so the average of a run from scratch does not hold
on to its random initial weights (without it, EMA of a short run does worse than no EMA).
Integer buffers (BatchNorm's step counter) are copied.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def warmed_decay(decay: float, updates: int) -> float:
    """The decay used at update number ``updates`` (1 for the first)."""
    return min(decay, (1 + updates) / (10 + updates))


class WeightAverage:
    """A copy of ``model`` (same device and memory format, no gradients) kept as the moving average."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        # The tensors themselves (keep_vars), paired once: a state_dict() per step cost as much as the update.
        mine, theirs = self.model.state_dict(keep_vars=True), model.state_dict(keep_vars=True)
        if list(mine) != list(theirs):
            raise ValueError("the averaged model and the trained model have different tensors")
        self._source = model
        floats = [k for k in mine if mine[k].is_floating_point()]
        self._averaged, self._live = [mine[k] for k in floats], [theirs[k] for k in floats]
        self._copied = [(mine[k], theirs[k]) for k in mine if not mine[k].is_floating_point()]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One step of the average towards ``model``'s current state (the model it was made from)."""
        if model is not self._source:
            raise ValueError("a WeightAverage follows the model it was made from")
        self.updates += 1
        torch._foreach_lerp_(self._averaged, self._live, 1 - warmed_decay(self.decay, self.updates))
        for a, b in self._copied:
            a.copy_(b)

    def state_dict(self) -> dict:
        """What ``last.ckpt`` keeps to resume the average where it was."""
        return {"model": self.model.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = int(state["updates"])
