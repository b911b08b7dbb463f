"""Several runs' training curves in one picture: what ``cvkit report RUN1 RUN2 ...`` shows side by side."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from cvkit.plots import _figure, _save

if TYPE_CHECKING:
    import pandas as pd


def val_metric(metrics: "pd.DataFrame") -> str | None:
    """The task's val metric column of a ``metrics.csv`` frame (``val_acc``, ``val_map``, ...), if it has one."""
    return next((c for c in metrics.columns if c.startswith("val_") and c != "val_loss"), None)


def plot_runs_curves(curves: Mapping[str, "pd.DataFrame"], path: str | os.PathLike,
                     best: Mapping[str, int] | None = None) -> None:
    """Each run's val metric (left) and losses (right: train solid, val dashed) per epoch, one colour per run,
    from its ``metrics.csv`` frame; ``best`` (run -> epoch) rings the epoch whose weights each run kept."""
    from matplotlib.ticker import MaxNLocator

    if not curves:
        raise ValueError("give the curves of at least one run")
    for name, frame in curves.items():
        if "epoch" not in frame.columns:
            raise ValueError(f"the metrics of {name} have no 'epoch' column (metrics.csv written by 'cvkit train')")
    best = best or {}
    metric = next((m for m in map(val_metric, curves.values()) if m is not None), "val_acc")
    fig = _figure(11, 4.6)
    panels = fig.subplots(1, 2)
    colours = [f"C{i % 10}" for i in range(len(curves))]
    for (name, frame), colour in zip(curves.items(), colours):
        lines = ((panels[0], metric, "-", name), (panels[1], "train_loss", "-", f"{name} train"),
                 (panels[1], "val_loss", "--", f"{name} val"))
        for ax, column, style, label in lines:
            if column not in frame.columns:
                continue
            values = frame[["epoch", column]].astype(np.float64).dropna()
            if not len(values):
                continue
            # markers keep a run of one epoch visible
            ax.plot(values["epoch"], values[column], style, marker="o", markersize=3, color=colour, label=label)
            at = values[values["epoch"] == best.get(name)]
            if column.startswith("val_") and len(at):
                ax.plot(at["epoch"], at[column], "o", markersize=10, markerfacecolor="none", markeredgecolor=colour,
                        markeredgewidth=1.5)
    last = max((int(f["epoch"].max()) for f in curves.values() if len(f)), default=1)
    for ax, title in zip(panels, (f"{metric} (ring: the epoch each run kept)", "loss (train solid, val dashed)")):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        if last <= 12:  # every epoch a tick; a run of one epoch stays in the middle
            ax.set_xticks(range(1, last + 1))
            ax.set_xlim(0.5, last + 0.5)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    _save(fig, path)
