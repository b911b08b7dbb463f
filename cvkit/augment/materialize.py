"""``augment --materialize K``: K augmented copies of every train image, as files and manifest rows.

Offline augmentation, for tools outside cvkit. The copies go to ``DATASET/augmented/`` (one folder
per class, ``<class index>_<name>``), their rows to the manifest's train split with the column
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

from cvkit.augment.preview import apply_policy
from cvkit.data.selection import Selection, load_selection
from cvkit.errors import OptionError
from cvkit.files.atomic import stage_dir, swap_dir
from cvkit.files.dataset import read_manifest, write_manifest
from cvkit.files.images import encode_png, sha1_bytes
from cvkit.progress import info, progress_bar
from cvkit.transforms.policy import AugmentPolicy

AUGMENTED_DIR = "augmented"
SOURCE_COLUMN = "augmented_from"
MAX_COPIES = 100
BATCH = 256  # images augmented per device call


def _folder(index: int, name: str) -> str:
    return f"{index:03d}_{re.sub(r'[^A-Za-z0-9._-]+', '_', name).strip('._') or 'class'}"


def materialize(dataset: str | os.PathLike, policy: AugmentPolicy, copies: int, seed: int,
                device: torch.device) -> int:
    """Write ``copies`` augmented versions of each original train image; returns the rows added."""
    import pandas as pd

    dataset = Path(dataset)
    if not 1 <= copies <= MAX_COPIES:
        raise OptionError(f"--materialize {copies} must be a number of copies from 1 to {MAX_COPIES}")
    if not policy.active or set(policy.active) <= {"mixup", "cutmix"}:
        raise OptionError("--materialize needs a policy with a geometric or photometric transform; "
                          "give one (e.g. --preset standard)")
    if policy.mixes:
        info("[yellow]--materialize:[/] mixup and cutmix are left out of the copies (a file holds one label); "
             "train applies them on the fly")
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
    data = load_selection(dataset, Selection.of_rows(current.tolist()))
    stage = stage_dir(dataset / AUGMENTED_DIR)
    try:
        added = _write_copies(stage, data, originals.iloc[train_rows], policy, copies, seed, device)
        swap_dir(stage, dataset / AUGMENTED_DIR)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    new = pd.DataFrame(added, columns=["path", "label", "split", "fold", "sha1", SOURCE_COLUMN])
    write_manifest(dataset, pd.concat([originals, new], ignore_index=True).fillna(""))
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
