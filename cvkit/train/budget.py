"""``train --budget``: as many epochs as fit in a wall-clock budget, with the schedule planned for them.

The first plan comes from the speed probe's timed training steps (the same steps training runs:
augmentation, forward, backward, optimizer) plus an estimate of validation; after every epoch the
plan is redone from the epochs' measured wall time (validation, checkpoint and all), so a machine
that runs slower or faster than the probe said still ends inside the budget. When the plan changes,
the schedule is rebuilt for the new total from the step reached, so it still anneals at the end.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

# Time kept back for what follows the last epoch (curves.png, the last writes) and for the
# process's own start-up: a fixed part and a share of the budget.
RESERVE_SECONDS = 3.0
RESERVE_SHARE = 0.03
# Measured steps run a little slower than the probe's best-of-3 (batch gathering, Python between
# steps): the first plan pads the probe's step time by this much. On Fashion-MNIST the probe said
# 167-171 ms and epochs took 170 ms a step; a larger padding left a fifth of a 10-minute budget unused
# (bench/results/budget_fmnist.json), and the replans after each epoch correct what is left.
STEP_PADDING = 1.05
# An evaluation image costs about this share of a training image (a forward pass, no backward).
EVAL_SHARE = 0.35
# A budget never plans more epochs than this: past it the schedule, not the clock, is the limit.
MAX_BUDGET_EPOCHS = 300


@dataclass
class Budget:
    seconds: float
    started: float = field(default_factory=time.perf_counter)
    epoch_seconds: list[float] = field(default_factory=list)
    replans: list[dict] = field(default_factory=list)

    @property
    def usable(self) -> float:
        return self.seconds * (1 - RESERVE_SHARE) - RESERVE_SECONDS

    def remaining(self) -> float:
        return self.usable - (time.perf_counter() - self.started)

    def first_plan(self, step_seconds: float, steps_per_epoch: int, val_images: int, train_batch: int) -> tuple[int, str]:
        """Epochs for the whole budget from the probe's step time; and the reason, for the log."""
        per_image = step_seconds / max(1, train_batch)
        epoch = STEP_PADDING * step_seconds * steps_per_epoch + EVAL_SHARE * per_image * val_images
        left = self.remaining()
        epochs = max(1, min(MAX_BUDGET_EPOCHS, math.floor(left / epoch)))
        why = (f"--budget {self.seconds:g} s: {epochs} epochs of about {epoch:.1f} s "
               f"({steps_per_epoch} steps of {step_seconds * 1000:.0f} ms + validation), {left:.0f} s left for them")
        if epochs == MAX_BUDGET_EPOCHS:
            why += f" (at most {MAX_BUDGET_EPOCHS} epochs: the budget is not all used)"
        elif left < epoch:
            why += "; one epoch takes longer than the budget, so the run runs over: give a longer --budget"
        return epochs, why

    def after_epoch(self, epoch: int, seconds: float, planned: int) -> int | None:
        """A new total number of epochs when the measured epochs say ``planned`` is off; else None.

        Fewer epochs as soon as the next planned one would end past the budget; more when one more
        fits, except in the last planned epoch's place (its schedule is already annealing)."""
        self.epoch_seconds.append(seconds)
        recent = self.epoch_seconds[-3:]
        per_epoch = max(sum(recent) / len(recent), seconds)
        fit = epoch + max(0, math.floor(self.remaining() / per_epoch))
        fit = min(fit, MAX_BUDGET_EPOCHS)
        if fit < planned or (fit > planned and epoch < planned - 1):
            self.replans.append({"after_epoch": epoch, "epochs": fit, "epoch_seconds": round(per_epoch, 2)})
            return fit
        return None
