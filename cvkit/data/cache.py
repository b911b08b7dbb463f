"""The packed uint8 cache: each split's images decoded once, at a fixed size, memory-mapped.

``cache/{split}_{H}x{W}.npy`` holds an N x H x W x C uint8 array (HWC, so a batch moved to torch
and permuted to NCHW is already channels-last); ``cache/{split}_{H}x{W}.json`` holds the manifest
rows it was built from and a key over their paths and content hashes. A cache whose key no longer
matches the manifest (rows added, removed or changed in that split) is rebuilt on load. A segment
dataset's masks lie beside the images in ``cache/{split}_{H}x{W}_mask.npy`` (N x H x W uint8 class
indices, resized with nearest neighbour through the images' geometry), keyed by their own paths and
``mask_sha1``s in ``cache/{split}_{H}x{W}_mask.json``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cvkit.data.decode import Task, decode_all
from cvkit.data.masks import MaskTask, decode_masks
from cvkit.data.targets import target_values
from cvkit.errors import ManifestError, OptionError
from cvkit.files.atomic import atomic_path
from cvkit.files.dataset import (
    LABELS_COLUMN,
    MASK_COLUMN,
    MASK_SHA1_COLUMN,
    MULTILABEL,
    REGRESS,
    SEGMENT,
    SPLITS,
    CacheMeta,
    DatasetInfo,
    image_files,
    manifest_path,
    mask_files,
    read_classes,
    read_manifest,
    split_labels,
)
from cvkit.files.images import Resize

# Rows copied per step when filling a cache, so memory stays bounded whatever the image size.
COPY_BYTES = 64 << 20


@dataclass
class SplitData:
    """One split of a dataset at one size: ``images`` is memory-mapped N x H x W x C uint8."""

    images: np.ndarray
    labels: np.ndarray  # int64 class indices (a multi-label dataset: of the first label, 0 for none)
    paths: list[str]
    classes: list[str]
    rows: list[int]  # manifest row of each image
    # Multi-label datasets: N x K float32, 1 where the image has class k (manifest ``labels``); else None.
    multi_hot: np.ndarray | None = None
    # Localize and regress datasets: N x D float32 targets in this cache's frame (data/targets.py); else None.
    values: np.ndarray | None = None
    # Segment datasets: memory-mapped N x H x W uint8 class indices (IGNORE_INDEX: ignore) aligned with
    # ``images``; else None.
    masks: np.ndarray | None = None


def label_names(split: SplitData) -> list[str]:
    """Each image's class name ("" for every image of a dataset without classes: regress without labels)."""
    return [split.classes[int(i)] for i in split.labels] if split.classes else [""] * len(split.labels)


def multi_hot(cells: Iterable[str], classes: list[str]) -> np.ndarray:
    """N x K float32 targets of manifest ``labels`` cells (names checked by read_manifest)."""
    index = {c: i for i, c in enumerate(classes)}
    cells = list(cells)
    out = np.zeros((len(cells), len(classes)), dtype=np.float32)
    for n, cell in enumerate(cells):
        out[n, [index[name] for name in split_labels(cell)]] = 1.0
    return out


def cache_files(dataset: str | os.PathLike, split: str, size: tuple[int, int],
                masks: bool = False) -> tuple[Path, Path]:
    """The ``.npy`` and ``.json`` of a split's cache at ``size`` (``masks``: of its masks)."""
    stem = Path(dataset) / "cache" / f"{split}_{size[0]}x{size[1]}{'_mask' if masks else ''}"
    return Path(f"{stem}.npy"), Path(f"{stem}.json")


def rows_key(paths: list[str], sha1s: list[str], channels: int, resize: str) -> str:
    """What a cache's pixels depend on: its rows' paths and content, the channels and the resize mode."""
    h = hashlib.sha1(f"{channels}\n{resize}\n".encode())
    for p, s in zip(paths, sha1s):
        h.update(f"{p}\t{s}\n".encode())
    return h.hexdigest()


def mask_key(paths: list[str], sha1s: list[str], resize: str) -> str:
    """What a mask cache's planes depend on: its rows' mask paths and content, and the resize mode."""
    return rows_key(["mask", *paths], ["", *sha1s], 1, resize)


def write_cache(dataset: str | os.PathLike, split: str, size: tuple[int, int], channels: int, resize: str,
                rows: list[int], key: str, fill: Callable[[np.ndarray], None], masks: bool = False) -> None:
    """Create the cache files atomically; ``fill`` writes the pixels into the memory-mapped array
    (``masks``: the N x H x W mask cache, ``channels`` 1)."""
    npy, meta = cache_files(dataset, split, size, masks)
    shape = (len(rows), size[0], size[1]) if masks else (len(rows), size[0], size[1], channels)
    with atomic_path(npy) as tmp:
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        fill(arr)
        arr.flush()
        del arr
    CacheMeta(split, list(size), channels, resize, len(rows), key, list(rows)).write(meta)


def copy_rows(src: np.ndarray, src_rows: np.ndarray, dst: np.ndarray) -> None:
    """``dst[i] = src[src_rows[i]]`` (first ``dst`` channels), a bounded number of bytes at a time."""
    step = max(1, COPY_BYTES // max(1, int(np.prod(src.shape[1:]))))
    for i in range(0, len(src_rows), step):
        if dst.ndim == 4:
            dst[i:i + step] = src[src_rows[i:i + step], :, :, :dst.shape[3]]
        else:  # mask planes
            dst[i:i + step] = src[src_rows[i:i + step]]


def pack_splits(dataset: Path, frame: "pd.DataFrame", items: list[int], size: tuple[int, int],  # noqa: F821
                channels: int, resize: str, decoded: Path, decoded_masks: Path | None = None) -> None:
    """Write every split's cache from the arrays ``prepare`` decoded its inputs into (``decoded``: N x H x W
    x C images, ``decoded_masks``: N x H x W masks, index = source item; manifest row r is item
    ``items[r]``), then delete those arrays."""
    source = np.load(decoded, mmap_mode="r")
    planes = np.load(decoded_masks, mmap_mode="r") if decoded_masks is not None else None
    for split in SPLITS:
        part = frame[frame["split"] == split]
        if part.empty:
            continue
        src_rows = np.array([items[r] for r in part.index], dtype=np.int64)
        rows = part.index.tolist()
        key = rows_key(part["path"].tolist(), part["sha1"].tolist(), channels, resize)
        write_cache(dataset, split, size, channels, resize, rows, key, lambda arr: copy_rows(source, src_rows, arr))
        if planes is not None:
            key = mask_key(part[MASK_COLUMN].tolist(), part[MASK_SHA1_COLUMN].tolist(), resize)
            write_cache(dataset, split, size, 1, resize, rows, key, lambda arr: copy_rows(planes, src_rows, arr),
                        masks=True)
    source = planes = None  # the memory maps closed before their files are deleted
    decoded.unlink()
    if decoded_masks is not None:
        decoded_masks.unlink()


def take(images: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``images[index]`` in memory, read from a memory map in sorted order (sequential reads)."""
    index = np.asarray(index, dtype=np.int64)
    order = np.argsort(index, kind="stable")
    out = np.empty((len(index), *images.shape[1:]), dtype=images.dtype)
    out[order] = images[index[order]]
    return out


def load_split(dataset: str | os.PathLike, split: str, size: tuple[int, int] | None = None,
               workers: int | None = None) -> SplitData:
    """The images and labels of ``split``, from the cache; the cache is (re)built when missing or stale."""
    dataset = Path(dataset)
    frame = read_manifest(dataset)
    classes = read_classes(dataset)
    info = DatasetInfo.read(dataset)
    if size is None:
        if not info.size:
            raise OptionError(f"{dataset} was prepared without --size; rerun 'cvkit prepare' with --size N (or give "
                              f"'cvkit normalize' --size N)")
        size = (int(info.size[0]), int(info.size[1]))
    channels, resize = info.channels, info.resize
    part = frame[frame["split"] == split]
    if part.empty:
        raise ManifestError(f"{dataset}/manifest.csv has no '{split}' images; prepare the dataset with a {split} split")
    index = {c: i for i, c in enumerate(classes)}
    multilabel = info.task == MULTILABEL
    if multilabel and LABELS_COLUMN not in part.columns:
        raise ManifestError(f"{dataset}/manifest.csv lacks the '{LABELS_COLUMN}' column its multilabel task needs; "
                            f"rerun 'cvkit prepare --task multilabel'")
    if multilabel or info.task in (REGRESS, SEGMENT):  # an image with no label has an empty 'label' (targets elsewhere)
        index = {"": 0, **index}
    unknown = sorted(set(part["label"]) - set(index))
    if unknown:
        raise ManifestError(f"{dataset}/manifest.csv uses label(s) {', '.join(unknown[:5])} missing from classes.json; "
                            f"add them there or rerun 'cvkit prepare'")
    paths, rows = part["path"].tolist(), part.index.tolist()
    key = rows_key(paths, part["sha1"].tolist(), channels, resize)
    npy, meta = cache_files(dataset, split, size)
    if not _fresh(npy, meta, key):
        build_cache(dataset, split, size, channels, resize, paths, rows, key, workers)
    images = np.load(npy, mmap_mode="r")
    if images.shape != (len(rows), size[0], size[1], channels):
        raise ManifestError(f"{npy} has shape {images.shape}, expected {(len(rows), *size, channels)}; delete it to rebuild")
    labels = np.array([index[label] for label in part["label"]], dtype=np.int64)
    targets = multi_hot(part[LABELS_COLUMN], classes) if multilabel else None
    masks = load_masks(dataset, part, split, size, resize, len(classes), workers) if info.task == SEGMENT else None
    return SplitData(images, labels, paths, classes, rows, targets,
                     target_values(part, info, size, manifest_path(dataset)), masks)


def _fresh(npy: Path, meta: Path, key: str) -> bool:
    """The cache files exist and were built from rows with this key."""
    if not (npy.is_file() and meta.is_file()):
        return False
    try:
        return CacheMeta.read(meta).key == key
    except ManifestError:
        return False


def load_masks(dataset: Path, part: "pd.DataFrame", split: str, size: tuple[int, int], resize: str,  # noqa: F821
               classes: int, workers: int | None = None) -> np.ndarray:
    """The memory-mapped N x H x W masks of a segment split's manifest rows ``part``, (re)built when
    missing or stale (a mask path or ``mask_sha1`` changed)."""
    paths, rows = part[MASK_COLUMN].tolist(), part.index.tolist()
    key = mask_key(paths, part[MASK_SHA1_COLUMN].tolist(), resize)
    npy, meta = cache_files(dataset, split, size, masks=True)
    if not _fresh(npy, meta, key):
        files = mask_files(dataset, paths, rows)  # checked before any is opened, like the images
        images = image_files(dataset, part["path"].tolist(), rows)
        tasks = [MaskTask(i, f, image=img) for i, (f, img) in enumerate(zip(files, images))]

        def fill(arr: np.ndarray) -> None:
            arr.flush()
            results = decode_masks(tasks, Resize(size[0], size[1], resize), classes, out_path=_npy_path(arr),
                                   workers=workers, description=f"Caching {split} masks {size[0]}x{size[1]}")
            bad = [(paths[r.index], r.reason) for r in results if r.reason]
            if bad:
                raise ManifestError(f"{len(bad)} mask(s) of manifest.csv can no longer be used, first {bad[0][0]}: "
                                    f"{bad[0][1]}; restore them or rerun 'cvkit prepare'")

        write_cache(dataset, split, size, 1, resize, rows, key, fill, masks=True)
    masks = np.load(npy, mmap_mode="r")
    if masks.shape != (len(rows), size[0], size[1]):
        raise ManifestError(f"{npy} has shape {masks.shape}, expected {(len(rows), *size)}; delete it to rebuild")
    return masks


def mask_planes(masks: np.ndarray, name: str, compute: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """N x H x W uint8 planes derived from a split's mask cache ``masks`` (U-Net's border term), computed
    once and stored beside it as ``{split}_{H}x{W}_mask_{name}.npy``, keyed by the masks' own key, so a
    changed mask recomputes them. Masks that are not a whole split's cache (a fold's or a shard's copy)
    are computed in memory."""
    npy_mask = Path(str(getattr(masks, "filename", "") or ""))
    meta_mask = npy_mask.with_suffix(".json")
    if not (npy_mask.name.endswith("_mask.npy") and meta_mask.is_file()):
        return compute(np.asarray(masks))
    held = CacheMeta.read(meta_mask)
    if masks.shape != (held.count, *held.size):
        return compute(np.asarray(masks))
    npy = npy_mask.with_name(f"{npy_mask.stem}_{name}.npy")
    meta = npy.with_suffix(".json")
    key = hashlib.sha1(f"{held.key}\n{name}".encode()).hexdigest()
    if not _fresh(npy, meta, key):
        planes = compute(np.asarray(masks))
        with atomic_path(npy) as tmp, open(tmp, "wb") as f:
            np.save(f, planes)
        CacheMeta(held.split, held.size, 1, held.resize, held.count, key, held.rows).write(meta)
    planes = np.load(npy, mmap_mode="r")
    if planes.shape != masks.shape:
        raise ManifestError(f"{npy} has shape {planes.shape}, expected {masks.shape}; delete it to rebuild")
    return planes


def build_cache(dataset: Path, split: str, size: tuple[int, int], channels: int, resize: str,
                paths: list[str], rows: list[int], key: str, workers: int | None = None) -> None:
    """Decode a split's images from their files into a fresh cache."""
    tasks = [Task(i, p) for i, p in enumerate(image_files(dataset, paths, rows))]

    def fill(arr: np.ndarray) -> None:
        arr.flush()
        results = decode_all(tasks, channels, Resize(size[0], size[1], resize), out_path=_npy_path(arr),
                             workers=workers, description=f"Caching {split} {size[0]}x{size[1]}")
        bad = [(paths[r.index], r.reason) for r in results if r.reason]
        if bad:
            raise ManifestError(f"{len(bad)} image(s) of manifest.csv can no longer be read, first {bad[0][0]}: "
                                f"{bad[0][1]}; restore them or rerun 'cvkit prepare'")

    write_cache(dataset, split, size, channels, resize, rows, key, fill)


def _npy_path(arr: np.ndarray) -> str:
    return str(arr.filename)
