"""``augment --materialize K``: K augmented copies of every train image, as files and manifest rows.

Offline augmentation, for tools outside cvkit. The copies go to ``DATASET/augmented/`` (one folder
per class, ``<class index>_<name>``; a segment dataset's to ``images/`` and ``masks/``, each mask moved
with its image), their rows to the manifest's train split with the column
``augmented_from`` naming the source image (empty for the original rows) and the source's fold, so
that k-fold never puts a copy and its source on both sides. Val and test are never augmented.
Running it again replaces the earlier copies.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from cvkit.data.selection import Selection, load_selection
from cvkit.errors import OptionError, UnsafeOutput
from cvkit.files.atomic import stage_dir, swap_dir
from cvkit.files.dataset import (
    DEFAULT_TASK,
    IGNORE_INDEX,
    LABELS_COLUMN,
    MASK_COLUMN,
    MASK_SHA1_COLUMN,
    SEGMENT,
    DatasetInfo,
    join_labels,
    read_classes,
    read_manifest,
    write_manifest,
)
from cvkit.files.images import encode_png, sha1_bytes
from cvkit.progress import info, progress_bar
from cvkit.transforms.batch import augment, augment_planes, from_unit, to_unit
from cvkit.transforms.policy import AugmentPolicy

AUGMENTED_DIR = "augmented"
SOURCE_COLUMN = "augmented_from"
MAX_COPIES = 100
BATCH = 256  # images augmented per device call


def apply_policy(images: np.ndarray, policy: AugmentPolicy, gen: torch.Generator,
                 device: torch.device) -> np.ndarray:
    """Augment a uint8 N x H x W x C batch on ``device`` (no mixing: a file holds one label); uint8 back."""
    return from_unit(augment(to_unit(torch.from_numpy(np.ascontiguousarray(images)), device), policy, gen))


def _check_own(dataset: Path, frame: "pd.DataFrame") -> None:  # noqa: F821
    """Refuse to replace ``DATASET/augmented/`` when it holds a file an earlier --materialize did not write
    (a file of the user's, or one an original manifest row points at): cvkit deletes only its own files."""
    folder = dataset / AUGMENTED_DIR
    if not folder.exists() and not folder.is_symlink():
        return
    if folder.is_symlink() or not folder.is_dir():
        raise UnsafeOutput(f"{folder} is not a folder --materialize wrote; move it away and run again")
    copied = frame[frame[SOURCE_COLUMN] != ""]
    copies = set(copied["path"]) | (set(copied[MASK_COLUMN]) if MASK_COLUMN in frame.columns else set())
    for path in sorted(folder.rglob("*")):
        if path.is_dir() and not path.is_symlink():
            continue
        if path.relative_to(dataset).as_posix() not in copies:
            raise UnsafeOutput(f"{path} was not written by 'cvkit augment --materialize', which replaces {folder} "
                               f"on each run; move it out of {folder} and run again")


def _folder(index: int, name: str) -> str:
    return f"{index:03d}_{re.sub(r'[^A-Za-z0-9._-]+', '_', name).strip('._') or 'class'}"


def check_for_task(dataset: str | os.PathLike, policy: AugmentPolicy) -> None:
    """Refuse a policy the dataset's task cannot train with (a rotation for boxes, mixup for targets
    that cannot blend), before augment.json is written: the same check ``train`` makes."""
    from cvkit.tasks import TaskSpec, create_task

    info = DatasetInfo.read(dataset)
    options = {"targets": info.targets, "keypoints": info.keypoints, "flip_pairs": info.flip_pairs}
    create_task(info.task, TaskSpec(read_classes(dataset), options=options)).check_policy(policy)


def check_materialize(dataset: str | os.PathLike, policy: AugmentPolicy, copies: int) -> tuple:
    """Refuse what :func:`materialize` cannot do, before anything is written (``cvkit augment`` calls it
    before it replaces augment.json). Returns the manifest, its original rows, their train rows, and
    those rows' numbers in the manifest."""
    dataset = Path(dataset)
    if not 1 <= copies <= MAX_COPIES:
        raise OptionError(f"--materialize {copies} must be a number of copies from 1 to {MAX_COPIES}")
    if not policy.active or set(policy.active) <= {"mixup", "cutmix"}:
        raise OptionError("--materialize needs a policy with a geometric or photometric transform; "
                          "give one (e.g. --preset standard)")
    task = DatasetInfo.read(dataset).task
    if task not in (DEFAULT_TASK, SEGMENT):  # a copy's file would need its labels, box or targets moved and written
        raise OptionError(f"--materialize writes copies that carry one class label (or a mask), and {dataset} holds "
                          f"{task} targets; train augments them on the fly (drop --materialize)")
    frame = read_manifest(dataset)
    if SOURCE_COLUMN not in frame.columns:
        frame[SOURCE_COLUMN] = ""
    frame[SOURCE_COLUMN] = frame[SOURCE_COLUMN].astype(str)
    originals = frame[frame[SOURCE_COLUMN] == ""].reset_index(drop=True)
    train_rows = np.flatnonzero(originals["split"].to_numpy() == "train")
    if len(train_rows) == 0:
        raise OptionError(f"{dataset} has no train images to augment; prepare it with a train split")
    # Row numbers of the originals in the manifest as it is now, for the cache's selection.
    current = np.flatnonzero((frame[SOURCE_COLUMN] == "").to_numpy())[train_rows]
    _check_own(dataset, frame)
    return frame, originals, train_rows, current


def materialize(dataset: str | os.PathLike, policy: AugmentPolicy, copies: int, seed: int,
                device: torch.device) -> int:
    """Write ``copies`` augmented versions of each original train image; returns the rows added."""
    import pandas as pd

    dataset = Path(dataset)
    frame, originals, train_rows, current = check_materialize(dataset, policy, copies)
    if policy.mixes:
        info("[yellow]--materialize:[/] mixup and cutmix are left out of the copies (a file holds one label); "
             "train applies them on the fly")
    data = load_selection(dataset, Selection.of_rows(current.tolist()))
    stage = stage_dir(dataset / AUGMENTED_DIR)
    try:
        if data.masks is not None:  # segment: each copy's mask moved with it, written beside it
            added = _write_masked_copies(stage, data, originals.iloc[train_rows], policy, copies, seed, device)
            columns = ["path", "label", "split", "fold", "sha1", SOURCE_COLUMN, LABELS_COLUMN, MASK_COLUMN,
                       MASK_SHA1_COLUMN]
        else:
            added = _write_copies(stage, data, originals.iloc[train_rows], policy, copies, seed, device)
            columns = ["path", "label", "split", "fold", "sha1", SOURCE_COLUMN]
        new = pd.DataFrame(added, columns=columns)
        # The manifest is written once the copies are in place; if that fails, the old copies come back.
        swap_dir(stage, dataset / AUGMENTED_DIR,
                 commit=lambda: write_manifest(dataset, pd.concat([originals, new], ignore_index=True).fillna("")))
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return len(new)


def _write_copies(stage: Path, data, sources, policy: AugmentPolicy, copies: int, seed: int,
                  device: torch.device) -> list[tuple]:
    gen = torch.Generator().manual_seed(seed)
    folders = {c: _folder(i, c) for i, c in enumerate(data.classes)}
    for folder in folders.values():
        (stage / folder).mkdir()
    paths, folds = sources["path"].tolist(), sources["fold"].tolist()
    rows: list[tuple] = []
    n = len(paths)
    with progress_bar("Materializing augmented copies", n * copies) as bar:
        for k in range(copies):
            for start in range(0, n, BATCH):
                images = apply_policy(np.asarray(data.images[start:start + BATCH]), policy, gen, device)
                for i, image in enumerate(images, start):
                    label = data.classes[int(data.labels[i])]
                    png = encode_png(image)
                    name = f"{folders[label]}/{i:07d}_{k}.png"
                    (stage / name).write_bytes(png)
                    rows.append((f"{AUGMENTED_DIR}/{name}", label, "train", int(folds[i]), sha1_bytes(png), paths[i]))
                bar.advance(len(images))
    return rows


def _write_masked_copies(stage: Path, data, sources, policy: AugmentPolicy, copies: int, seed: int,
                         device: torch.device) -> list[tuple]:
    """Segment copies: image and mask moved together (``augment_planes``: nearest neighbour for the mask,
    255 where the copy shows what lay outside the image), as ``images/`` and ``masks/`` PNGs."""
    gen = torch.Generator().manual_seed(seed)
    for folder in ("images", "masks"):
        (stage / folder).mkdir()
    paths, folds = sources["path"].tolist(), sources["fold"].tolist()
    rows: list[tuple] = []
    n = len(paths)
    with progress_bar("Materializing augmented copies", n * copies) as bar:
        for k in range(copies):
            for start in range(0, n, BATCH):
                x = to_unit(torch.from_numpy(np.array(data.images[start:start + BATCH])), device)
                planes = torch.from_numpy(np.array(data.masks[start:start + BATCH]))[:, None].to(device)
                moved, planes = augment_planes(x, planes, [IGNORE_INDEX], policy, gen)
                masks = planes[:, 0].cpu().numpy()
                for i, (image, mask) in enumerate(zip(from_unit(moved), masks), start):
                    png, mask_png = encode_png(image), encode_png(mask)
                    name = f"{i:07d}_{k}.png"
                    (stage / "images" / name).write_bytes(png)
                    (stage / "masks" / name).write_bytes(mask_png)
                    present = [data.classes[c] for c in np.unique(mask) if c != IGNORE_INDEX]
                    rows.append((f"{AUGMENTED_DIR}/images/{name}", "", "train", int(folds[i]), sha1_bytes(png),
                                 paths[i], join_labels(present), f"{AUGMENTED_DIR}/masks/{name}", sha1_bytes(mask_png)))
                bar.advance(len(masks))
    return rows
