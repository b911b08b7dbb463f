"""Segmentation masks (``--task segment``): their sources, class names, and parallel decoding.

A source is a folder of images with ``--masks MASKS``, a folder of masks laid out like it (the mask of
``IMAGES/a/x.jpg`` is ``MASKS/a/x.png``, any image extension; ``train/``, ``val/``, ``test/`` subfolders
of IMAGES give the splits), or a CSV of ``path,mask[,split]`` (both paths relative to the CSV's folder,
never outside it). A mask is an image of its image's size whose pixel values are class indices,
``IGNORE_INDEX`` (255) meaning "ignore": a palette PNG (the palette index is the class, not its colour),
a grayscale one, or a 16-bit one whose values fit (:func:`~cvkit.files.images.decode_mask`).

An image whose mask is missing, unreadable, of another size, or holds a value that is no class is
skipped and listed in rejected.csv with a reason starting ``mask:``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cvkit.data.decode import Result, map_chunks, shared_output
from cvkit.data.sources import (
    SPLIT_ALIASES,
    Item,
    Source,
    _class_folders,
    _csv_path,
    _csv_split,
    _inside,
    _read_csv,
    check_class_name,
    csv_source,
    files_below,
)
from cvkit.errors import OptionError, SourceError, UnsafePath
from cvkit.files.dataset import DEFAULT_TASK, IGNORE_INDEX, LABELS_COLUMN, MASK_COLUMN, MASK_SHA1_COLUMN, SEGMENT
from cvkit.files.images import BadImage, Resize, decode_mask, image_size, sha1_bytes

MASK_HEADER = "path,mask[,split]"
CLASSES_FIX = "write one class name a line, background (index 0) first"


@dataclass
class SegmentSource(Source):
    """A :class:`Source` whose items carry their mask (``Item.mask``); ``classes`` are --mask-classes' names,
    or empty until the masks are read (then numbered "0" to "K-1")."""

    mask_root: str | None = None  # the real path of the folder masks must lie in (dataset.json's mask_root)
    problems: dict[int, str] = field(default_factory=dict)  # item index -> why its mask cannot be used


def prepare_task(task: str | None, masks: str | None, mask_classes: str | os.PathLike | None,
                 classes: list[str] | None) -> str:
    """The task a ``prepare`` call imports for: ``--masks`` (and ``--mask-classes``) imply segment."""
    given = "--masks" if masks is not None else "--mask-classes" if mask_classes is not None else None
    if given is None:
        return DEFAULT_TASK if task is None else task
    if task not in (None, SEGMENT):
        raise OptionError(f"{given} is for segmentation, not --task {task}; drop --task or make it --task {SEGMENT}")
    if classes is not None:
        raise OptionError("--classes is for IDX and multi-label sources; a segment dataset's class names come from "
                          "--mask-classes FILE (one a line, background first)")
    return SEGMENT


def read_mask_classes(path: str | os.PathLike) -> list[str]:
    """``--mask-classes FILE``: the class names, one a line, the name of mask value 0 (background) first."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise OptionError(f"--mask-classes {path} cannot be read ({why}); give a UTF-8 text file of class names: "
                          f"{CLASSES_FIX}") from None
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise OptionError(f"--mask-classes {path} names no class; {CLASSES_FIX}")
    first: dict[str, int] = {}
    for n, name in enumerate(lines, start=1):
        if not name:
            raise OptionError(f"--mask-classes {path} line {n} is blank; {CLASSES_FIX}, with no blank lines")
        if name in first:
            raise OptionError(f"--mask-classes {path} line {n}: '{name}' is named twice (first on line {first[name]}); "
                              f"give each class once")
        try:
            check_class_name(name, f"--mask-classes {path} line {n}")
        except SourceError as e:
            raise OptionError(str(e)) from None
        first[name] = n
    if len(lines) > IGNORE_INDEX:
        raise OptionError(f"--mask-classes {path} names {len(lines)} classes; a mask holds at most {IGNORE_INDEX} "
                          f"(0 to {IGNORE_INDEX - 1}, {IGNORE_INDEX} = ignore)")
    return lines


def open_segment_source(source: str, masks: str | None) -> SegmentSource:
    """The images of ``source`` with their masks: a folder with ``masks``, else a CSV of ``path,mask``."""
    if masks is None:
        return from_mask_csv(csv_source(source, SEGMENT))
    images, folder = Path(source), Path(masks)
    if not folder.exists():
        raise OptionError(f"--masks {masks} does not exist; give the folder of masks (PNGs of class indices named "
                          f"like the images)")
    if not folder.is_dir():
        raise OptionError(f"--masks {masks} is not a folder; give the folder of masks (PNGs of class indices named "
                          f"like the images), or list image,mask pairs in a CSV of {MASK_HEADER}")
    if not images.is_dir():
        raise OptionError(f"--masks pairs a folder of images with a folder of masks, but SOURCE '{source}' is not a "
                          f"folder; a CSV of {MASK_HEADER} names each image's mask instead")
    if images.resolve() == folder.resolve():
        raise OptionError(f"--masks {masks} is SOURCE itself; keep the masks in a folder of their own, named like "
                          f"the images")
    return from_mask_folder(images, folder)


def from_mask_folder(images: Path, masks: Path) -> SegmentSource:
    """Every image below ``images`` (any depth; masks lying inside it are not images), each paired with the
    file of the same relative folder and stem below ``masks``."""
    top, mask_top = Path(os.path.abspath(images)), Path(os.path.abspath(masks))
    real_masks = mask_top.resolve()
    by_stem: dict[tuple[str, str], list[Path]] = {}
    for f in files_below(mask_top):
        rel = f.relative_to(mask_top)
        by_stem.setdefault((rel.parent.as_posix(), rel.stem), []).append(f)
    subdirs = {p.name.lower() for p in _class_folders(top) if not _inside(p, mask_top)}
    splits = "train" in subdirs and len(subdirs) >= 2 and subdirs <= set(SPLIT_ALIASES)
    pairs: list[tuple[Item, str | None]] = []
    for f in files_below(top):
        if _inside(f, mask_top):
            continue
        rel = f.relative_to(top)
        split = SPLIT_ALIASES.get(rel.parts[0].lower()) if splits and len(rel.parts) > 1 else None
        found = by_stem.get((rel.parent.as_posix(), rel.stem), [])
        problem = None
        if not found:
            problem = f"mask: no file named {rel.with_suffix('').as_posix()}.* in {masks}"
        elif len(found) > 1:
            problem = f"mask: several files named {rel.with_suffix('').as_posix()}.* in {masks} " \
                      f"({', '.join(p.name for p in found)}); keep one"
        elif not _inside(found[0].resolve(), real_masks):
            problem = f"mask: {found[0]} links outside the masks folder {masks}"
        pairs.append((Item(str(f), "", split, mask=str(found[0]) if len(found) == 1 else ""), problem))
    if not pairs:
        raise SourceError(f"SOURCE '{images}' holds no images; --masks pairs a folder of images with a folder of masks")
    return _segment_source("split-folders" if splits else "folders", pairs, [], str(real_masks))


def from_mask_csv(csv_path: Path) -> SegmentSource:
    """``path,mask[,split]``: each image and its mask, relative to the CSV's folder (never outside it)."""
    frame = _read_csv(csv_path, MASK_HEADER)
    missing = [c for c in ("path", MASK_COLUMN) if c not in frame.columns]
    if missing:
        raise SourceError(f"{csv_path} has no '{missing[0]}' column; its header must be {MASK_HEADER}")
    taken = [c for c in (LABELS_COLUMN, MASK_SHA1_COLUMN) if c in frame.columns]
    if taken:
        raise SourceError(f"{csv_path} has a '{taken[0]}' column; prepare writes it from the masks, so rename it")
    root = Path(os.path.abspath(csv_path.parent))
    real_root = root.resolve()
    has_split = "split" in frame.columns
    extra = [c for c in frame.columns if c not in ("path", "label", "split", "fold", "sha1", MASK_COLUMN)]
    pairs: list[tuple[Item, str | None]] = []
    for row, rec in enumerate(frame.to_dict("records"), start=2):  # row 1 is the header
        full = _csv_path(csv_path, root, real_root, row, rec["path"])
        raw = rec[MASK_COLUMN]
        mask, problem = _csv_mask(csv_path, root, real_root, row, raw), None
        if not raw:
            problem = f"mask: row {row} of {csv_path.name} names none"
        elif not os.path.isfile(mask):
            problem = f"mask: {raw} does not exist" if not os.path.lexists(mask) else f"mask: {raw} is not a file"
        split = _csv_split(csv_path, row, rec["split"]) if has_split else None
        pairs.append((Item(full, "", split, extra={c: rec[c] for c in extra}, row=row, mask=mask), problem))
    if not pairs:
        raise SourceError(f"{csv_path} lists no images")
    return _segment_source("csv", pairs, extra, str(real_root))


def _csv_mask(csv_path: Path, root: Path, real_root: Path, row: int, raw: str) -> str:
    """The checked absolute path of a CSV row's mask ("" for an empty cell), like the image's path."""
    if not raw:
        return ""
    if "\x00" in raw:
        raise SourceError(f"{csv_path} row {row}: the mask path holds a NUL byte; fix that row")
    full = Path(os.path.normpath(root / raw))
    if not _inside(full.resolve(), real_root):
        raise UnsafePath(f"{csv_path} row {row}: mask '{raw}' is outside the CSV's folder {root}; move the mask "
                         f"inside it or list it relative to the CSV")
    return str(full)


def _segment_source(kind: str, pairs: list[tuple[Item, str | None]], extra: list[str], root: str) -> SegmentSource:
    pairs.sort(key=lambda pair: pair[0].path)
    problems = {i: problem for i, (_, problem) in enumerate(pairs) if problem}
    return SegmentSource(kind, [item for item, _ in pairs], [], extra, root, problems)


# ----------------------------------------------------------------------------- decoding


@dataclass
class MaskTask:
    """Decode the mask ``path``, which must have ``size`` (height, width), or the size of ``image``."""

    index: int
    path: str
    size: tuple[int, int] | None = None
    image: str | None = None


@dataclass
class MaskResult:
    index: int
    sha1: str = ""
    reason: str | None = None  # why the image is rejected; None when its mask is fine
    values: tuple[int, ...] = ()  # the class indices the mask holds


def _mask_chunk(tasks: list[MaskTask], resize: Resize | None, classes: int | None, max_pixels: int | None,
                out_path: str | None) -> list[MaskResult]:
    out = shared_output(out_path)
    results = []
    for t in tasks:
        try:
            size = t.size if t.image is None else image_size(t.image)
        except Exception as e:  # noqa: BLE001 - whatever Pillow raises for the image, it is the reason
            results.append(MaskResult(t.index, reason=f"unreadable: the image's size cannot be read ({e})"))
            continue
        try:
            data = Path(t.path).read_bytes()
            decoded = decode_mask(data, resize, size, classes, max_pixels)
        except BadImage as e:
            results.append(MaskResult(t.index, reason=str(e)))
            continue
        except OSError as e:
            results.append(MaskResult(t.index, reason=f"mask: unreadable: {e.strerror or e}"))
            continue
        if out is not None:
            out[t.index] = decoded.array
        results.append(MaskResult(t.index, sha1_bytes(data), None, decoded.values))
    return results


def decode_masks(tasks: list[MaskTask], resize: Resize | None = None, classes: int | None = None,
                 max_pixels: int | None = None, out_path: str | None = None, workers: int | None = None,
                 description: str = "Reading masks") -> list[MaskResult]:
    """Check, hash and (with ``resize``) resize every mask; with ``out_path`` (an ``.npy`` of N x H x W uint8)
    store each at its task's ``index``. One :class:`MaskResult` per task, in order; never raises for a bad mask."""
    return map_chunks(_mask_chunk, tasks, workers, description, resize, classes, max_pixels, out_path)


def read_source_masks(src: SegmentSource, ok: list[Result], stage: Path, resize: Resize | None,
                      classes: list[str] | None, max_pixels: int | None,
                      workers: int | None) -> tuple[list[Result], list[tuple[str, str]], Path | None]:
    """Decode the masks of the images that decoded (``ok``), each checked against its image's size and
    ``classes``; with ``resize``, into ``stage/cache/.decoded_mask.npy`` (one plane per source item).

    Sets each good item's ``mask_sha1`` and ``labels`` (the names of the classes its mask holds; "0",
    "1", ... without ``classes``). Returns the images whose mask is fine, the rejected ones with the
    reason, and the decoded planes' file (None without ``resize``)."""
    items = src.items
    rejected = [(items[r.index].path, src.problems[r.index]) for r in ok if r.index in src.problems]
    tasks = [MaskTask(r.index, items[r.index].mask, r.size) for r in ok if r.index not in src.problems]
    decoded = None
    if resize is not None:
        decoded = stage / "cache" / ".decoded_mask.npy"
        decoded.parent.mkdir(parents=True, exist_ok=True)
        np.lib.format.open_memmap(decoded, mode="w+", dtype=np.uint8,
                                  shape=(len(items), resize.height, resize.width)).flush()
    results = decode_masks(tasks, resize, len(classes) if classes else None, max_pixels,
                           str(decoded) if decoded else None, workers)
    good = set()
    for m in results:
        item = items[m.index]
        if m.reason:
            rejected.append((item.path, m.reason))
            continue
        item.mask_sha1 = m.sha1
        item.labels = tuple(classes[v] if classes else str(v) for v in m.values)
        good.add(m.index)
    return [r for r in ok if r.index in good], rejected, decoded


def mask_class_names(items: list[Item], kept: list[int], classes: list[str] | None) -> list[str]:
    """``classes`` (--mask-classes), or "0" to "K-1" with K the largest value the kept masks hold + 1."""
    if classes is not None:
        return list(classes)
    top = max((int(name) for i in kept for name in items[i].labels or ()), default=0)
    return [str(v) for v in range(top + 1)]
