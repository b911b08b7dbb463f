"""CSV sources with targets besides the class: boxes (``--task localize``) and numeric targets or
keypoints (``--task regress``). Every value is checked here, with its CSV row; whether a box lies
inside its image is checked once the image is decoded (``data/prepare.py``)."""

from __future__ import annotations

import math
import os
from pathlib import Path

from cvkit.data.sources import Item, Source, _csv_path, _csv_split, _read_csv, csv_source, open_source
from cvkit.errors import OptionError, SourceError
from cvkit.files.dataset import BOX_COLUMNS, LOCALIZE, REGRESS, SIZE_COLUMNS

BOX_HEADER = "path,label,x0,y0,x1,y1[,split]"


def open_any_source(source: str, task: str, targets: list[str], keypoints: bool, **kwargs) -> Source:
    """:func:`~cvkit.data.sources.open_source`, and the CSVs of boxes (``localize``) and of numeric
    targets (``regress``)."""
    if task == LOCALIZE:
        return from_box_csv(csv_source(source, task), kwargs.get("classes"))
    if task == REGRESS:
        return from_target_csv(csv_source(source, task), targets, keypoints)
    return open_source(source, task=task, **kwargs)


def _number(csv_path: Path, row: int, column: str, raw: str) -> float:
    """A finite number from a CSV cell, or a one-line error naming the row and the column."""
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = None
    if value is None or not math.isfinite(value):
        what = "is empty" if not str(raw).strip() else f"holds '{raw}', not a finite number"
        raise SourceError(f"{csv_path} row {row}: column '{column}' {what}; fix that row")
    return value


def _rows(csv_path: Path, frame: "pd.DataFrame"):  # noqa: F821
    """(row number, record, checked absolute path, split) of every CSV row."""
    root = Path(os.path.abspath(csv_path.parent))
    real_root = root.resolve()
    has_split = "split" in frame.columns
    for row, rec in enumerate(frame.to_dict("records"), start=2):  # row 1 is the header
        full = _csv_path(csv_path, root, real_root, row, rec["path"])
        yield row, rec, full, (_csv_split(csv_path, row, rec["split"]) if has_split else None)


def _reserved(frame: "pd.DataFrame", csv_path: Path) -> None:  # noqa: F821
    taken = [c for c in SIZE_COLUMNS if c in frame.columns]
    if taken:
        raise SourceError(f"{csv_path} has a '{taken[0]}' column; prepare writes the image size there, so rename it")


def from_box_csv(csv_path: Path, classes: list[str] | None = None) -> Source:
    """``path,label,x0,y0,x1,y1[,split]``: one object per image, its box in the image file's pixels
    (x0, y0 the top-left corner, x1, y1 the bottom-right one)."""
    frame = _read_csv(csv_path, BOX_HEADER)
    missing = [c for c in ("path", "label", *BOX_COLUMNS) if c not in frame.columns]
    if missing:
        raise SourceError(f"{csv_path} has no '{missing[0]}' column; its header must be {BOX_HEADER}")
    _reserved(frame, csv_path)
    extra = [c for c in frame.columns if c not in ("path", "label", "split", "fold", "sha1")]
    known = set(classes) if classes is not None else None
    items = []
    for row, rec, full, split in _rows(csv_path, frame):
        if not rec["label"]:
            raise SourceError(f"{csv_path} row {row}: empty label for '{rec['path']}'")
        if known is not None and rec["label"] not in known:
            raise SourceError(f"{csv_path} row {row}: label '{rec['label']}' is not one of --classes")
        x0, y0, x1, y1 = (_number(csv_path, row, c, rec[c]) for c in BOX_COLUMNS)
        if x1 <= x0 or y1 <= y0:
            raise SourceError(f"{csv_path} row {row}: the box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) has no area: x1 must be "
                              f"above x0 and y1 above y0 (corners, in pixels)")
        if min(x0, y0) < 0:
            raise SourceError(f"{csv_path} row {row}: the box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) starts outside the "
                              f"image (a negative corner); clip it to the image")
        items.append(Item(full, rec["label"], split, extra={c: rec[c] for c in extra}, row=row))
    if not items:
        raise SourceError(f"{csv_path} lists no images")
    items.sort(key=lambda it: it.path)
    return Source("csv", items, list(classes) if classes else sorted({it.label for it in items}), extra)


def check_targets(targets: list[str], keypoints: bool, flip_pairs: list[list[str]]) -> None:
    """``--targets``, ``--keypoints`` and ``--flip-pairs`` agree with each other (before any file is read)."""
    if not targets:
        raise OptionError("--task regress needs --targets COL,COL,...: the manifest columns to predict")
    if len(set(targets)) != len(targets):
        raise OptionError(f"--targets {','.join(targets)} names a column twice")
    reserved = [t for t in targets if t in ("path", "label", "labels", "split", "fold", "sha1", *SIZE_COLUMNS)]
    if reserved:
        raise OptionError(f"--targets: '{reserved[0]}' is a column cvkit writes itself; name the numeric columns")
    if keypoints and len(targets) % 2:
        raise OptionError(f"--keypoints: --targets lists {len(targets)} columns, but keypoints are x,y pairs "
                          f"(x1,y1,x2,y2,...); give an even number of columns")
    if flip_pairs and not keypoints:
        raise OptionError("--flip-pairs swaps keypoints: add --keypoints")
    xs = targets[0::2]
    seen: set[str] = set()
    for pair in flip_pairs:
        for name in pair:
            if name not in xs:
                raise OptionError(f"--flip-pairs: '{name}' is not the x column of a keypoint (the x columns are "
                                  f"{', '.join(xs)}); pair keypoints as LEFT_X:RIGHT_X,...")
            if name in seen:
                raise OptionError(f"--flip-pairs names keypoint '{name}' twice")
            seen.add(name)
        if len(pair) != 2 or pair[0] == pair[1]:
            raise OptionError(f"--flip-pairs: '{':'.join(pair)}' must be two different x columns, LEFT_X:RIGHT_X")


def from_target_csv(csv_path: Path, targets: list[str], keypoints: bool) -> Source:
    """``path[,label],TARGET,...[,split]``: numeric targets per image (keypoints: x, y pairs in pixels)."""
    header = f"path[,label],{','.join(targets)}[,split]"
    frame = _read_csv(csv_path, header)
    missing = [c for c in ("path", *targets) if c not in frame.columns]
    if missing:
        raise SourceError(f"{csv_path} has no '{missing[0]}' column of --targets; its header must be {header}")
    if keypoints:
        _reserved(frame, csv_path)
    has_label = "label" in frame.columns
    extra = [c for c in frame.columns if c not in ("path", "label", "split", "fold", "sha1")]
    items = []
    for row, rec, full, split in _rows(csv_path, frame):
        for column in targets:
            _number(csv_path, row, column, rec[column])
        label = rec["label"] if has_label else ""
        if has_label and not label:
            raise SourceError(f"{csv_path} row {row}: empty label for '{rec['path']}' (label every row, or drop the "
                              f"label column)")
        items.append(Item(full, label, split, extra={c: rec[c] for c in extra}, row=row))
    if not items:
        raise SourceError(f"{csv_path} lists no images")
    items.sort(key=lambda it: it.path)
    return Source("csv", items, sorted({it.label for it in items} - {""}), extra)


# Resizing with --resize crop may cut part of a box off; more than this share cut off is refused.
MIN_VISIBLE = 0.5


def check_boxes(source: str, items: list[Item], kept: list[int], sizes: dict[int, tuple[int, int]],
                resize: "Resize | None") -> None:  # noqa: F821
    """Every kept image's box lies inside the image, and (with ``resize``) keeps most of its area in
    the resized image; else a one-line error naming the CSV row."""
    for i in kept:
        it = items[i]
        h, w = sizes[i]
        x0, y0, x1, y1 = (float(it.extra[c]) for c in BOX_COLUMNS)
        if x1 > w or y1 > h:
            raise SourceError(f"{source} row {it.row}: the box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) reaches outside the "
                              f"{w}x{h} image {it.path}; boxes are corners in the image's pixels")
        if resize is None:
            continue
        sx, sy, ox, oy = resize.point_map(h, w)
        bx0, bx1 = x0 * sx + ox, x1 * sx + ox
        by0, by1 = y0 * sy + oy, y1 * sy + oy
        visible = max(0.0, min(bx1, resize.width) - max(bx0, 0.0)) * max(0.0, min(by1, resize.height) - max(by0, 0.0))
        if visible < MIN_VISIBLE * (bx1 - bx0) * (by1 - by0):
            raise SourceError(f"{source} row {it.row}: --resize crop cuts off more than half of the box of {it.path} "
                              f"(the centre crop of a {w}x{h} image); use --resize squash")
