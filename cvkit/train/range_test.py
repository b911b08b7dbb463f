"""The learning-rate range test (Smith 2015, as in fastai's lr_find): raise the learning rate
exponentially over a short run and watch the loss; a good lr sits where it falls fastest."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cvkit.errors import OptionError
from cvkit.files.atomic import write_csv
from cvkit.files.config import TrainConfig
from cvkit.files.lock import releasing
from cvkit.files.outputs import check_out
from cvkit.files.owned import own_run
from cvkit.plots import plot_lr_find
from cvkit.progress import progress_bar
from cvkit.train.trainer import Trainer


@dataclass
class LrFindResult:
    lrs: list[float]
    losses: list[float]  # smoothed
    suggestion: float | None
    csv: Path
    png: Path


def suggest_lr(lrs: list[float], losses: list[float]) -> float | None:
    """The lr of the steepest descent of the smoothed loss (in log-lr), ignoring the noisy ends.

    Only the points before the loss first turns non-finite count: a diverged tail has no slope.
    """
    finite = np.isfinite(np.asarray(losses, dtype=np.float64))
    n = int(np.argmin(finite)) if not finite.all() else len(losses)
    if n < 5:
        return None
    slopes = np.gradient(np.asarray(losses[:n], dtype=np.float64), np.log(np.asarray(lrs[:n], dtype=np.float64)))
    lo, hi = n // 10, max(n // 10 + 1, n - n // 10)
    window = slopes[lo:hi]
    if not np.isfinite(window).any():
        return None
    return float(lrs[lo + int(np.nanargmin(np.where(np.isfinite(window), window, np.nan)))])


@releasing  # the --out lock check_out takes is given up on return
def lr_find(cfg: TrainConfig, start_lr: float = 1e-6, end_lr: float = 10.0, steps: int = 100) -> LrFindResult:
    """Run the range test on ``cfg``'s model and data; writes lr_find.csv and lr_find.png into ``cfg.out``."""
    import pandas as pd

    if cfg.optimizer == "perceptron":
        raise OptionError("--lr-find has nothing to find for --optimizer perceptron: from zero weights its "
                          "decisions do not depend on eta (--lr)")
    out = check_out(cfg.out, reads=[cfg.data], own=own_run, force=True)
    trainer = Trainer.build(cfg)
    steps = max(10, min(steps, len(trainer.batches) * 5))
    factor = (end_lr / start_lr) ** (1 / (steps - 1))
    lrs, losses, smooth, best = [], [], 0.0, math.inf
    step = 0
    with progress_bar("lr find", total=steps, unit="step") as bar:
        while step < steps:
            for images, labels in trainer.batches.epoch(trainer.order_gen):
                lr = start_lr * factor**step
                trainer.set_lr(lr)
                loss, _ = trainer.step(images, labels, advance_schedule=False)
                value = float(loss)
                smooth = 0.9 * smooth + 0.1 * value
                debiased = smooth / (1 - 0.9 ** (step + 1))
                lrs.append(lr)
                losses.append(debiased)
                best = min(best, debiased)
                step += 1
                bar.advance()
                if step >= steps or not math.isfinite(value) or debiased > 4 * best:
                    step = steps
                    break
    suggestion = suggest_lr(lrs, losses)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "lr_find.csv", pd.DataFrame({"lr": lrs, "loss": losses}))
    plot_lr_find(lrs, losses, suggestion, out / "lr_find.png")
    return LrFindResult(lrs, losses, suggestion, out / "lr_find.csv", out / "lr_find.png")
