"""``cvkit prepare``: import a dataset into a dataset directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from cvkit.cli.common import emit, seed_or_global, state
from cvkit.cli.options import Force, Json, Seed, Workers
from cvkit.progress import console


def prepare_command(
    source: Annotated[str, typer.Argument(help="Class folders, train/val/test split folders, a folder of IDX files, "
                                               "a CSV of path,label[,split], or torchvision:NAME. --task multilabel: "
                                               "a CSV of path,labels or of path plus one 0/1 column per class. "
                                               "--task localize: a CSV of path,label,x0,y0,x1,y1. --task regress: a "
                                               "CSV of path[,label] and the --targets columns. --task segment: a "
                                               "folder of images (any depth) with --masks, or a CSV of "
                                               "path,mask[,split].")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The dataset directory to write (not inside SOURCE).")],
    val: Annotated[float, typer.Option(help="Fraction for the val split, stratified per class.")] = 0.1,
    test: Annotated[float, typer.Option(help="Fraction for the test split (a source's own test split is kept).")] = 0.1,
    folds: Annotated[int, typer.Option(help="Stratified k-fold ids over train+val in the 'fold' column (0: none).")] = 0,
    size: Annotated[Optional[str], typer.Option(help="N or HxW: build the packed uint8 cache at this size.")] = None,
    channels: Annotated[Optional[int], typer.Option(help="1 or 3 (default: 1 when every image is grayscale).")] = None,
    resize: Annotated[str, typer.Option(help="How --size is reached: crop (shorter side, centre crop) or squash.")] = "crop",
    classes: Annotated[Optional[str], typer.Option(help="IDX sources: class names in label order; multi-label CSVs: "
                                                        "every class, in order. Comma-separated.")] = None,
    root: Annotated[Optional[Path], typer.Option(help="torchvision sources: where the files are or are downloaded.")] = None,
    max_rejected: Annotated[float, typer.Option(help="Stop with an error when more than this fraction of inputs is bad.")] = 0.5,
    max_pixels: Annotated[Optional[int], typer.Option(help="Reject images with more pixels (default: Pillow's limit).")] = None,
    task: Annotated[Optional[str], typer.Option(help="What the targets are for: classify (one class per image), "
                                                     "multilabel (several labels per image), localize (a class and a "
                                                     "box per image), regress (numeric targets) or segment (a class "
                                                     "per pixel); multilabel, localize and regress read a CSV. "
                                                     "Default: classify, or segment with --masks.")] = None,
    label_delim: Annotated[Optional[str], typer.Option(help="--task multilabel: what separates the labels in a "
                                                            "CSV's labels cell (default: a space).")] = None,
    allow_empty: Annotated[bool, typer.Option("--allow-empty", help="--task multilabel: keep images with no label "
                                                                    "(every label negative) instead of refusing them.")] = False,
    targets: Annotated[Optional[str], typer.Option(help="--task regress: the CSV's numeric columns to predict, "
                                                        "comma-separated (with --keypoints: x1,y1,x2,y2,... in pixels).")] = None,
    keypoints: Annotated[bool, typer.Option("--keypoints", help="--task regress: the targets are x,y pairs in the "
                                                                "image's pixels; augmentation moves them.")] = False,
    flip_pairs: Annotated[Optional[str], typer.Option(help="--keypoints: the keypoints a horizontal flip swaps, as "
                                                           "LEFT_X:RIGHT_X pairs of x columns, comma-separated.")] = None,
    masks: Annotated[Optional[Path], typer.Option(help="--task segment (implied): the folder of masks, laid out like "
                                                       "SOURCE: the mask of SOURCE/a/x.jpg is MASKS/a/x.png (any "
                                                       "image extension). A mask is a palette or grayscale PNG of the "
                                                       "image's size whose pixel values are class indices, 255 = "
                                                       "ignore.")] = None,
    mask_classes: Annotated[Optional[Path], typer.Option(help="--task segment: a text file of class names, one a "
                                                              "line, the name of mask value 0 (background) first "
                                                              "(default: 0 to K-1, K the largest value in the masks "
                                                              "+ 1).")] = None,
    workers: Workers = None,
    seed: Seed = None,
    force: Force = False,
    as_json: Json = False,
) -> None:
    """Import SOURCE into a dataset directory: manifest.csv, classes.json, rejected.csv, dataset.json, cache/.

    Bad images (empty, not an image, truncated, unreadable, too large, duplicates across splits) \
are skipped and listed in rejected.csv.

    With --task multilabel, splits and folds are stratified over every label, and manifest.csv gets a \
labels column (the image's labels joined by '|').

    With --task localize or --keypoints, boxes and points stay in the image file's pixels in manifest.csv, beside the image's width and height; every cache maps them exactly as it resizes the image (docs/tasks.md).

    With --masks (--task segment), manifest.csv gets the columns labels (the classes each mask holds, \
joined by '|'; splits and folds are stratified over them), mask and mask_sha1, and the cache holds the \
masks beside the images, resized with nearest neighbour through the same crop or squash. An image whose \
mask is missing, unreadable, of another size, RGB without a palette, or holds a value that is no class \
is skipped and listed in rejected.csv.

    Example: cvkit prepare ~/photos/dogs --out data/dogs --size 224 --val 0.15 --test 0.15
    """
    from cvkit.data import prepare

    from cvkit.files.images import parse_size

    class_names = [c.strip() for c in classes.split(",") if c.strip()] if classes else None
    result = prepare(source, out, size=parse_size(size), val=val, test=test, folds=folds, channels=channels,
                     workers=workers, seed=seed_or_global(seed), classes=class_names, root=str(root) if root else None,
                     max_rejected=max_rejected, resize=resize, max_pixels=max_pixels, force=force, task=task,
                     label_delim=label_delim, allow_empty=allow_empty,
                     targets=[t.strip() for t in targets.split(",") if t.strip()] if targets else None,
                     keypoints=keypoints, flip_pairs=_pairs(flip_pairs), masks=str(masks) if masks else None,
                     mask_classes=mask_classes)
    if not state.quiet:
        _summary(result)
    if as_json:
        emit(json.dumps({"out": str(result.out), "kind": result.kind, "task": result.task, "classes": result.classes,
                         "counts": result.counts, "rejected": len(result.rejected), "channels": result.channels,
                         "size": list(result.size) if result.size else None}))
    else:
        emit(str(result.out))


def _pairs(text: str | None) -> list[list[str]] | None:
    """``--flip-pairs lx:rx,le:re`` -> [["lx", "rx"], ["le", "re"]] (checked by prepare)."""
    if not text:
        return None
    return [[name.strip() for name in pair.split(":")] for pair in text.split(",") if pair.strip()]


def _summary(result) -> None:
    from rich.table import Table

    splits = ("train", "val", "test")
    table = Table(title=f"{result.out} ({result.kind}, {result.channels} channel{'s' if result.channels > 1 else ''}"
                        + (f", cache {result.size[0]}x{result.size[1]}" if result.size else "") + ")")
    table.add_column("label" if result.task == "multilabel" else "class")
    if result.task == "segment":  # a mask holds several classes: an image counts under each
        table.caption = "images whose mask holds the class"
    for s in splits:
        table.add_column(s, justify="right")
    table.add_column("total", justify="right")
    for name in result.classes:
        row = result.counts[name]
        table.add_row(name, *(str(row[s]) for s in splits), str(sum(row.values())))
    totals = result.images  # images per split (a multi-label image counts once however many labels it has)
    table.add_row("[bold]all", *(f"[bold]{totals[s]}" for s in splits), f"[bold]{sum(totals.values())}")
    console.print(table)
    if result.rejected:
        why = ", ".join(f"{n} {reason}" for reason, n in result.reasons.most_common())
        console.print(f"[yellow]{len(result.rejected)} of {result.inputs} inputs rejected[/] ({why}): "
                      f"see {result.out / 'rejected.csv'}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("prepare")(prepare_command)
