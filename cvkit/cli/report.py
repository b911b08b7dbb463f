"""``cvkit report``: one static HTML page that shows a run, compares runs, or sums up a crossval folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from cvkit.cli.common import emit, state
from cvkit.cli.options import BatchSize, Json, Out
from cvkit.progress import console


def report_command(
    runs: Annotated[list[Path], typer.Argument(help="A run directory; several to compare them; or a crossval folder.")],
    data: Annotated[Optional[Path], typer.Option(help="Dataset directory (default: the one each run was trained on).")] = None,
    split: Annotated[str, typer.Option(help="The split the page scores: train, val or test.")] = "test",
    out: Out = None,
    single_file: Annotated[bool, typer.Option("--single-file", help=(
        "Embed the pictures in index.html (data: URIs), so the page is one file to send."))] = False,
    neighbours: Annotated[int, typer.Option(help=(
        "Show each worst image's K nearest training images (by the run's penultimate features); "
        "0: only where the run has a retrieval index."))] = 0,
    top: Annotated[int, typer.Option(help="How many worst images (highest loss) to show.")] = 8,
    batch_size: BatchSize = 512,
    as_json: Json = False,
) -> None:
    """Write one self-contained HTML page about RUN: what it is, its training curves, its metrics on the split
    (per-class table, confusion matrix), its worst images with their CAMs, calibration and augmentation.

    Several RUNs are compared side by side (give --out); a crossval folder shows its summary table and error
    bars. The page (OUT/index.html, default RUN/report/) opens from the file system with no server and loads
    nothing from any other host. What the run's folders already hold is reused; what is missing (for example
    'cvkit evaluate' on the split) is computed into OUT/computed/ and listed.

    Example: cvkit report runs/fmnist && xdg-open runs/fmnist/report/index.html
    """
    from cvkit.report import report

    result = report([str(r) for r in runs], data, split, out, single_file, neighbours, top, state.device, batch_size)
    if not state.quiet:
        console.print(f"report of {len(runs)} {'folder' if len(runs) == 1 else 'folders'} ({result.kind}): "
                      f"{result.page}", highlight=False, soft_wrap=True)
    emit(json.dumps({"page": str(result.page), "kind": result.kind, "computed": result.computed}) if as_json
         else str(result.page))


def register(app: typer.Typer) -> None:
    app.command("report")(report_command)
