"""The learning-rate range test (Smith 2015, as in fastai's lr_find): raise the learning rate
exponentially over a short run and watch the loss; a good lr sits where it falls fastest."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cvkit.progress import progress_bar
from cvkit.train.config import TrainConfig


@dataclass
class LrFindResult:
    lrs: list[float]
    losses: list[float]  # smoothed
    suggestion: float | None
    csv: Path
    png: Path


def suggest_lr(lrs: list[float], losses: list[float]) -> float | None:
    """The lr of the steepest descent of the smoothed loss (in log-lr), ignoring the noisy ends."""
    if len(losses) < 5:
        return None
    slopes = np.gradient(np.asarray(losses), np.log(np.asarray(lrs)))
    lo, hi = len(losses) // 10, max(len(losses) // 10 + 1, len(losses) - len(losses) // 10)
    return float(lrs[lo + int(np.argmin(slopes[lo:hi]))])


def lr_find(cfg: TrainConfig, start_lr: float = 1e-6, end_lr: float = 10.0, steps: int = 100) -> LrFindResult:
    """Run the range test on ``cfg``'s model and data; writes lr_find.csv and lr_find.png into ``cfg.out``."""
    import pandas as pd

    from cvkit.evaluate.plots import plot_lr_find
    from cvkit.io import write_csv
    from cvkit.train.trainer import Trainer

    trainer = Trainer(cfg)
    steps = max(10, min(steps, len(trainer.batches) * 5))
    factor = (end_lr / start_lr) ** (1 / (steps - 1))
    lrs, losses, smooth, best = [], [], 0.0, math.inf
    step = 0
    with progress_bar("lr find", total=steps, unit="step") as bar:
        while step < steps:
            for images, labels in trainer.batches.epoch(trainer.gen):
                lr = start_lr * factor**step
                for group in trainer.optimizer.param_groups:
                    group["lr"] = lr
                loss, _ = trainer._step(images, labels, trainer.precision, advance_schedule=False)
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
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "lr_find.csv", pd.DataFrame({"lr": lrs, "loss": losses}))
    plot_lr_find(lrs, losses, suggestion, out / "lr_find.png")
    return LrFindResult(lrs, losses, suggestion, out / "lr_find.csv", out / "lr_find.png")
