"""``augment --preview N``: training images beside augmented versions, so a person can check labels survive."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from cvkit.data.cache import SplitData, take
from cvkit.data.selection import Selection, load_selection
from cvkit.models.losses import soft_targets
from cvkit.plots import plot_augment_preview
from cvkit.transforms.batch import augment, from_unit, mix, to_unit
from cvkit.transforms.policy import AugmentPolicy

PREVIEW_FILE = "augment_preview.png"
VERSIONS = 5  # augmented versions beside each original


def pick_per_class(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` indices taken round-robin over the classes (each class in a seeded random order)."""
    rng = np.random.default_rng(seed)
    queues = [list(rng.permutation(np.flatnonzero(labels == c))) for c in np.unique(labels)]
    picked: list[int] = []
    while len(picked) < min(n, len(labels)):
        for q in queues:
            if q and len(picked) < n:
                picked.append(int(q.pop()))
    return np.array(picked, dtype=np.int64)


def preview(dataset: str | os.PathLike, policy: AugmentPolicy, n: int, seed: int, device: torch.device,
            data: SplitData | None = None, out: str | os.PathLike | None = None) -> Path:
    """Write ``DATASET/augment_preview.png`` (or ``out``, a PNG path: ``cvkit report`` draws one into its own
    folder): ``n`` train images (spread over the classes), each followed by augmented versions; with
    mixup/cutmix each version is titled with its soft label."""
    dataset = Path(dataset)
    data = data if data is not None else load_selection(dataset, Selection.of_split("train"))
    picked = pick_per_class(data.labels, n, seed)
    originals = take(data.images, picked)
    labels = np.repeat(data.labels[picked], VERSIONS)
    gen = torch.Generator().manual_seed(seed)
    x = augment(to_unit(torch.from_numpy(np.repeat(originals, VERSIONS, axis=0)), device), policy, gen)
    classes = data.classes or [""]  # a regress dataset may have no classes
    titles = [[classes[int(y)]] for y in labels]
    if policy.mixes:
        targets = soft_targets(torch.from_numpy(labels).to(device), len(classes), 0.0)
        x, targets = mix(x, targets, policy, gen)
        titles = [_soft_title(t, classes) for t in targets.cpu().numpy()]
    versions = from_unit(x)
    path = Path(out) if out is not None else dataset / PREVIEW_FILE
    plot_augment_preview(originals, [classes[int(y)] for y in data.labels[picked]],
                         versions.reshape(len(picked), VERSIONS, *versions.shape[1:]),
                         [titles[i * VERSIONS:(i + 1) * VERSIONS] for i in range(len(picked))],
                         policy.describe(), path)
    return path


def _soft_title(target: np.ndarray, classes: list[str]) -> list[str]:
    top = np.argsort(-target)[:2]
    return [f"{classes[int(c)]} {target[c]:.2f}" for c in top if target[c] > 0.005]
