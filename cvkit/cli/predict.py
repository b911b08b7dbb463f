"""``cvkit predict``: top-k classes for new images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cvkit.cli.common import emit, state
from cvkit.cli.options import BatchSize, Calibration, Inputs, NoTta, Out, Threshold, Tta, TtaCommand, Workers, tta_choice
from cvkit.errors import OptionError
from cvkit.progress import console


def predict_command(
    run: Annotated[Path, typer.Argument(help="A run directory written by 'cvkit train'.")],
    inputs: Inputs,
    k: Annotated[int, typer.Option("-k", "--top-k", help="Classes to show per image.")] = 5,
    out: Out = None,
    tta: Tta = None,
    no_tta: NoTta = False,
    batch_size: BatchSize = 256,
    workers: Workers = None,
    threshold: Threshold = None,
    probs: Annotated[bool, typer.Option("--probs", help="Segment runs: also write each image's per-class "
                                        "probabilities, probs/NAME.npy (K x H x W, float16).")] = False,
    fit: Annotated[bool, typer.Option("--fit", help="Segment runs: resize each image to the run's input size (as "
                                      "training images were) instead of predicting it at its own size in tiles; the "
                                      "label map is resized back.")] = False,
    calibration: Calibration = True,
) -> None:
    """Predict the class of each INPUT image with RUN's model; unreadable images are reported and skipped.

    Writes predictions.csv (path, predicted, probability, one column per class; for a multi-label run the
    labels above their thresholds) and rejected.csv into --out
    (default: RUN/predict, replaced whole when it is run again). A segment run predicts each image at its own
    size in overlapping tiles and writes masks/NAME.png (a palette PNG of class indices), overlays/NAME.png and
    the pixels per class in predictions.csv.

    Example: cvkit predict runs/fmnist photos/ -k 3
    """
    from cvkit.predict.command import predict

    if k < 1:
        raise OptionError(f"-k {k} must be at least 1 (the number of classes to show per image)")
    result = predict(run, inputs, out, tta_choice(tta, no_tta), state.device, batch_size, workers, threshold, probs,
                     fit, calibration)
    if not state.quiet:
        from rich.table import Table

        table = Table(title=f"{len(result.paths)} image(s), {run}")
        table.add_column("image")
        for i in range(min(k, len(result.classes))):
            table.add_column(f"#{i + 1}")
        for path, top in zip(result.paths, result.top_k(k)):
            table.add_row(Path(path).name, *(f"{name} {p:.3f}" for name, p in top))
        console.print(table)
        for path, why in result.rejected:
            console.print(f"[yellow]skipped[/] {path}: {why}", highlight=False)
    emit(str(result.out / "predictions.csv"))


def register(app: typer.Typer) -> None:
    app.command("predict", cls=TtaCommand)(predict_command)
