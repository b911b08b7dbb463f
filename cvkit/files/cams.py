"""``cvkit cam``'s files: ``cams.csv``, ``localization.json``, ``faithfulness.json`` (written), and
the user's CSV of true boxes (read). Nothing else opens them by name.

``cams.csv`` has one row per map (an image explained by several methods, or with ``--topk``, has
several rows): ``path,class,score,x0,y0,x1,y1`` first, as the README promises, then ``method``,
``rank`` (1 = the predicted or ``--class`` class) and ``map`` (the ``.npy`` file beside it). Boxes
are ``x0,y0,x1,y1`` in the original image's pixels, ``x1``/``y1`` exclusive.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from cvkit.errors import ManifestError, SourceError
from cvkit.files.atomic import read_csv_checked, write_csv
from cvkit.files.jsonio import finite, read_json, write_json

CAMS_CSV = "cams.csv"
LOCALIZATION_JSON = "localization.json"
FAITHFULNESS_JSON = "faithfulness.json"
CAMS_REQUIRED = ("path", "class", "score", "x0", "y0", "x1", "y1")
CAMS_COLUMNS = (*CAMS_REQUIRED, "method", "rank", "map")
# Everything `cam` writes into its --out (what --force may replace).
CAM_FILES = (CAMS_CSV, LOCALIZATION_JSON, FAITHFULNESS_JSON, "rejected.csv", "*.png", "*.npy")
BOX_COLUMNS = ("path", "x0", "y0", "x1", "y1")
COORDS = ("x0", "y0", "x1", "y1")
RERUN = "rerun 'cvkit cam' to write it"
_WHOLE = re.compile(r"[+-]?[0-9]+")

Box = tuple[int, int, int, int]


# ----------------------------------------------------------------------------- cams.csv


def write_cams_csv(out_dir: str | os.PathLike, rows: Sequence[Mapping[str, Any]]) -> Path:
    """``OUT/cams.csv`` atomically, columns in :data:`CAMS_COLUMNS` order (the optional ones only
    when some row has them); returns its path."""
    import pandas as pd

    unknown = sorted({k for row in rows for k in row} - set(CAMS_COLUMNS))
    lacking = sorted({k for row in rows for k in CAMS_REQUIRED if k not in row})
    if unknown or lacking:
        raise ValueError(f"cams.csv rows have unknown {unknown} / lack {lacking} columns")
    present = {k for row in rows for k in row}
    columns = [c for c in CAMS_COLUMNS if c in CAMS_REQUIRED or c in present]
    path = Path(out_dir) / CAMS_CSV
    write_csv(path, pd.DataFrame(list(rows), columns=columns))
    return path


def read_cams_csv(path: str | os.PathLike) -> "pd.DataFrame":  # noqa: F821
    """A ``cams.csv`` (or the folder holding one), with its columns and boxes checked."""
    import pandas as pd

    path = Path(path)
    if path.is_dir():
        path = path / CAMS_CSV
    frame = read_csv_checked(path, CAMS_REQUIRED, RERUN, dtype={"path": str, "class": str, "method": str, "map": str})
    whole = ("x0", "y0", "x1", "y1", *(["rank"] if "rank" in frame.columns else []))
    for column in (*whole, "score"):
        numbers = pd.to_numeric(frame[column], errors="coerce")
        if numbers.isna().any():
            raise ManifestError(f"{path}: the column {column} must hold numbers in every row; {RERUN}")
        if column in whole:
            if not (numbers == numbers.round()).all():
                raise ManifestError(f"{path}: the column {column} must hold whole numbers; {RERUN}")
            numbers = numbers.astype("int64")
        frame[column] = numbers
    bad = (frame.x1 <= frame.x0) | (frame.y1 <= frame.y0) | (frame[["x0", "y0"]] < 0).any(axis=1)
    if bad.any():
        row = int(bad.to_numpy().argmax()) + 2
        raise ManifestError(f"{path} row {row}: the box is empty or negative; {RERUN}")
    return frame


# ----------------------------------------------------------------------------- localization.json, faithfulness.json


def _write_figures(path: Path, data: Mapping[str, Any]) -> Path:
    if not isinstance(data.get("methods"), Mapping):
        raise TypeError(f"{path.name} needs 'methods': {{method: {{figure: value}}}}")
    write_json(path, finite(dict(data)))
    return path


def _read_figures(path: str | os.PathLike, name: str, fix: str) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / name
    data = read_json(path, fix)
    methods = data.get("methods")
    ok = isinstance(methods, dict) and all(
        isinstance(figures, dict) and all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
                                          for v in figures.values())
        for figures in methods.values())
    if not ok:
        raise ManifestError(f"{path}: 'methods' must map each method to its figures (numbers); {fix}")
    return data


def write_localization(out_dir: str | os.PathLike, data: Mapping[str, Any]) -> Path:
    """``OUT/localization.json``: ``{"format": 1, ..., "methods": {method: {figure: value}}}``."""
    return _write_figures(Path(out_dir) / LOCALIZATION_JSON, data)


def read_localization(path: str | os.PathLike) -> dict[str, Any]:
    """``localization.json`` (or the folder holding it), checked."""
    return _read_figures(path, LOCALIZATION_JSON, "rerun 'cvkit cam --boxes CSV' to write it")


def write_faithfulness(out_dir: str | os.PathLike, data: Mapping[str, Any]) -> Path:
    """``OUT/faithfulness.json``: ``{"format": 1, ..., "methods": {method: {figure: value}}}``."""
    return _write_figures(Path(out_dir) / FAITHFULNESS_JSON, data)


def read_faithfulness(path: str | os.PathLike) -> dict[str, Any]:
    """``faithfulness.json`` (or the folder holding it), checked."""
    return _read_figures(path, FAITHFULNESS_JSON, "rerun 'cvkit cam --metrics' to write it")


# ----------------------------------------------------------------------------- the user's true boxes


class TrueBox(NamedTuple):
    """An image's true box (pixels of the original image, x1/y1 exclusive) and its optional label."""

    box: Box
    label: str | None = None


class TrueBoxes(dict):
    """Absolute normalized image path -> :class:`TrueBox`; a lookup also finds the image under
    another spelling of the same file (a symlinked folder), by its real path."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._real = {os.path.realpath(k): k for k in self}

    def _key(self, path: object) -> object:
        if isinstance(path, (str, os.PathLike)) and not dict.__contains__(self, path):
            return self._real.get(os.path.realpath(path), path)
        return path

    def __contains__(self, path: object) -> bool:
        return dict.__contains__(self, self._key(path))

    def __missing__(self, path: object) -> TrueBox:
        key = self._key(path)
        if key is path or not dict.__contains__(self, key):
            raise KeyError(path)
        return dict.__getitem__(self, key)

    def get(self, path: object, default: Any = None) -> Any:
        return dict.get(self, self._key(path), default)


def _refuse(path: Path, row: int, what: str) -> SourceError:
    return SourceError(f"{path} row {row}: {what}; fix that row")


def _show(text: str) -> str:
    """Text for a one-line message: control characters escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _records(path: Path) -> tuple[list[str], list[list[str]]]:
    """The header and the rows of a CSV, each row as long as the header or refused."""
    import csv

    usage = "give a CSV with the header path,x0,y0,x1,y1"
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            records = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise SourceError(f"{path} cannot be read as CSV ({_show(str(e))[:120]}); {usage}") from None
    if not records:
        raise SourceError(f"{path} is empty; {usage}")
    header = [name.strip() for name in records[0]]
    missing = [c for c in BOX_COLUMNS if c not in header]
    if missing:
        raise SourceError(f"{path} lacks the column(s) {', '.join(missing)}; its first line must be the header "
                          f"path,x0,y0,x1,y1 (paths relative to the CSV's folder)")
    for number, r in enumerate(records[1:], start=2):
        if r and len(r) != len(header):
            raise SourceError(f"{path} row {number}: {len(r)} fields under a header of {len(header)}; fix that row")
    if not any(records[1:]):  # csv gives [] for a blank line
        raise SourceError(f"{path} lists no boxes; add one row path,x0,y0,x1,y1 per image")
    return header, records[1:]


def read_true_boxes(csv_path: str | os.PathLike) -> TrueBoxes:
    """The user's true boxes: a CSV with the header ``path,x0,y0,x1,y1`` (optionally ``label``; more
    columns are ignored), paths relative to the CSV's folder (or absolute inside it).

    Returns absolute normalized paths, as :func:`cvkit.runtime.collect_inputs` spells images listed
    in a CSV. Any bad row is refused with its number (the header is row 1): a wrong number of
    fields, a wrong coordinate, an empty box, an empty path or a NUL byte, a path leaving the CSV's
    folder (checked on real paths, symlinks followed: paths in a CSV never escape their dataset) and
    a second box for an image.
    """
    path = Path(csv_path)
    if not path.is_file():
        raise SourceError(f"--boxes {path} is not a file; give a CSV with the header path,x0,y0,x1,y1")
    header, records = _records(path)
    at = {name: header.index(name) for name in (*BOX_COLUMNS, *(["label"] if "label" in header else []))}
    folder = path.parent.resolve()
    real_folder = os.path.realpath(folder)
    boxes: dict[str, TrueBox] = {}
    first_row: dict[str, int] = {}
    for row, record in enumerate(records, start=2):
        if not record:
            continue
        refuse = functools.partial(_refuse, path, row)
        q = record[at["path"]]
        if not q or "\x00" in q:
            raise refuse("the path is empty or holds a NUL byte")
        image = os.path.normpath(folder / q)
        real = os.path.realpath(image)
        if not (real == real_folder or real.startswith(real_folder.rstrip(os.sep) + os.sep)):
            raise refuse(f"the path '{_show(q)}' leads outside {folder}, the CSV's folder (paths in a CSV never "
                         f"escape their dataset); put the CSV in a folder above the images")
        coords = []
        for name in COORDS:
            text = record[at[name]]
            if not _WHOLE.fullmatch(text.strip()):
                raise refuse(f"{name} '{_show(text)}' is not a whole number of pixels")
            value = int(text)
            if value < 0:
                raise refuse(f"{name} {value} is negative; boxes are in the image's pixels, from 0")
            coords.append(value)
        x0, y0, x1, y1 = coords
        if x1 <= x0 or y1 <= y0:
            axis = "x" if x1 <= x0 else "y"
            lo, hi = (x0, x1) if axis == "x" else (y0, y1)
            raise refuse(f"{axis}1 {hi} is not above {axis}0 {lo}: the box is empty ({axis}1 is exclusive)")
        if real in first_row:  # the same file, however spelled
            raise refuse(f"'{_show(q)}' already has a box in row {first_row[real]}; give one box per image")
        label = record[at["label"]].strip() if "label" in at else ""
        boxes[image] = TrueBox((x0, y0, x1, y1), label or None)
        first_row[real] = row
    return TrueBoxes(boxes)
