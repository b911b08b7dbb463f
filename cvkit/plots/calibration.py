"""Reliability diagrams: how often predictions of each confidence were right, before and after calibration."""

from __future__ import annotations

import os

import numpy as np

from cvkit.plots import _figure, _save


def plot_reliability(panels: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], path: str | os.PathLike,
                     xlabel: str = "confidence") -> None:
    """One panel per title: for each equal-width confidence bin, the rate of right predictions (bars) against
    the diagonal of a perfectly calibrated model, the gap to the bin's mean confidence shaded, and the
    share of predictions per bin underneath. ``panels``: title -> (mean confidence, rate, count) per bin."""
    fig = _figure(4.2 * len(panels), 4.6)
    axes = fig.subplots(2, len(panels), squeeze=False, gridspec_kw={"height_ratios": [4, 1]})
    for col, (title, (mean_conf, rate, count)) in enumerate(panels.items()):
        n_bins = len(count)
        edges = np.linspace(0.0, 1.0, n_bins + 1)
        centres, width = (edges[:-1] + edges[1:]) / 2, 1.0 / n_bins
        used = count > 0
        ax = axes[0, col]
        ax.bar(centres[used], rate[used], width=width, edgecolor="black", linewidth=0.5, color="tab:blue",
               label="right")
        low, high = np.minimum(rate, mean_conf)[used], np.maximum(rate, mean_conf)[used]
        ax.bar(centres[used], high - low, bottom=low, width=width, fill=False, hatch="///", edgecolor="tab:red",
               linewidth=0, label="gap to mean confidence")
        ax.plot([0, 1], [0, 1], "k--", linewidth=1)
        ax.set(xlim=(0, 1), ylim=(0, 1), title=title, ylabel="rate right" if col == 0 else None)
        ax.legend(loc="upper left", fontsize=8)
        share = axes[1, col]
        share.bar(centres, count / max(1, count.sum()), width=width, color="grey")
        share.set(xlim=(0, 1), xlabel=xlabel, ylabel="share" if col == 0 else None)
    _save(fig, path)
