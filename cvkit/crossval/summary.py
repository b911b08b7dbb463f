"""Results of a cross-validation, read back from its fold runs: ``results.csv``, ``summary.csv``, the plot,
and the configuration with the best mean validation metric.

The full run and ``crossval summarize`` both build these from the run directories alone, so folds
trained by separate ``--fold`` runs give the same tables as one run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cvkit.crossval.folds import FoldPlan
from cvkit.crossval.grid import value_label
from cvkit.crossval.runs import config_for, fold_dir, fold_result, run_finished
from cvkit.errors import ManifestError
from cvkit.files.crossval import BestConfig, CrossvalPlan, write_results, write_summary


@dataclass
class Collected:
    results: pd.DataFrame  # one row per finished fold run
    missing: list[tuple[str, int]]  # (config, fold) of the runs not finished


def collect(out: Path, plan: CrossvalPlan, folds: FoldPlan, device: str = "auto") -> Collected:
    """The result of every finished fold run under ``out``, in plan order."""
    rows, missing = [], []
    for config in plan.configs:
        cfg = config_for(plan, config["options"], out, device)
        for i in range(plan.k):
            run = fold_dir(out, config["name"], i, plan.k)
            train, val = folds.selections(i)
            if not run_finished(run, cfg, train, val):
                missing.append((config["name"], i))
                continue
            grid = {k: _cell(config["options"][k]) for k in plan.grid}
            rows.append({"config": config["name"], **grid, "fold": i, **fold_result(run)})
    columns = ["config", *plan.grid, "fold", "val_acc", "val_loss", "best_epoch", "epochs", "seconds"]
    return Collected(pd.DataFrame(rows, columns=columns), missing)


def _cell(value: Any) -> Any:
    """A grid value as a CSV cell (lists as the grid writes them)."""
    return value_label(value) if isinstance(value, (list, tuple)) else value


def _higher_is_better(plan: CrossvalPlan) -> bool:
    """Whether the task's val metric (``val_acc`` stands for it: accuracy, mAP, MAE...) rises as runs improve."""
    from cvkit.files.dataset import DatasetInfo
    from cvkit.tasks import TASKS

    try:
        name = plan.base.get("task") or DatasetInfo.read(plan.data).task
    except ManifestError:  # the dataset is gone: 'summarize' still ranks the folds it finds
        name = None
    task = TASKS.get(name)
    return task.higher_is_better if task is not None else True


def summarize_results(results: pd.DataFrame, plan: CrossvalPlan) -> pd.DataFrame:
    """Per configuration: mean and sample standard deviation over its folds, best first by ``--monitor``
    (val_acc, the task's val metric: highest, or lowest for an error such as regress's MAE; val_loss:
    lowest), ties broken by the smaller spread, then the grid's order."""
    monitor = plan.base.get("monitor", "val_acc")
    rows = []
    for order, config in enumerate(plan.configs):
        part = results[results["config"] == config["name"]]
        row: dict[str, Any] = {"config": config["name"], **{k: _cell(config["options"][k]) for k in plan.grid},
                               "folds": len(part)}
        for metric in ("val_acc", "val_loss"):
            values = part[metric].to_numpy(dtype=np.float64)
            row[f"{metric}_mean"] = float(values.mean()) if len(values) else math.nan
            row[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else math.nan
        row["best_epoch_mean"] = float(part["best_epoch"].mean()) if len(part) else math.nan
        row["seconds"] = round(float(part["seconds"].sum()), 3)
        row["_order"] = order
        rows.append(row)
    frame = pd.DataFrame(rows)
    sign = -1.0 if monitor == "val_acc" and _higher_is_better(plan) else 1.0
    frame["_key"] = sign * frame[f"{monitor}_mean"]
    frame["_spread"] = frame[f"{monitor}_std"].fillna(math.inf)
    frame = frame.sort_values(["_key", "_spread", "_order"], na_position="last", kind="stable")
    frame.insert(0, "rank", range(1, len(frame) + 1))
    return frame.drop(columns=["_key", "_spread", "_order"]).reset_index(drop=True)


def choose_best(summary: pd.DataFrame, results: pd.DataFrame, plan: CrossvalPlan) -> BestConfig:
    """The first configuration of ``summary``, and the refit's epochs: its folds' mean best epoch, rounded."""
    monitor = plan.base.get("monitor", "val_acc")
    top = summary.iloc[0]
    name = str(top["config"])
    options = next(c["options"] for c in plan.configs if c["name"] == name)
    epochs = [int(e) for e in results.loc[results["config"] == name, "best_epoch"]]
    std = float(top[f"{monitor}_std"])
    return BestConfig(name, options, monitor, float(top[f"{monitor}_mean"]), None if math.isnan(std) else std,
                      len(epochs), epochs, max(1, math.floor(float(np.mean(epochs)) + 0.5)))


def write_tables(out: Path, plan: CrossvalPlan, collected: Collected) -> pd.DataFrame:
    """``results.csv``, ``summary.csv`` and ``crossval.png`` from what the fold runs wrote; returns the summary."""
    from cvkit.plots import plot_crossval

    monitor = plan.base.get("monitor", "val_acc")
    write_results(out, collected.results)
    summary = summarize_results(collected.results, plan)
    write_summary(out, summary)
    values = [collected.results.loc[collected.results["config"] == name, monitor].tolist()
              for name in summary["config"]]
    plot_crossval(summary["config"].tolist(), summary[f"{monitor}_mean"].tolist(),
                  summary[f"{monitor}_std"].tolist(), values, monitor, out / "crossval.png")
    return summary
