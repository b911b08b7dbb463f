"""``cvkit convolutionalize``: a classifier turned fully convolutional, and dense class score maps."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer

from cvkit.cli.common import emit, state
from cvkit.cli.options import Force, Out
from cvkit.errors import OptionError
from cvkit.progress import console


def convolutionalize_command(
    run: Annotated[Path, typer.Argument(help="A run directory written by 'cvkit train'.")],
    inputs: Annotated[Optional[list[str]], typer.Argument(
        help="Images to make score maps of (each at least the training size): image files, folders, or CSV files "
             "with a 'path' column.", show_default=False)] = None,
    image: Annotated[Optional[list[str]], typer.Option(
        "--image", hidden=True, help="Deprecated: give the images after RUN.")] = None,
    stitch: Annotated[bool, typer.Option("--stitch", help=(
        "Shift-and-stitch: a map as dense as the input (one cell per pixel), from stride x stride shifted passes."))] = False,
    upsample: Annotated[bool, typer.Option("--upsample", help=(
        "Maps in the image's own frame: each cell's score at the centre of its receptive field, interpolated."))] = False,
    top: Annotated[int, typer.Option(help="Classes shown in each heatmap PNG.")] = 3,
    segmenter: Annotated[Optional[str], typer.Option(help=(
        "upsample or stitch: write the converted run as a segmenter (task segment) that labels each pixel with "
        "the best class of its score maps in the image's frame, for 'cvkit evaluate' and 'cvkit predict' (no "
        "training: the classifier's classes must be the segmentation dataset's)."))] = None,
    data: Annotated[Optional[Path], typer.Option(help=(
        "With --segmenter: the segmentation dataset whose classes.json the segmenter follows (the classifier's "
        "classes by name, in the dataset's order)."))] = None,
    out: Out = None,
    force: Force = False,
) -> None:
    """Turn RUN's fully connected layers into convolutions with the same weights and write the result as a
    run (model.json marked "convolutional": true) with convolutional.json (output stride, receptive field,
    centre of cell (0, 0)). For each INPUT image, per-class probability maps (<stem>_scores.npy, classes x H' x W'),
    a heatmap PNG of the top classes and a label map PNG; unreadable images and images smaller than the
    training size are skipped and listed in rejected.csv.

    Default --out: RUN/convolutional (replaced whole when run again).

    Example: cvkit convolutionalize runs/fmnist street.png photos/ --upsample
    """
    from cvkit.convolutionalize.command import convolutionalize

    if top < 1:
        raise OptionError(f"--top {top} must be at least 1")
    if image:
        warnings.warn("--image is deprecated: give the images after RUN (cvkit convolutionalize RUN a.png b.png "
                      "folder/)", FutureWarning, stacklevel=1)
    images = [*(image or []), *(inputs or [])]
    result = convolutionalize(run, out, images, stitch, upsample, top, force, segmenter, data)
    if not state.quiet:
        rf = result.rf
        console.print(f"equivalence at the training size: max |converted - original| = {result.max_difference:.2e}",
                      highlight=False)
        console.print(f"output stride {rf.stride[0]}x{rf.stride[1]} px, receptive field {rf.size[0]}x{rf.size[1]} px, "
                      f"cell (0, 0) centred at (y, x) = ({rf.centre[0]:g}, {rf.centre[1]:g})", highlight=False)
        for (path, shape), name in zip(result.maps, result.names):
            console.print(f"{path}: score maps {' x '.join(str(s) for s in shape)} in {name}_scores.npy",
                          highlight=False)
        for path, why in result.rejected:
            console.print(f"[yellow]skipped[/] {path}: {why}", highlight=False)
    emit(str(result.out))


def register(app: typer.Typer) -> None:
    app.command("convolutionalize")(convolutionalize_command)
