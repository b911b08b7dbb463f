"""``cvkit normalize``: normalization statistics from the train split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from cvkit.cli.common import emit, state
from cvkit.cli.options import Json, Workers
from cvkit.progress import console


def normalize_command(
    dataset: Annotated[Path, typer.Argument(help="A dataset directory written by 'cvkit prepare'.")],
    size: Annotated[Optional[str], typer.Option(help="N or HxW (default: the size given to prepare).")] = None,
    mode: Annotated[str, typer.Option(help="channel: mean/std per channel; pixel: also the mean image "
                                           "(mean_image.npy) for per-pixel zero-centering.")] = "channel",
    from_arch: Annotated[Optional[str], typer.Option(help="Write the statistics a pretrained timm model expects "
                                                          "instead of computing them.")] = None,
    workers: Workers = None,
    as_json: Json = False,
) -> None:
    """Compute per-channel mean and std over the train split only and write DATASET/stats.json.

    Example: cvkit normalize data/dogs
    """
    from cvkit.files.dataset import Stats
    from cvkit.files.images import parse_size
    from cvkit.normalize import normalize

    stats = normalize(dataset, parse_size(size), mode, from_arch, workers)
    if not state.quiet:
        from rich.table import Table

        names = ["gray"] if len(stats.mean) == 1 else ["red", "green", "blue"]
        where = f"{stats.count:,} train images at {stats.size[0]}x{stats.size[1]}" if stats.split else stats.source
        table = Table(title=f"{Stats.path(dataset)} ({where})")
        for col in ("channel", "mean", "std"):
            table.add_column(col, justify="right" if col != "channel" else "left")
        for name, m, s in zip(names, stats.mean, stats.std):
            table.add_row(name, f"{m:.4f}", f"{s:.4f}")
        console.print(table)
    emit(json.dumps({"format": 1, **stats.to_json()}) if as_json else str(Stats.path(dataset)))


def register(app: typer.Typer) -> None:
    app.command("normalize")(normalize_command)
