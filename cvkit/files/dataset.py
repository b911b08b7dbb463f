"""The dataset directory's files: ``manifest.csv``, ``classes.json``, ``rejected.csv``,
``dataset.json``, ``stats.json``, ``augment.json`` and the cache's ``cache/{split}_{H}x{W}.json``.

Each has a typed reader and writer here and nowhere else (README.md, "File contracts").
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from cvkit.errors import ManifestError, UnsafePath
from cvkit.files.atomic import write_csv
from cvkit.files.jsonio import from_json, read_json, write_json

SPLITS = ("train", "val", "test")
# Everything `prepare`, `normalize` and `augment` write into a dataset directory.
DATASET_FILES = ("manifest.csv", "classes.json", "rejected.csv", "dataset.json", "stats.json", "augment.json",
                 "mean_image.npy", "cache", "images", "augmented", "augment_preview.png")
REJECTED_COLUMNS = ("path", "reason")
# The task of a dataset.json or model.json that names none (written before tasks existed): one class per image.
DEFAULT_TASK = "classify"
MULTILABEL = "multilabel"
LOCALIZE = "localize"
REGRESS = "regress"
SEGMENT = "segment"
# Segment datasets: manifest.csv's ``mask`` column names each image's mask (a PNG of class indices, resolved
# like ``path``), ``mask_sha1`` its content hash (the mask cache's key); the ``labels`` column lists the
# classes present in the mask (splits and folds are stratified on them).
MASK_COLUMN = "mask"
MASK_SHA1_COLUMN = "mask_sha1"
# A mask pixel of this value is ignored by the loss and the metrics (Pascal VOC's convention).
IGNORE_INDEX = 255
# Localize datasets: the box of each image, in the image file's pixels (Pascal VOC corners: x0, y0 the
# top-left corner, x1, y1 the bottom-right one, continuous coordinates where pixel column j spans [j, j + 1)).
BOX_COLUMNS = ("x0", "y0", "x1", "y1")
# Localize and keypoint datasets: the image file's size in pixels (EXIF orientation applied), from which
# a cache of any size maps the boxes and points exactly as it resizes the image (Resize.point_map).
SIZE_COLUMNS = ("width", "height")
# manifest.csv's ``labels`` column (multi-label datasets) joins an image's labels with this, in class order.
LABELS_SEP = "|"
PREPARE_AGAIN = "rerun 'cvkit prepare' to write it"


def is_dataset(folder: str | os.PathLike) -> bool:
    """A folder written by ``cvkit prepare`` (it has a manifest and a class list)."""
    folder = Path(folder)
    return (folder / "manifest.csv").is_file() and (folder / "classes.json").is_file()


def _not_a_dataset(dataset: Path, missing: str) -> ManifestError:
    if dataset.exists() and not dataset.is_dir():
        return ManifestError(f"{dataset} is a file, not a dataset directory; give the folder written by 'cvkit prepare'")
    return ManifestError(f"{dataset / missing} is missing: {dataset} is not a dataset directory; "
                         f"create one with 'cvkit prepare'")


# ----------------------------------------------------------------------------- manifest.csv


@dataclass(frozen=True)
class ManifestRow:
    """One image of a dataset. ``path`` is relative to the dataset directory, or absolute."""

    path: str
    label: str
    split: str
    fold: int = -1
    sha1: str = ""


MANIFEST_COLUMNS = tuple(f.name for f in fields(ManifestRow))  # first in manifest.csv, in this order
LABELS_COLUMN = "labels"  # multi-label datasets: after MANIFEST_COLUMNS, before any extra column


def join_labels(labels: Sequence[str]) -> str:
    """One manifest ``labels`` cell: the labels joined by '|' ("" for none)."""
    return LABELS_SEP.join(labels)


def split_labels(cell: str) -> list[str]:
    """The labels of one manifest ``labels`` cell ("" holds none)."""
    return cell.split(LABELS_SEP) if cell else []


def label_sets(frame: "pd.DataFrame") -> list[list[str]]:  # noqa: F821
    """Each row's ``labels`` cell as a list of names (multi-label: its labels; segment: the classes its
    mask holds), what splits and folds are stratified by."""
    return [split_labels(cell) for cell in frame[LABELS_COLUMN].fillna("").astype(str)]


def manifest_path(dataset: str | os.PathLike) -> Path:
    """``DATASET/manifest.csv``, for messages that name it."""
    return Path(dataset) / "manifest.csv"


def read_manifest(dataset: str | os.PathLike) -> "pd.DataFrame":  # noqa: F821
    """``DATASET/manifest.csv`` as a DataFrame (one row per :class:`ManifestRow`, extra columns kept),
    with its columns, splits, folds and paths checked."""
    import pandas as pd

    dataset = Path(dataset)
    path = dataset / "manifest.csv"
    if not path.is_file():
        raise _not_a_dataset(dataset, "manifest.csv")
    try:
        frame = pd.read_csv(path, dtype={"path": str, "label": str, "split": str, "sha1": str, LABELS_COLUMN: str,
                                         MASK_COLUMN: str, MASK_SHA1_COLUMN: str}, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as e:
        raise ManifestError(f"{path} cannot be parsed ({' '.join(str(e).split())[:160]}); rerun 'cvkit prepare'") from None
    missing = [c for c in MANIFEST_COLUMNS if c not in frame.columns]
    if missing:
        raise ManifestError(f"{path} lacks the column(s) {', '.join(missing)}; rerun 'cvkit prepare'")
    bad = ~frame["split"].isin(SPLITS)
    if bad.any():
        row = int(bad.idxmax())
        raise ManifestError(f"{path} row {row + 2}: split '{frame['split'][row]}' is not one of {', '.join(SPLITS)}")
    try:
        frame["fold"] = frame["fold"].astype(int)
    except (TypeError, ValueError):
        raise ManifestError(f"{path}: the fold column must hold integers (-1 when unused)") from None
    nul = frame["path"].str.contains("\x00", regex=False)
    if nul.any():
        raise ManifestError(f"{path} row {int(nul.idxmax()) + 2}: the path holds a NUL byte; rerun 'cvkit prepare'")
    task = DatasetInfo.read(dataset).task if (LABELS_COLUMN in frame.columns or MASK_COLUMN in frame.columns) \
        and (dataset / "dataset.json").is_file() else None
    if task == SEGMENT:
        check_masks(frame, path)
    if LABELS_COLUMN in frame.columns and task in (MULTILABEL, SEGMENT):
        check_labels(frame, read_classes(dataset), path)
    return frame


def check_masks(frame: "pd.DataFrame", path: Path) -> None:  # noqa: F821
    """A segment manifest has the ``labels``, ``mask`` and ``mask_sha1`` columns and a mask path on every row."""
    missing = [c for c in (LABELS_COLUMN, MASK_COLUMN, MASK_SHA1_COLUMN) if c not in frame.columns]
    if missing:
        raise ManifestError(f"{path} lacks the column '{missing[0]}' its segment task needs; rerun 'cvkit prepare' "
                            f"with --masks")
    bad = (frame[MASK_COLUMN] == "") | frame[MASK_COLUMN].str.contains("\x00", regex=False)
    if bad.any():
        what = "no mask" if frame[MASK_COLUMN][bad.idxmax()] == "" else "a mask path holding a NUL byte"
        raise ManifestError(f"{path} row {int(bad.idxmax()) + 2}: {what}; fix the row or rerun 'cvkit prepare'")


def check_labels(frame: "pd.DataFrame", classes: list[str], path: Path) -> None:  # noqa: F821
    """Every name of a multi-label manifest's ``labels`` column is a class of classes.json; one-line
    error with the row number otherwise."""
    known = set(classes)
    for row, cell in enumerate(frame[LABELS_COLUMN], start=2):
        unknown = next((name for name in split_labels(cell) if name not in known), None)
        if unknown is not None:
            what = "an empty label" if not unknown else f"label '{unknown}'"
            raise ManifestError(f"{path} row {row}: {what} in labels '{cell[:120]}' is not in classes.json; add it "
                                f"there or rerun 'cvkit prepare'")


def image_files(dataset: str | os.PathLike, paths: list[str], rows: list[int]) -> list[str]:
    """The files that manifest ``paths`` (at frame ``rows``) name, checked before any is opened: a
    relative path must stay inside the dataset, an absolute one inside the dataset or its recorded
    source folder, links followed (a symlink pointing elsewhere escapes too). One-line error with
    the row number otherwise: a manifest never makes cvkit read a file outside its dataset."""
    return _inside_files(dataset, paths, rows, DatasetInfo.read(dataset).source_root, "path", "source")


def mask_files(dataset: str | os.PathLike, paths: list[str], rows: list[int]) -> list[str]:
    """:func:`image_files` for the ``mask`` column: a mask lies inside the dataset or the masks folder
    it was imported from (dataset.json's ``mask_root``; a CSV source's folder)."""
    info = DatasetInfo.read(dataset)
    return _inside_files(dataset, paths, rows, info.mask_root or info.source_root, MASK_COLUMN, "masks folder")


def _inside_files(dataset: str | os.PathLike, paths: list[str], rows: list[int], root: str | None, column: str,
                  called: str) -> list[str]:
    dataset = Path(dataset)
    top = os.path.realpath(dataset)
    allowed = [t.rstrip(os.sep) + os.sep for t in (top, root) if t]
    out = []
    for path, row in zip(paths, rows):
        full = path if os.path.isabs(path) else os.path.join(dataset, path)
        real = os.path.realpath(full)
        if not any(real.startswith(a) for a in allowed):
            where = f"the dataset {dataset}" + (f" or its {called} {root}" if root else "")
            raise UnsafePath(f"{dataset / 'manifest.csv'} row {row + 2}: {column} '{path[:120]}' leads outside {where}"
                             f"{f' (to {real[:120]})' if real != os.path.abspath(full) else ''}; fix the row or rerun "
                             f"'cvkit prepare'")
        out.append(full)
    return out


def write_manifest(dataset: str | os.PathLike, frame: "pd.DataFrame") -> None:  # noqa: F821
    write_csv(Path(dataset) / "manifest.csv", frame)


# ----------------------------------------------------------------------------- classes.json


def write_classes(dataset: str | os.PathLike, classes: list[str]) -> None:
    write_json(Path(dataset) / "classes.json", {"classes": list(classes)})


def read_classes(dataset: str | os.PathLike) -> list[str]:
    dataset = Path(dataset)
    if not (dataset / "classes.json").exists():
        raise _not_a_dataset(dataset, "classes.json")
    path = dataset / "classes.json"
    data = read_json(path, PREPARE_AGAIN)
    classes = data.get("classes")
    empty_ok = (dataset / "dataset.json").is_file() and DatasetInfo.read(dataset).task == REGRESS  # labels optional
    if not isinstance(classes, list) or not (classes or empty_ok) or not all(isinstance(c, str) for c in classes):
        raise ManifestError(f"{path}: 'classes' must be a non-empty list of names; rerun 'cvkit prepare'")
    if len(set(classes)) != len(classes):
        raise ManifestError(f"{path}: 'classes' names a class twice; rerun 'cvkit prepare'")
    return classes


# ----------------------------------------------------------------------------- rejected.csv


def write_rejected(folder: str | os.PathLike, rows: list[tuple[str, str]]) -> None:
    """``FOLDER/rejected.csv`` (``path,reason``): a dataset's, or a ``predict`` output's."""
    import pandas as pd

    write_csv(Path(folder) / "rejected.csv", pd.DataFrame(rows, columns=list(REJECTED_COLUMNS)))


# ----------------------------------------------------------------------------- dataset.json


@dataclass
class DatasetInfo:
    """How a dataset was prepared: later commands need its size and channels without decoding."""

    source_kind: str
    size: list[int] | None
    channels: int
    resize: str = "crop"
    seed: int = 0
    val: float = 0.1
    test: float = 0.1
    folds: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    # The real path of the folder the images were imported from (a folder source, a CSV's folder); None
    # when prepare wrote the images into the dataset (IDX, torchvision). Absolute manifest paths must lie in it.
    source_root: str | None = None
    task: str = DEFAULT_TASK  # what the dataset's targets are for (cvkit/tasks/); train uses it by default
    targets: list[str] = field(default_factory=list)  # regress: the manifest's numeric target columns
    keypoints: bool = False  # regress: the targets are x, y pairs in the image file's pixels
    flip_pairs: list[list[str]] = field(default_factory=list)  # keypoints a horizontal flip swaps (x column names)
    mask_root: str | None = None  # segment: the real path of --masks, where mask paths lie (None: source_root)

    @classmethod
    def read(cls, dataset: str | os.PathLike) -> "DatasetInfo":
        path = Path(dataset) / "dataset.json"
        if not path.exists() and not (Path(dataset) / "manifest.csv").is_file():
            raise _not_a_dataset(Path(dataset), "dataset.json")
        info = from_json(cls, read_json(path, PREPARE_AGAIN), path, PREPARE_AGAIN)
        if info.channels not in (1, 3):
            raise ManifestError(f"{path}: 'channels' must be 1 or 3; {PREPARE_AGAIN}")
        if info.size is not None and (len(info.size) != 2 or min(info.size) < 1):
            raise ManifestError(f"{path}: 'size' must be [height, width], each 1 or more, or null; {PREPARE_AGAIN}")
        if info.resize not in ("crop", "squash"):
            raise ManifestError(f"{path}: 'resize' {info.resize!r} must be crop or squash; {PREPARE_AGAIN}")
        return info

    def write(self, dataset: str | os.PathLike) -> None:
        write_json(Path(dataset) / "dataset.json", asdict(self))


# ----------------------------------------------------------------------------- stats.json


@dataclass
class Stats:
    """Normalization statistics (``cvkit normalize``), per channel in [0, 1] units."""

    mean: list[float]
    std: list[float]
    split: str | None = "train"
    count: int = 0
    size: list[int] | None = None
    channels: int = 1
    mode: str = "channel"
    source: str = "computed"
    mean_image: str | None = None  # "mean_image.npy" in pixel mode

    @classmethod
    def read(cls, dataset: str | os.PathLike) -> "Stats":
        dataset = Path(dataset)
        fix = f"compute it with 'cvkit normalize {dataset}'"
        if dataset.exists() and not dataset.is_dir():
            raise _not_a_dataset(dataset, "stats.json")
        path = dataset / "stats.json"
        stats = from_json(cls, read_json(path, fix), path, fix)
        if len(stats.mean) != len(stats.std) or not stats.mean or min(stats.std) <= 0:
            raise ManifestError(f"{path}: 'mean' and 'std' need one value per channel and std above 0; {fix}")
        if not all(math.isfinite(v) for v in (*stats.mean, *stats.std)):
            raise ManifestError(f"{path}: 'mean' or 'std' holds NaN or infinity; {fix}")
        if stats.mode not in ("channel", "pixel") or stats.mean_image not in (None, "mean_image.npy"):
            raise ManifestError(f"{path}: 'mode' must be channel or pixel and 'mean_image' \"mean_image.npy\" or "
                                f"null; {fix}")
        if stats.size is not None and (len(stats.size) != 2 or min(stats.size) < 1):
            raise ManifestError(f"{path}: 'size' must be [height, width], each 1 or more, or null; {fix}")
        return stats

    @staticmethod
    def exists(dataset: str | os.PathLike) -> bool:
        return Stats.path(dataset).is_file()

    @staticmethod
    def path(dataset: str | os.PathLike) -> Path:
        return Path(dataset) / "stats.json"

    def write(self, dataset: str | os.PathLike) -> None:
        write_json(Path(dataset) / "stats.json", asdict(self))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------- augment.json


@dataclass
class AugmentFile:
    """``augment.json``: the augmentation policy ``train`` applies (field names of AugmentPolicy).

    Values are numbers of 0 or more, ``scale`` is a [min, max] pair, and the names in ``text`` (the
    automatic policy's name) hold a string; the policy module checks ranges and names.
    """

    policy: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None  # where it was read from

    @staticmethod
    def locate(where: str | os.PathLike) -> Path:
        """A dataset directory's augment.json, or ``where`` itself when it is a policy file."""
        where = Path(where)
        return where / "augment.json" if where.is_dir() else where

    @classmethod
    def read(cls, where: str | os.PathLike, known: set[str], text: set[str] = frozenset()) -> "AugmentFile | None":
        """The policy of a dataset directory (None when it has no augment.json) or of a policy file
        (an error when missing); ``known`` are the valid names, ``text`` those whose value is a string."""
        path = cls.locate(where)
        if Path(where).is_dir() and not path.is_file():
            return None
        fix = "rewrite it with 'cvkit augment' or delete it"
        data = read_json(path, fix)
        data.pop("format", None)
        policy = data.get("policy")
        unknown = sorted(set(data) - {"policy"})
        if unknown or not isinstance(policy, dict):
            what = f"has unknown key(s) {', '.join(unknown)}" if unknown else "lacks 'policy', an object,"
            raise ManifestError(f"{path} {what} (it must hold {{\"format\": 1, \"policy\": {{...}}}}); {fix}")
        unknown = sorted(set(policy) - known)
        if unknown:
            raise ManifestError(f"{path}: unknown augmentation(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        for k, v in policy.items():
            if k in text:
                if not isinstance(v, str):
                    raise ManifestError(f"{path}: '{k}' must be a name (a string); {fix}")
                continue
            values = v if k == "scale" and isinstance(v, list) and len(v) == 2 else [v]
            if k == "scale" and values is not v:
                raise ManifestError(f"{path}: 'scale' must be a [min, max] pair of numbers; {fix}")
            if any(isinstance(x, bool) or not isinstance(x, (int, float)) or x < 0 for x in values):
                raise ManifestError(f"{path}: '{k}' must be a number of 0 or more; {fix}")
        return cls({k: v if k in text else list(map(float, v)) if k == "scale" else float(v) for k, v in policy.items()}, path)

    def write(self, dataset: str | os.PathLike) -> None:
        write_json(Path(dataset) / "augment.json", {"policy": self.policy})


# ----------------------------------------------------------------------------- cache/{split}_{H}x{W}.json


@dataclass
class CacheMeta:
    """What a packed cache holds: its manifest rows and a key over their paths and content."""

    split: str
    size: list[int]
    channels: int
    resize: str
    count: int
    key: str
    rows: list[int]

    @classmethod
    def read(cls, path: Path) -> "CacheMeta":
        fix = "delete it to rebuild the cache"
        return from_json(cls, read_json(path, fix), path, fix)

    def write(self, path: Path) -> None:
        write_json(path, asdict(self))
