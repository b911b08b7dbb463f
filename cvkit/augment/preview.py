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
from cvkit.transforms.batch import augment, mix
from cvkit.transforms.policy import AugmentPolicy

PREVIEW_FILE = "augment_preview.png"
VERSIONS = 5  # augmented versions beside each original


def apply_policy(images: np.ndarray, policy: AugmentPolicy, gen: torch.Generator,
                 device: torch.device) -> np.ndarray:
    """Augment a uint8 N x H x W x C batch on ``device`` (no mixing: that needs labels); uint8 back."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float().div_(255.0)
    x = augment(x, policy, gen)
    return x.mul(255.0).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


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
            data: SplitData | None = None) -> Path:
    """Write ``DATASET/augment_preview.png``: ``n`` train images (spread over the classes), each followed
    by augmented versions; with mixup/cutmix each version is titled with its soft label."""
    dataset = Path(dataset)
    data = data if data is not None else load_selection(dataset, Selection.of_split("train"))
    picked = pick_per_class(data.labels, n, seed)
    originals = take(data.images, picked)
    labels = data.labels[picked]
    gen = torch.Generator().manual_seed(seed)
    batch = np.repeat(originals, VERSIONS, axis=0)
    versions = apply_policy(batch, policy, gen, device)
    titles = [[data.classes[int(y)]] for y in np.repeat(labels, VERSIONS)]
    if policy.mixes:
        x = torch.from_numpy(versions).permute(0, 3, 1, 2).float().div_(255.0)
        targets = soft_targets(torch.from_numpy(np.repeat(labels, VERSIONS)), len(data.classes), 0.0)
        x, targets = mix(x, targets, policy, gen)
        versions = x.mul(255.0).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        titles = [_soft_title(t, data.classes) for t in targets.numpy()]
    path = dataset / PREVIEW_FILE
    plot_augment_preview(originals, [data.classes[int(y)] for y in labels],
                         versions.reshape(len(picked), VERSIONS, *versions.shape[1:]),
                         [titles[i * VERSIONS:(i + 1) * VERSIONS] for i in range(len(picked))],
                         policy.describe(), path)
    return path


def _soft_title(target: np.ndarray, classes: list[str]) -> list[str]:
    top = np.argsort(-target)[:2]
    return [f"{classes[int(c)]} {target[c]:.2f}" for c in top if target[c] > 0.005]
