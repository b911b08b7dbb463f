"""Stratified train/val/test splits and k-fold ids, deterministic for a seed."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from cvkit.errors import OptionError


def check_fractions(val: float, test: float) -> None:
    for name, f in (("--val", val), ("--test", test)):
        if not 0.0 <= f < 1.0:
            raise OptionError(f"{name} {f} must be a fraction from 0 to below 1, for example {name} 0.1")
    if val + test >= 1.0:
        raise OptionError(f"--val {val} and --test {test} leave nothing to train on; make their sum below 1")


def _by_class(indices: Sequence[int], labels: Sequence[str]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for i in indices:
        groups[labels[i]].append(i)
    return dict(sorted(groups.items()))


def _count(n: int, fraction: float) -> int:
    return int(math.floor(n * fraction + 0.5))


def carve(indices: Sequence[int], labels: Sequence[str], fractions: dict[str, float],
          rng: np.random.Generator) -> dict[int, str]:
    """Move a stratified share of ``indices`` into each split of ``fractions``; the rest is ``train``.

    Per class, each split gets round(n * fraction) images, and at least one when the class has
    enough images to keep one in train too, so every class appears in every requested split.
    """
    wanted = [(s, f) for s, f in fractions.items() if f > 0]
    out: dict[int, str] = {}
    for members in _by_class(indices, labels).values():
        n = len(members)
        counts = {s: _count(n, f) for s, f in wanted}
        if n > len(wanted):
            counts = {s: max(1, c) for s, c in counts.items()}
        while sum(counts.values()) >= n and any(counts.values()):  # keep at least one to train on
            largest = max(counts, key=counts.get)
            counts[largest] -= 1
        order = [members[j] for j in rng.permutation(n)]
        start = 0
        for split, c in counts.items():
            for i in order[start:start + c]:
                out[i] = split
            start += c
        for i in order[start:]:
            out[i] = "train"
    return out


def assign_folds(indices: Sequence[int], labels: Sequence[str], k: int, rng: np.random.Generator) -> dict[int, int]:
    """Stratified fold ids 0..k-1: each class is dealt round-robin, continuing where the last class stopped,
    so folds differ in size by at most one image overall and per class."""
    if k < 2:
        raise OptionError(f"--folds {k} must be at least 2 (or 0 for no folds)")
    groups = _by_class(indices, labels)
    smallest = min(groups, key=lambda name: len(groups[name]), default=None)
    if smallest is not None and (n := len(groups[smallest])) < k:
        fix = f"use --folds {n} or fewer" if n >= 2 else "add images of it, or use --folds 0"
        raise OptionError(f"--folds {k}: class '{smallest}' has only {n} image(s) in train+val, so some folds "
                          f"would have none of it; {fix}")
    out: dict[int, int] = {}
    offset = 0
    for members in groups.values():
        for j, pos in enumerate(rng.permutation(len(members))):
            out[members[pos]] = (offset + j) % k
        offset = (offset + len(members)) % k
    return out
