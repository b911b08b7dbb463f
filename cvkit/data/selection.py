"""Data selections: which images of a dataset a job uses.

A selection is a split (``train``), a fold of train+val (``fold != k`` to train on, ``fold == k``
to validate on), or an explicit list of manifest rows. Only the splits a selection touches are
read, so a fold selection never opens the test split's images.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cvkit.data.cache import SplitData, load_split, take
from cvkit.errors import ManifestError, OptionError
from cvkit.files.dataset import SPLITS, read_manifest


@dataclass(frozen=True)
class Selection:
    """Rows of a manifest: :meth:`of_split`, :meth:`of_splits`, :meth:`of_fold` or :meth:`of_rows` build one."""

    splits: tuple[str, ...] = ("train",)
    fold: int | None = None
    in_fold: bool = False  # with ``fold``: True selects fold == k, False fold != k
    rows: tuple[int, ...] | None = None

    @classmethod
    def of_split(cls, name: str) -> "Selection":
        if name not in SPLITS:
            raise OptionError(f"split '{name}' must be one of {', '.join(SPLITS)}")
        return cls((name,))

    @classmethod
    def of_fold(cls, k: int, validation: bool) -> "Selection":
        """Fold ``k`` of train+val: its images (``validation=True``) or all the others."""
        if k < 0:
            raise OptionError(f"fold {k} must be 0 or more")
        return cls(("train", "val"), k, validation)

    @classmethod
    def of_splits(cls, *names: str) -> "Selection":
        """Whole splits together, e.g. train+val for a final fit after cross-validation."""
        for name in names:
            cls.of_split(name)
        return cls(tuple(names))

    @classmethod
    def of_rows(cls, rows: list[int]) -> "Selection":
        if not rows:
            raise OptionError("an explicit selection needs at least one manifest row")
        return cls(tuple(SPLITS), None, False, tuple(int(r) for r in rows))

    @property
    def whole_split(self) -> str | None:
        """The split name when the selection is exactly one whole split."""
        return self.splits[0] if len(self.splits) == 1 and self.fold is None and self.rows is None else None

    def describe(self) -> str:
        if self.whole_split:
            return f"the {self.whole_split} split"
        if self.fold is not None:
            return f"fold {'==' if self.in_fold else '!='} {self.fold} of train+val"
        if self.rows is None:
            return f"the {'+'.join(self.splits)} splits"
        return f"{len(self.rows or ())} listed rows"

    def to_json(self) -> dict[str, Any]:
        return {"splits": list(self.splits), "fold": self.fold, "in_fold": self.in_fold,
                "rows": list(self.rows) if self.rows is not None else None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Selection":
        rows = data.get("rows")
        return cls(tuple(data["splits"]), data.get("fold"), bool(data.get("in_fold")),
                   tuple(rows) if rows is not None else None)


def selected_rows(frame: "pd.DataFrame", sel: Selection, dataset: Path) -> np.ndarray:  # noqa: F821
    """The manifest row numbers of ``sel``, in manifest order."""
    mask = frame["split"].isin(sel.splits).to_numpy().copy()
    if sel.fold is not None:
        folds = frame["fold"].to_numpy()
        if (folds[mask] < 0).any():
            raise ManifestError(f"{dataset} has no folds for every train and val image; prepare it with --folds K")
        if sel.fold >= folds[mask].max() + 1:
            raise OptionError(f"fold {sel.fold} does not exist: {dataset} has {folds[mask].max() + 1} folds")
        mask &= (folds == sel.fold) if sel.in_fold else (folds != sel.fold)
    if sel.rows is not None:
        wanted = np.zeros(len(frame), dtype=bool)
        rows = np.asarray(sel.rows, dtype=np.int64)
        if rows.min() < 0 or rows.max() >= len(frame):
            raise OptionError(f"row {int(rows.max())} is not a row of {dataset}/manifest.csv ({len(frame)} rows)")
        wanted[rows] = True
        mask &= wanted
    return np.flatnonzero(mask)


def load_selection(dataset: str | os.PathLike, sel: Selection, size: tuple[int, int] | None = None,
                   workers: int | None = None) -> SplitData:
    """The images and labels of ``sel``: a whole split straight from its memory-mapped cache, anything
    else gathered into memory from the caches of the splits it touches."""
    dataset = Path(dataset)
    if sel.whole_split:
        return load_split(dataset, sel.whole_split, size, workers)
    frame = read_manifest(dataset)
    rows = selected_rows(frame, sel, dataset)
    if len(rows) == 0:
        raise ManifestError(f"{dataset}: {sel.describe()} holds no images")
    parts = []
    for split in SPLITS:
        wanted = rows[frame["split"].to_numpy()[rows] == split]
        if len(wanted) == 0:
            continue
        data = load_split(dataset, split, size, workers)
        size = (int(data.images.shape[1]), int(data.images.shape[2]))
        position = {r: i for i, r in enumerate(data.rows)}
        index = np.array([position[int(r)] for r in wanted], dtype=np.int64)
        parts.append((wanted, data, index))
    classes = parts[0][1].classes
    order = np.argsort(np.concatenate([w for w, _, _ in parts]), kind="stable")
    images = np.concatenate([take(d.images, i) for _, d, i in parts])[order]
    labels = np.concatenate([d.labels[i] for _, d, i in parts])[order]
    multi_hot = values = masks = None
    if parts[0][1].masks is not None:
        masks = np.concatenate([take(d.masks, i) for _, d, i in parts])[order]
    if parts[0][1].multi_hot is not None:
        multi_hot = np.concatenate([d.multi_hot[i] for _, d, i in parts])[order]
    if parts[0][1].values is not None:
        values = np.concatenate([d.values[i] for _, d, i in parts])[order]
    paths_all = [d.paths[j] for _, d, i in parts for j in i]
    row_all = np.concatenate([w for w, _, _ in parts])
    return SplitData(images, labels, [paths_all[j] for j in order], classes, [int(row_all[j]) for j in order],
                     multi_hot, values, masks)


def shard_range(n: int, index: int, count: int) -> range:
    """Positions ``0..n-1`` of shard ``index`` of ``count`` (``--shard I/N``): contiguous, in order, sizes
    differing by at most one, every position in exactly one shard."""
    base, extra = divmod(n, count)
    start = index * base + min(index, extra)
    return range(start, start + base + (1 if index < extra else 0))


def take_shard(data: SplitData, shard: tuple[int, int]) -> SplitData:
    """Share ``shard=(I, N)`` of a split's images (:func:`shard_range`), images read into memory."""
    rows = shard_range(len(data.labels), *shard)
    index = np.arange(rows.start, rows.stop)
    return SplitData(take(data.images, index), data.labels[index], data.paths[rows.start:rows.stop], data.classes,
                     data.rows[rows.start:rows.stop], None if data.multi_hot is None else data.multi_hot[index],
                     None if data.values is None else data.values[index],
                     None if data.masks is None else take(data.masks, index))
