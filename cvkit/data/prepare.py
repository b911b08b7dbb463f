"""``cvkit prepare``: import a source into a dataset directory (README.md, "Dataset directory").

Everything is written into a staging folder beside ``out`` and moved into place only when the
whole import succeeded, so a failed run leaves nothing half-written.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cvkit.data.cache import pack_splits
from cvkit.data.decode import Task, check_workers, decode_all
from cvkit.data.masks import mask_class_names, open_segment_source, prepare_task, read_mask_classes, read_source_masks
from cvkit.data.sources import Item
from cvkit.data.task_sources import check_boxes, check_targets, open_any_source
from cvkit.data.splits import assign_folds, assign_folds_multilabel, carve, carve_multilabel, check_fractions
from cvkit.checks import check_seed
from cvkit.errors import OptionError, TooManyRejected, UnsafeOutput
from cvkit.files.dataset import (
    DEFAULT_TASK,
    LABELS_COLUMN,
    LOCALIZE,
    MASK_COLUMN,
    MASK_SHA1_COLUMN,
    REGRESS,
    SEGMENT,
    SIZE_COLUMNS,
    MANIFEST_COLUMNS,
    MULTILABEL,
    SPLITS,
    DatasetInfo,
    join_labels,
    write_classes,
    write_manifest,
    write_rejected,
)
from cvkit.files.images import Resize
from cvkit.files.lock import releasing
from cvkit.files.outputs import check_out, replacing
from cvkit.files.owned import own_dataset

SPLIT_PRIORITY = {"test": 0, "val": 1, "train": 2}  # a duplicate is kept in the first of these
# The tasks whose targets prepare can import (--task); a task added to cvkit/tasks/ joins here once
# prepare reads its input formats.
PREPARE_TASKS = (DEFAULT_TASK, MULTILABEL, LOCALIZE, REGRESS, SEGMENT)


@dataclass
class PrepareResult:
    out: Path
    kind: str
    classes: list[str]
    counts: dict[str, dict[str, int]]  # class -> split -> images (multi-label, segment: images with that class)
    rejected: list[tuple[str, str]]
    channels: int
    size: tuple[int, int] | None
    inputs: int
    reasons: Counter = field(default_factory=Counter)
    task: str = DEFAULT_TASK
    images: dict[str, int] = field(default_factory=dict)  # split -> images


@releasing  # the --out lock check_out takes is given up on return
def prepare(source: str, out: str | os.PathLike, *, size: tuple[int, int] | None = None, val: float = 0.1,
            test: float = 0.1, folds: int = 0, channels: int | None = None, workers: int | None = None,
            seed: int = 0, classes: list[str] | None = None, root: str | None = None,
            max_rejected: float = 0.5, resize: str = "crop", max_pixels: int | None = None,
            force: bool = False, task: str | None = None, label_delim: str | None = None,
            allow_empty: bool = False, targets: list[str] | None = None, keypoints: bool = False,
            flip_pairs: list[list[str]] | None = None, masks: str | None = None,
            mask_classes: str | os.PathLike | None = None) -> PrepareResult:
    """Import ``source`` into the dataset directory ``out``; see ``cvkit prepare --help``.

    ``task="multilabel"`` imports a CSV with several labels per image (``label_delim``, default a
    space, separates them; ``allow_empty`` keeps images with none) and stratifies by every label.
    ``localize`` imports a CSV of boxes; ``regress`` one of numeric ``targets`` (``keypoints``: x, y
    pairs in pixels, ``flip_pairs`` the keypoints a horizontal flip swaps). ``segment`` (the default
    with ``masks``, a folder of masks named like the images) imports images and masks of class
    indices, or a CSV of ``path,mask[,split]``; ``mask_classes`` is a file of class names (data/masks.py).
    ``task`` None: classify, or segment with ``masks`` or ``mask_classes``."""
    task = prepare_task(task, masks, mask_classes, classes)
    check_task(task, label_delim, allow_empty)
    targets, flip_pairs = list(targets or []), [list(p) for p in flip_pairs or []]
    check_task_targets(task, targets, keypoints, flip_pairs)
    check_fractions(val, test)
    if channels not in (None, 1, 3):
        raise OptionError(f"--channels {channels} must be 1 or 3")
    if resize not in ("crop", "squash"):
        raise OptionError(f"--resize {resize} must be crop or squash")
    if not 0.0 <= max_rejected <= 1.0:
        raise OptionError(f"--max-rejected {max_rejected} must be a fraction from 0 to 1")
    from PIL import Image

    if max_pixels is not None and not 0 < max_pixels <= Image.MAX_IMAGE_PIXELS:
        raise OptionError(f"--max-pixels {max_pixels} must be from 1 to Pillow's decompression-bomb limit "
                          f"{Image.MAX_IMAGE_PIXELS}; cvkit only lowers that limit")
    check_workers(workers)
    check_seed(seed)
    if folds == 1 or folds < 0:
        raise OptionError(f"--folds {folds} must be at least 2 (or 0 for no folds)")
    sources = [] if source.startswith("torchvision:") else [source]
    out = check_out(out, sources=sources + ([masks] if masks else []),
                    reads=[r for r in (root, mask_classes) if r], own=own_dataset, force=force, dataset=True)
    if task == SEGMENT:
        names = read_mask_classes(mask_classes) if mask_classes is not None else []
        src = open_segment_source(source, masks)
        src.classes = names  # empty: numbered from the masks once they are read
    else:
        src = open_any_source(source, task, targets, keypoints, root=root, classes=classes,
                              label_delim=" " if label_delim is None else label_delim, allow_empty=allow_empty)
    inside = next((f for it in src.items if it.array is None for f in (it.path, it.mask) if f and _within(f, out)),
                  None)
    if inside is not None:
        raise UnsafeOutput(f"--out {out} holds {inside}, a file this import reads; choose another --out")
    if size is not None:
        check_room(out.parent, len(src.items), size, (channels or 3) + (task == SEGMENT))
    with replacing(out) as stage:
        result = _prepare_into(stage, src, size, val, test, folds, channels, workers, seed, max_rejected, resize,
                               max_pixels, _source_root(source, src.kind), task,
                               {"targets": targets, "keypoints": keypoints, "flip_pairs": flip_pairs}, source)
    result.out = out
    return result


def check_task(task: str, label_delim: str | None, allow_empty: bool) -> None:
    if task not in PREPARE_TASKS:
        import difflib

        close = difflib.get_close_matches(task, PREPARE_TASKS, n=1)
        hint = f" Did you mean {close[0]}?" if close else ""
        raise OptionError(f"--task {task} must be one of {', '.join(PREPARE_TASKS)}.{hint}")
    if task != MULTILABEL and (label_delim is not None or allow_empty):
        option = "--label-delim" if label_delim is not None else "--allow-empty"
        raise OptionError(f"{option} is for multi-label sources; add --task {MULTILABEL}")
    if label_delim is not None and (not label_delim or "\n" in label_delim or "\r" in label_delim):
        raise OptionError(f"--label-delim {label_delim!r} must be one or more characters other than a line break; "
                          f"the default is a single space")


def check_task_targets(task: str, targets: list[str], keypoints: bool, flip_pairs: list[list[str]]) -> None:
    """``--targets``, ``--keypoints`` and ``--flip-pairs`` are regress's, and agree with each other."""
    if task != REGRESS:
        given = next((o for o, v in (("--targets", targets), ("--keypoints", keypoints), ("--flip-pairs", flip_pairs))
                      if v), None)
        if given:
            raise OptionError(f"{given} is for numeric targets; add --task {REGRESS}")
        return
    check_targets(targets, keypoints, flip_pairs)


def _within(path: str, folder: Path) -> bool:
    real, top = os.path.realpath(path), os.path.realpath(folder)
    return real == top or real.startswith(top.rstrip(os.sep) + os.sep)


def check_room(folder: Path, images: int, size: tuple[int, int], channels: int) -> None:
    """Refuse a cache that would not fit on the disk (it is written twice while it is built)."""
    need = 2 * images * size[0] * size[1] * channels
    probe = folder
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if need > free:
        raise OptionError(f"--size {size[0]}x{size[1]}: the packed cache of {images:,} images would take "
                          f"{need / 2**30:,.1f} GiB while it is built, and {probe} has {free / 2**30:,.1f} GiB free; "
                          f"choose a smaller --size")


def _source_root(source: str, kind: str) -> str | None:
    """The folder whose files the manifest will name (dataset.json's source_root); None when the images
    are written into the dataset."""
    if kind in ("idx", "torchvision"):
        return None
    return os.path.realpath(source if os.path.isdir(source) else os.path.dirname(os.path.abspath(source)))


def _prepare_into(stage: Path, src, size, val, test, folds, channels, workers, seed, max_rejected, resize,
                  max_pixels, source_root: str | None, task: str = DEFAULT_TASK, options: dict | None = None,
                  source: str = "") -> PrepareResult:
    items: list[Item] = src.items
    n = len(items)
    # A file whose links lead outside the source is not imported: the manifest would name a file elsewhere.
    escaping = {i for i, it in enumerate(items) if it.array is None and source_root and not _within(it.path, Path(source_root))}
    tasks = [Task(i, None, it.array, str(stage / it.path)) if it.array is not None else Task(i, it.path)
             for i, it in enumerate(items) if i not in escaping]
    decoded = None
    if size is not None:
        decoded = stage / "cache" / ".decoded.npy"
        decoded.parent.mkdir(parents=True)
        np.lib.format.open_memmap(decoded, mode="w+", dtype=np.uint8, shape=(n, size[0], size[1], channels or 3)).flush()
    results = decode_all(tasks, channels, Resize(size[0], size[1], resize) if size else None, max_pixels,
                         str(decoded) if decoded else None, workers, description="Importing")

    rejected: list[tuple[str, str]] = [(items[r.index].path, r.reason) for r in results if r.reason]
    rejected += [(items[i].path, "links outside the source folder") for i in sorted(escaping)]
    ok = [r for r in results if not r.reason]
    decoded_masks = None
    if task == SEGMENT:
        ok, bad_masks, decoded_masks = read_source_masks(src, ok, stage, Resize(size[0], size[1], resize) if size
                                                         else None, src.classes or None, max_pixels, workers)
        rejected += bad_masks
    split_of, follows, dropped = _resolve_duplicates(items, ok)
    rejected += [(items[i].path, reason) for i, reason in dropped]
    first = "; ".join(f"{p}: {why}" for p, why in rejected[:3])
    if n and len(rejected) / n > max_rejected:
        raise TooManyRejected(f"{len(rejected)} of {n} inputs ({len(rejected) / n:.0%}) were rejected, more than "
                              f"--max-rejected {max_rejected} (first: {first}); fix the inputs or raise --max-rejected")
    if not split_of:
        raise TooManyRejected(f"none of the {n} inputs is a usable image (first: {first}); fix the inputs")

    options = options or {}
    geometry = task == LOCALIZE or options.get("keypoints", False)  # targets in pixels: keep each image's size
    sizes = {r.index: r.size for r in ok}
    if task == LOCALIZE:
        check_boxes(source, items, sorted(set(split_of) | set(follows)), sizes,
                    Resize(size[0], size[1], resize) if size else None)
    rng = np.random.default_rng(seed)
    multilabel = task in (MULTILABEL, SEGMENT)  # stratified by sets of labels (segment: the classes in the mask)
    labels = [it.label for it in items]
    # What splits and folds are stratified by: the class, or (multi-label) the set of labels.
    targets = [it.labels for it in items] if multilabel else labels
    carver = carve_multilabel if multilabel else carve
    _assign_splits(split_of, follows, targets, val, test, rng, carver)
    kept = sorted(split_of)
    dealer = assign_folds_multilabel if multilabel else assign_folds
    fold_of = dealer([i for i in kept if split_of[i] != "test"], targets, folds, rng) if folds else {}

    gray = {r.index: r.gray for r in ok}
    n_channels = channels or (1 if all(gray[i] for i in kept) else 3)
    present = {labels[i] for i in kept}
    # A multi-label dataset keeps every class, even one no kept image has: the head has one output each.
    if task == SEGMENT:
        class_names = mask_class_names(items, kept, src.classes or None)
    else:
        class_names = list(src.classes) if multilabel else [c for c in src.classes if c in present]

    import pandas as pd

    sha1 = {r.index: r.sha1 for r in ok}
    frame = pd.DataFrame({"path": [items[i].path for i in kept], "label": [labels[i] for i in kept],
                          "split": [split_of[i] for i in kept], "fold": [fold_of.get(i, -1) for i in kept],
                          "sha1": [sha1[i] for i in kept]}, columns=list(MANIFEST_COLUMNS))
    if multilabel:
        frame[LABELS_COLUMN] = [join_labels(items[i].labels) for i in kept]
    if task == SEGMENT:
        frame[MASK_COLUMN] = [items[i].mask for i in kept]
        frame[MASK_SHA1_COLUMN] = [items[i].mask_sha1 for i in kept]
    for col in src.extra_columns:
        frame[col] = [items[i].extra.get(col, "") for i in kept]
    if geometry:
        frame[SIZE_COLUMNS[0]] = [sizes[i][1] for i in kept]
        frame[SIZE_COLUMNS[1]] = [sizes[i][0] for i in kept]
    write_manifest(stage, frame)
    write_classes(stage, class_names)
    rejected.sort()
    write_rejected(stage, rejected)
    images = {s: int((frame["split"] == s).sum()) for s in SPLITS}
    DatasetInfo(src.kind, list(size) if size else None, n_channels, resize, seed, val, test, folds, images,
                source_root, task, options.get("targets", []), options.get("keypoints", False),
                options.get("flip_pairs", []), getattr(src, "mask_root", None)).write(stage)
    if decoded is not None:
        pack_splits(stage, frame, kept, size, n_channels, resize, decoded, decoded_masks)

    counts = {c: {s: 0 for s in SPLITS} for c in class_names}
    for i, split in zip(kept, frame["split"]):
        for label in (items[i].labels if multilabel else (labels[i],)):
            if label in counts:  # a regress image may have no class
                counts[label][split] += 1
    return PrepareResult(stage, src.kind, class_names, counts, rejected, n_channels, size, n,
                         Counter(why.split(":")[0] for _, why in rejected), task, images)


def _resolve_duplicates(items: list[Item], ok) -> tuple[dict[int, str | None], dict[int, int], list[tuple[int, str]]]:
    """Keep byte-identical copies from landing in two splits or under two labels.

    Returns the source split (None: to be assigned) of every kept item, the copies that must follow
    their first copy's split once it is assigned, and the dropped items with the reason. Copies in
    one split are kept; a copy in another given split is dropped in favour of the one in test, then val.
    """
    groups: dict[str, list[int]] = {}
    for r in sorted(ok, key=lambda r: items[r.index].path):
        groups.setdefault(r.sha1, []).append(r.index)
    split_of: dict[int, str | None] = {}
    follows: dict[int, int] = {}
    dropped: list[tuple[int, str]] = []
    for members in groups.values():
        first = members[0]
        same = [i for i in members if items[i].target == items[first].target]
        dropped += [(i, f"duplicate: same bytes as {items[first].path}, {_shown(items[first])}")
                    for i in members if i not in same]
        given = sorted({items[i].split for i in same if items[i].split}, key=SPLIT_PRIORITY.get)
        keep_split = given[0] if given else None
        holder = next((i for i in same if items[i].split == keep_split), first)
        for i in same:
            if items[i].split and items[i].split != keep_split:
                dropped.append((i, f"duplicate: same bytes as {items[holder].path} in the {keep_split} split"))
            elif keep_split is None and i != first:
                follows[i] = first
            else:
                split_of[i] = keep_split
    return split_of, follows, dropped


def _shown(item: Item) -> str:
    """What a kept copy is labelled with, for the reason a differently labelled copy is dropped."""
    if item.mask is not None:
        return f"with the mask {item.mask}"
    return f"labelled '{item.label if item.labels is None else join_labels(item.labels)}'"


def _assign_splits(split_of: dict[int, str | None], follows: dict[int, int], targets: list, val: float,
                   test: float, rng: np.random.Generator, carver=carve) -> None:
    """Fill in the splits: images with none are carved by fraction of the whole; a source with
    splits but no val has ``val`` of its train split carved out. Duplicates follow their first copy.
    ``carver`` stratifies by ``targets`` (:func:`carve` by class, :func:`carve_multilabel` by labels)."""
    free = [i for i, s in split_of.items() if s is None]
    given = len(free) < len(split_of)
    split_of.update(carver(free, targets, {"val": val, "test": test}, rng))
    if given and "val" not in split_of.values():
        train = [i for i, s in split_of.items() if s == "train"]
        split_of.update(carver(train, targets, {"val": val}, rng))
    for i, first in follows.items():
        split_of[i] = split_of[first]
