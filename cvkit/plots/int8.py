"""``int8.png``: what ``export --int8`` gained and lost, fp32 against int8: file size, latency, val figure."""

from __future__ import annotations

import os

from cvkit.plots import _figure, _save

COLOURS = {"run": "tab:gray", "fp32": "tab:blue", "int8": "tab:orange"}


def plot_int8(size_bytes: dict[str, int], latency_ms: dict[str, dict[str, float]], val_metric: str,
              val: dict[str, float | None], path: str | os.PathLike) -> None:
    """Three bar panels: the files' sizes (MB), the latency per batch size (ms, onnxruntime) and the val
    figure of the run, the fp32 file and the int8 file (left out when the dataset has no val split)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    fig = _figure(10, 3.2)
    ax = fig.add_subplot(1, 3, 1)
    names = list(size_bytes)
    bars = ax.bar(names, [size_bytes[n] / 1e6 for n in names], color=[COLOURS[n] for n in names])
    ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.set_title("file size (MB)", fontsize=9)

    ax = fig.add_subplot(1, 3, 2)
    batches = list(next(iter(latency_ms.values())))
    width = 0.8 / len(latency_ms)
    for j, (name, by_batch) in enumerate(latency_ms.items()):
        xs = [i + (j - (len(latency_ms) - 1) / 2) * width for i in range(len(batches))]
        bars = ax.bar(xs, [by_batch[b] for b in batches], width, label=name, color=COLOURS[name])
        ax.bar_label(bars, fmt="%.3g", fontsize=7)
    ax.set_xticks(range(len(batches)), [f"batch {b}" for b in batches])
    ax.set_yscale("log")  # batch 64 takes tens of times batch 1's milliseconds
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # text is not TeX here: no $10^{1}$
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_title("latency (ms, onnxruntime, CPU)", fontsize=9)
    ax.legend(fontsize=8, loc="upper left")

    ax = fig.add_subplot(1, 3, 3)
    known = {n: v for n, v in val.items() if v is not None}
    if known:
        bars = ax.bar(list(known), list(known.values()), color=[COLOURS[n] for n in known])
        ax.bar_label(bars, fmt="%.4f", fontsize=8)
        low = min(known.values())
        ax.set_ylim(max(0.0, low - 0.1 * (abs(low) or 1)), None)
    else:
        ax.text(0.5, 0.5, "no val split", ha="center", va="center", transform=ax.transAxes)
    ax.set_title(val_metric, fontsize=9)
    _save(fig, path)
