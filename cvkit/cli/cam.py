"""``cvkit cam``: class activation maps, boxes from them, and localization/faithfulness figures."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cvkit.cli.common import emit, state
from cvkit.cli.options import BatchSize, Force, Out, ShardOption, Workers, parse_shard
from cvkit.errors import OptionError
from cvkit.progress import console

METHOD_HELP = ("cam (GAP models only), gradcam, gradcam++, scorecam, layercam, eigencam, augmented-gradcam; "
               "repeat the option or separate names with commas to compare methods.")


def cam_command(
    inputs: Annotated[list[str], typer.Argument(
        help="[RUN] then image files, folders or CSV files with a 'path' column. Without a RUN, --run, or "
             "--arch, the newest run under ./runs/ is used.", metavar="[RUN] INPUT...")],
    run: Annotated[Optional[Path], typer.Option("--run", help="The run directory (instead of a first argument).")] = None,
    method: Annotated[list[str], typer.Option("--method", "-m", help=METHOD_HELP)] = ["gradcam"],  # noqa: B006
    class_name: Annotated[Optional[str], typer.Option("--class", help="Explain this class (default: the predicted one).")] = None,
    topk: Annotated[int, typer.Option("--topk", help="Maps for the K most likely classes of each image.")] = 1,
    layer: Annotated[Optional[str], typer.Option(
        "--layer", help="The layer whose feature maps are used (default: the last convolutional stage).")] = None,
    box_threshold: Annotated[float, typer.Option(
        help="The box covers the largest connected region above this fraction of the map's maximum.")] = 0.2,
    boxes: Annotated[Optional[Path], typer.Option(
        help="CSV of true boxes (path,x0,y0,x1,y1[,label], paths relative to the CSV): writes localization.json "
             "(localization accuracy, mean IoU, pointing game).")] = None,
    metrics: Annotated[bool, typer.Option(
        "--metrics", help="Faithfulness per method: deletion and insertion AUC, average drop (faithfulness.json).")] = False,
    arch: Annotated[Optional[str], typer.Option(help="An ImageNet architecture, with --pretrained or --weights.")] = None,
    pretrained: Annotated[bool, typer.Option("--pretrained", help="ImageNet weights of --arch (local cache or download).")] = False,
    weights: Annotated[Optional[Path], typer.Option(help="A local ImageNet weights file for --arch.")] = None,
    out: Out = None,
    batch_size: BatchSize = 32,
    workers: Workers = None,
    force: Force = False,
    shard: ShardOption = None,
) -> None:
    """Class activation maps of images: an overlay PNG and the map (.npy) per image and method, and
    OUT/cams.csv (path,class,score,x0,y0,x1,y1: the box from the map, in the image's pixels).

    Default --out: RUN/cam (replaced whole when run again). --shard I/N (I from 0) explains share I of the sorted
    inputs into OUT/shard-I-of-N, a complete output of its own, so that N machines share a large job.

    Example: cvkit cam runs/shapes photos/ --method gradcam,cam --boxes photos/boxes.csv --metrics
    """
    from cvkit.device import resolve_device
    from cvkit.explain.cam import CamOptions, cam
    from cvkit.explain.subject import is_run, subject

    inputs = list(inputs)
    if run is None and arch is None and inputs and is_run(inputs[0]):
        run = Path(inputs.pop(0))
    if not inputs:
        raise OptionError("no images given; pass image files, folders or CSV files after the RUN")
    methods = [name.strip() for item in method for name in item.split(",") if name.strip()]
    loaded, imagenet = subject(str(run) if run else None, arch, pretrained, str(weights) if weights else None,
                               resolve_device(state.device))
    options = CamOptions(methods, class_name, topk, layer, box_threshold, str(boxes) if boxes else None, metrics,
                         batch_size, workers)
    if not state.quiet:
        where = f"ImageNet weights of {arch}" if imagenet else f"run {loaded.run}"
        console.print(f"Explaining with {where}", highlight=False)
    result = cam(loaded, inputs, out, options, force, parse_shard(shard))
    if not state.quiet:
        _summary(result)
    emit(str(result.out / "cams.csv"))


def _summary(result) -> None:
    from rich.table import Table

    console.print(f"layer {result.layer}; {result.maps} map(s) of {result.images} image(s) in {result.out}",
                  highlight=False)
    table = Table(title="CAM methods")
    columns = ["method", "s/image"]
    if result.localization:
        columns += ["loc. acc", "IoU>=0.5", "mean IoU", "pointing"]
    if result.faithfulness:
        columns += ["deletion AUC", "insertion AUC", "avg drop %"]
    for c in columns:
        table.add_column(c)
    for m in result.methods:
        row = [m, f"{result.seconds.get(m, 0.0) / max(1, result.images):.4f}"]
        if result.localization:
            loc = result.localization.get(m, {})
            row += [f"{loc.get(k, float('nan')):.3f}" for k in ("localization_accuracy", "iou_at_0_5", "mean_iou",
                                                                 "pointing_game")]
        if result.faithfulness:
            f = result.faithfulness[m]
            row += [f"{f['deletion_auc']:.3f}", f"{f['insertion_auc']:.3f}", f"{f['average_drop']:.1f}"]
        table.add_row(*row)
    console.print(table)
    for path, why in result.rejected:
        console.print(f"[yellow]skipped[/] {path}: {why}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("cam")(cam_command)
