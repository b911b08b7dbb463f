"""Import sources: what ``cvkit prepare SOURCE`` accepts, listed as :class:`Item` rows.

A source is one of: a folder of class folders, a folder of ``train/ val/ test/`` split folders, a
folder of MNIST-family IDX files, a CSV of ``path,label[,split]``, or ``torchvision:NAME``. A
multi-label source (``task="multilabel"``) is a CSV of ``path,labels`` (several labels in one cell) or
of ``path`` plus one 0/1 column per class.
Listing is sorted so the result never depends on the order the file system returns entries in.
"""

from __future__ import annotations

import difflib
import gzip
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cvkit.errors import OptionError, SourceError, UnsafePath
from cvkit.files.dataset import DEFAULT_TASK, LABELS_SEP, LOCALIZE, MULTILABEL, REGRESS, SEGMENT

SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                 "test": "test", "testing": "test"}


@dataclass
class Item:
    """One input image: a file to read, or pixels in memory to be written as a PNG under ``images/``."""

    path: str  # the manifest path: absolute for a file, relative to the dataset directory for written PNGs
    label: str
    split: str | None = None  # the source's own split, None when the source has none
    array: np.ndarray | None = None
    extra: dict[str, str] = field(default_factory=dict)
    # Multi-label sources: every label of the image in class order (``label`` is the first, "" for none);
    # None for a single-label source.
    labels: tuple[str, ...] | None = None
    row: int = 0  # a CSV source's row (1 is the header), for messages about the image's targets
    # Segment sources: the mask file (absolute, like ``path``; "" when the image has none) and its content
    # hash once read (``labels`` then holds the classes present in the mask).
    mask: str | None = None
    mask_sha1: str = ""

    @property
    def target(self) -> str | tuple[str, ...]:
        """What the image is labelled with: its class, its set of labels, or (segment) its mask's content."""
        if self.mask is not None:
            return self.mask_sha1
        return self.label if self.labels is None else self.labels


@dataclass
class Source:
    kind: str  # folders | split-folders | idx | csv | torchvision
    items: list[Item]
    classes: list[str]  # class order (defines indices)
    extra_columns: list[str] = field(default_factory=list)


def _visible(name: str) -> bool:
    return not name.startswith(".") and name not in ("Thumbs.db", "desktop.ini")


def files_below(folder: Path) -> list[Path]:
    """Every visible file at any depth below ``folder``, sorted."""
    out = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = [d for d in dirs if _visible(d)]
        out.extend(Path(root) / f for f in files if _visible(f))
    return sorted(out)


def _class_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and _visible(p.name))


def _from_class_folders(folder: Path, split: str | None) -> list[Item]:
    # abspath, not resolve: a broken link stays in the list under its own name and is reported.
    return [Item(os.path.abspath(f), d.name, split) for d in _class_folders(folder) for f in files_below(d)]


def safe_label_dir(label: str) -> str:
    """A label made safe as one path component (``T-shirt/top`` -> ``T-shirt_top``)."""
    return re.sub(r"[^\w.+-]+", "_", label).strip("._") or "_"


# ----------------------------------------------------------------------------- IDX


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzip'ed or not) of unsigned bytes."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
        zero, dtype, ndim = struct.unpack(">HBB", data[:4])
        if zero != 0 or dtype != 0x08 or ndim < 1:
            raise ValueError("not an IDX file of unsigned bytes")
        dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
        return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)
    except (OSError, EOFError, ValueError, struct.error) as e:
        raise SourceError(f"{path} cannot be read as an IDX file ({e}); replace it with an intact copy") from None


def _idx_file(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        for candidate in (folder / name, folder / name.replace("-idx", ".idx")):
            if candidate.is_file():
                return candidate
    return None


def is_idx_folder(folder: Path) -> bool:
    return _idx_file(folder, "train-images-idx3-ubyte") is not None


def _from_idx(folder: Path, classes: list[str] | None) -> Source:
    items: list[Item] = []
    label_values: set[int] = set()
    parts = []
    for part, split in (("train", "train"), ("t10k", "test")):
        images, labels = _idx_file(folder, f"{part}-images-idx3-ubyte"), _idx_file(folder, f"{part}-labels-idx1-ubyte")
        if images is None and labels is None and part == "t10k":
            continue
        if images is None or labels is None:
            missing = f"{part}-images-idx3-ubyte" if images is None else f"{part}-labels-idx1-ubyte"
            raise SourceError(f"{folder} has no {missing}[.gz] beside its other IDX files; add it")
        x, y = read_idx(images), read_idx(labels)
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise SourceError(f"{images} and {labels} disagree: {x.shape} images for {y.shape} labels")
        parts.append((part, split, x, y))
        label_values.update(np.unique(y).tolist())
    n_classes = max(label_values) + 1
    if classes is None:
        classes = [str(i) for i in range(n_classes)]
    elif len(classes) < n_classes:
        raise SourceError(f"--classes names {len(classes)} classes but the IDX labels go up to {n_classes - 1}; "
                          f"give {n_classes} names")
    for part, split, x, y in parts:
        out = "train" if part == "train" else "test"
        for i in range(len(y)):
            label = classes[int(y[i])]
            items.append(Item(f"images/{out}/{safe_label_dir(label)}/{i:05d}.png", label, split, array=x[i]))
    return Source("idx", items, list(classes))


# ----------------------------------------------------------------------------- CSV


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


RESERVED_COLUMNS = ("path", "label", "labels", "split", "fold", "sha1")  # never an extra or a 0/1 class column
BINARY = frozenset({"0", "1"})


def _read_csv(csv_path: Path, header: str) -> "pd.DataFrame":  # noqa: F821
    import pandas as pd

    try:
        return pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as e:
        raise SourceError(f"{csv_path} cannot be read as CSV ({' '.join(str(e).split())[:160]}); it needs a header "
                          f"row '{header}'") from None


def _csv_path(csv_path: Path, root: Path, real_root: Path, row: int, raw: str) -> str:
    """The checked absolute path of a CSV row's image (relative to the CSV's folder)."""
    if not raw:
        raise SourceError(f"{csv_path} row {row}: empty path")
    if "\x00" in raw:
        raise SourceError(f"{csv_path} row {row}: the path holds a NUL byte; fix that row")
    # Where the path really leads, links followed: a link inside the folder that points
    # outside it is refused like a '../' path.
    full = Path(os.path.normpath(root / raw))
    if not _inside(full.resolve(), real_root):
        raise UnsafePath(f"{csv_path} row {row}: path '{raw}' is outside the CSV's folder {root}; "
                         f"move the image inside it or list it relative to the CSV")
    return str(full)


def _csv_split(csv_path: Path, row: int, value: str) -> str | None:
    if not value:
        return None
    split = SPLIT_ALIASES.get(value.lower())
    if split is None:
        raise SourceError(f"{csv_path} row {row}: split '{value}' is not train, val or test")
    return split


def _from_csv(csv_path: Path) -> Source:
    frame = _read_csv(csv_path, "path,label[,split]")
    for col in ("path", "label"):
        if col not in frame.columns:
            raise SourceError(f"{csv_path} has no '{col}' column; its header must start with path,label[,split]")
    root = Path(os.path.abspath(csv_path.parent))
    real_root = root.resolve()
    has_split = "split" in frame.columns
    extra = [c for c in frame.columns if c not in ("path", "label", "split", "fold", "sha1")]
    items = []
    for row, rec in enumerate(frame.to_dict("records"), start=2):  # row 1 is the header
        raw = rec["path"]
        full = _csv_path(csv_path, root, real_root, row, raw)
        if not rec["label"]:
            raise SourceError(f"{csv_path} row {row}: empty label for '{raw}'")
        split = _csv_split(csv_path, row, rec["split"]) if has_split else None
        items.append(Item(full, rec["label"], split, extra={c: rec[c] for c in extra}))
    if not items:
        raise SourceError(f"{csv_path} lists no images")
    items.sort(key=lambda it: it.path)
    return Source("csv", items, sorted({it.label for it in items}), extra)


def check_class_name(name: str, where: str) -> None:
    """A multi-label class name must be joinable with '|' in manifest.csv's ``labels`` column."""
    if LABELS_SEP in name:
        raise SourceError(f"{where}: class name '{name}' holds '{LABELS_SEP}', which manifest.csv uses to join "
                          f"labels; rename the class")


def _from_multilabel_csv(csv_path: Path, classes: list[str] | None, delim: str, allow_empty: bool) -> Source:
    """A CSV of ``path,labels`` (``label`` also accepted; labels joined by ``delim``) or of ``path`` plus
    one 0/1 column per class. With ``classes``, they fix the class order, every label must be one of
    them and, in the 0/1 form, they name the class columns; otherwise the classes are sorted."""
    header = "path,labels[,split] or path,CLASS1,CLASS2,... of 0/1"
    frame = _read_csv(csv_path, header)
    if "path" not in frame.columns:
        raise SourceError(f"{csv_path} has no 'path' column; its header must be {header}")
    if "label" in frame.columns and "labels" in frame.columns:
        raise SourceError(f"{csv_path} has both a 'label' and a 'labels' column; keep the one that holds the labels")
    if classes is not None:
        for name in classes:
            check_class_name(name, "--classes")
    target = "labels" if "labels" in frame.columns else "label" if "label" in frame.columns else None
    others = [c for c in frame.columns if c not in RESERVED_COLUMNS]
    if target is None:
        if classes is not None:
            missing = [c for c in classes if c not in frame.columns]
            if missing:
                raise SourceError(f"{csv_path} has no column '{missing[0]}' of --classes, and no 'labels' column; "
                                  f"its header must be {header}")
            columns = list(classes)
        else:
            columns = [c for c in others if len(frame) and frame[c].isin(BINARY).all()]
        if not columns:
            raise SourceError(f"{csv_path} has no 'labels' column and no column of 0/1 per class; its header must "
                              f"be {header}")
        for name in columns:
            check_class_name(name, f"{csv_path} column '{name}'")
    else:
        columns = []
    extra = [c for c in others if c not in columns]
    if not delim:
        raise OptionError("--label-delim must not be empty; the default is a single space")
    known = set(classes) if classes is not None else None
    root = Path(os.path.abspath(csv_path.parent))
    real_root = root.resolve()
    has_split = "split" in frame.columns
    items = []
    for row, rec in enumerate(frame.to_dict("records"), start=2):  # row 1 is the header
        raw = rec["path"]
        full = _csv_path(csv_path, root, real_root, row, raw)
        if target is not None:
            cell = rec[target].strip()
            names = [name.strip() for name in cell.split(delim)] if cell else []
            if "" in names:
                raise SourceError(f"{csv_path} row {row}: an empty label in '{rec[target]}' (two delimiters "
                                  f"{delim!r} in a row, or one at an end); fix that row or pass --label-delim")
        else:
            bad = next((c for c in columns if rec[c] not in BINARY), None)
            if bad is not None:
                raise SourceError(f"{csv_path} row {row}: column '{bad}' holds '{rec[bad]}', not 0 or 1")
            names = [c for c in columns if rec[c] == "1"]
        for name in names:
            if known is not None and name not in known:
                raise SourceError(f"{csv_path} row {row}: label '{name}' is not one of --classes")
            check_class_name(name, f"{csv_path} row {row}")
        if not names and not allow_empty:
            raise SourceError(f"{csv_path} row {row}: '{raw}' has no label; label it, or pass --allow-empty to "
                              f"keep such images with every label negative")
        split = _csv_split(csv_path, row, rec["split"]) if has_split else None
        items.append(Item(full, "", split, extra={c: rec[c] for c in extra}, labels=tuple(dict.fromkeys(names))))
    if not items:
        raise SourceError(f"{csv_path} lists no images")
    if classes is None:
        classes = sorted({name for it in items for name in it.labels} | set(columns))
    order = {c: i for i, c in enumerate(classes)}
    for it in items:
        it.labels = tuple(sorted(it.labels, key=order.__getitem__))
        it.label = it.labels[0] if it.labels else ""
    items.sort(key=lambda it: it.path)
    return Source("csv", items, list(classes), extra)


# ----------------------------------------------------------------------------- torchvision


def _from_torchvision(name: str, root: Path | None) -> Source:
    try:
        import torchvision.datasets as tvd
    except ImportError as e:  # pragma: no cover - torchvision is a dependency
        raise SourceError(f"torchvision is not importable ({e}); reinstall cvkit") from None
    names = [n for n in getattr(tvd, "__all__", dir(tvd)) if n[:1].isupper()]
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise SourceError(f"torchvision has no dataset '{name}'.{hint} See torchvision.datasets for the list.")
    if root is None:
        raise SourceError(f"torchvision:{name} needs --root DIR, the folder where its files are or will be downloaded")
    cls = getattr(tvd, name)
    import inspect

    params = inspect.signature(cls).parameters
    parts: list[tuple[str, dict]] = []
    if "train" in params:
        parts = [("train", {"train": True}), ("test", {"train": False})]
    elif "split" in params:
        parts = [("train", {"split": "train"}), ("test", {"split": "test"})]
    else:
        raise SourceError(f"torchvision:{name} has no train/test split cvkit knows how to import; "
                          f"export it as class folders or a CSV")
    items: list[Item] = []
    classes: list[str] | None = None
    for split, kwargs in parts:
        try:
            ds = cls(root=str(root), download=True, **kwargs)
        except Exception as e:  # torchvision raises URLError, RuntimeError, ... when offline or corrupt
            raise SourceError(f"torchvision:{name} could not be loaded or downloaded into {root} "
                              f"({type(e).__name__}: {e}); when offline, put the dataset's files under --root") from None
        if classes is None:
            classes = [str(c) for c in getattr(ds, "classes", [])] or None
        for i in range(len(ds)):
            img, target = ds[i]
            arr = np.asarray(img)
            label = classes[int(target)] if classes else str(int(target))
            items.append(Item(f"images/{split}/{safe_label_dir(label)}/{i:05d}.png", label, split, array=arr))
    if classes is None:
        classes = sorted({it.label for it in items}, key=lambda s: (len(s), s))
    return Source("torchvision", items, classes)


# ----------------------------------------------------------------------------- detection


CSV_FORMS = {MULTILABEL: "path,labels with the labels joined by --label-delim, or path plus one 0/1 column per class",
             LOCALIZE: "path,label,x0,y0,x1,y1", REGRESS: "path[,label] plus the --targets columns",
             SEGMENT: "path,mask[,split]; a folder of images takes --masks MASKS"}


def csv_source(source: str, task: str) -> Path:
    """The CSV a task other than classify reads, or a one-line error."""
    path = Path(source)
    if not (path.is_file() and path.suffix.lower() == ".csv"):
        raise SourceError(f"--task {task} reads a CSV ({CSV_FORMS[task]}); SOURCE '{source}' is not a .csv file")
    return path


def open_source(source: str, root: str | os.PathLike | None = None, classes: list[str] | None = None,
                task: str = DEFAULT_TASK, label_delim: str = " ", allow_empty: bool = False) -> Source:
    """Detect what ``source`` is and list its images, labels and own splits.

    ``task="multilabel"`` reads a CSV with several labels per image (:func:`_from_multilabel_csv`),
    split by ``label_delim``; ``allow_empty`` keeps rows with no label at all. (``localize`` and
    ``regress`` CSVs: ``data/task_sources.py``.)"""
    if task == MULTILABEL:
        return _from_multilabel_csv(csv_source(source, task), classes, label_delim, allow_empty)
    if source.startswith("torchvision:"):
        return _from_torchvision(source.split(":", 1)[1], Path(root) if root else None)
    path = Path(source)
    if not path.exists():
        raise SourceError(f"SOURCE '{source}' does not exist; pass a folder of class folders, a CSV file, "
                          f"a folder of IDX files or torchvision:NAME")
    if path.is_file():
        if path.suffix.lower() == ".csv":
            return _from_csv(path)
        raise SourceError(f"SOURCE '{source}' is a file but not a .csv; pass a CSV of path,label[,split] or a folder")
    if is_idx_folder(path):
        return _from_idx(path, classes)
    subdirs = {p.name.lower(): p for p in _class_folders(path)}
    split_dirs = {SPLIT_ALIASES[n]: p for n, p in subdirs.items() if n in SPLIT_ALIASES}
    if "train" in split_dirs and len(split_dirs) >= 2 and len(split_dirs) == len(subdirs):
        items = [it for split in ("train", "val", "test") if split in split_dirs
                 for it in _from_class_folders(split_dirs[split], split)]
        kind = "split-folders"
    else:
        items = _from_class_folders(path, None)
        kind = "folders"
    if not items:
        raise SourceError(f"SOURCE '{source}' holds no images in class folders; lay it out as SOURCE/<class>/<image>")
    return Source(kind, items, sorted({it.label for it in items}))
