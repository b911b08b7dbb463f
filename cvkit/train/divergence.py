"""The NaN watch: a run whose loss, weights or val loss stop being finite ends with an error, and the
run's files keep the last good epoch (they are written after an epoch only, and only once it is checked).

On a GPU the loss is read back every 20 steps only (a read waits for the GPU): the first bad step and
its loss are kept on the device, so the check costs no synchronisation.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cvkit.errors import TrainingDiverged


class DivergenceWatch:
    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.bad_step = torch.full((), -1, dtype=torch.int64, device=device)
        self.bad_loss = torch.zeros((), device=device)

    def see(self, step: int, loss: torch.Tensor) -> None:
        """Remember ``step`` if its loss is the first that is not finite."""
        first = (self.bad_step < 0) & ~torch.isfinite(loss)
        self.bad_step = torch.where(first, step, self.bad_step)
        self.bad_loss = torch.where(first, loss.float(), self.bad_loss)

    def stop_if_diverged(self, epoch: int, advice: str) -> None:
        step = int(self.bad_step)
        if step >= 0:
            raise TrainingDiverged(f"the loss became {float(self.bad_loss)} at epoch {epoch}, step {step + 1}; {advice}")


def advice(base_lr: float, precision: str) -> str:
    hint = f"lower --lr (the base lr is {base_lr:g})"
    return hint if precision == "fp32" else f"{hint} or try --precision fp32"


def check_finite(model: nn.Module, epoch: int, val_loss: float | None, hint: str) -> None:
    """Refuse to keep an epoch whose weights, BatchNorm statistics or val loss are not finite, however
    they got there (an optimizer step after the last finite loss, an overflow, a bad option)."""
    tensors = [t for t in model.state_dict().values() if t.is_floating_point()]
    bad = int(sum((~torch.isfinite(t)).sum() for t in tensors)) if tensors else 0
    if bad:
        raise TrainingDiverged(f"the weights became NaN or infinite in epoch {epoch} ({bad:,} values); {hint}; "
                               f"the run keeps its last good epoch")
    if val_loss is not None and not math.isfinite(val_loss):
        raise TrainingDiverged(f"the val loss became {val_loss} in epoch {epoch} (the weights are finite, their "
                               f"outputs are not); {hint}; the run keeps its last good epoch")
