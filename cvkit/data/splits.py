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


# ----------------------------------------------------------------------------- multi-label


def _iterative(indices: Sequence[int], labelsets: Sequence[Sequence[str]], ratios: list[float],
               rng: np.random.Generator) -> dict[int, int]:
    """Subset ``j`` of ``indices`` for each image: about ``ratios[j]`` of the images and of every label's
    images go to subset ``j``. Greedy iterative stratification (after Sechidis, Tsoumakas and Vlahavas,
    2011): images are dealt rarest label first (an image ranks by its rarest label; images without a
    label come last), each to the subset with the largest unmet share summed over the image's labels
    and the subset's size, which counts the images still owed to a subset against what it was owed
    in all. Sechidis' version weighs one label per step and lets the subsets' sizes drift (several
    points of prevalence on a few hundred images); summing over every label keeps both within about
    one image. The order within a rank is a permutation drawn from ``rng``, so a seed fixes the result.
    """
    order = [indices[j] for j in rng.permutation(len(indices))]
    names = sorted({name for i in order for name in labelsets[i]})
    column = {name: c for c, name in enumerate(names)}
    members = [[column[name] for name in labelsets[i]] for i in order]
    total = np.zeros(len(names), dtype=np.float64)
    for cols in members:
        total[cols] += 1
    ratio = np.asarray(ratios, dtype=np.float64)
    size_owed = ratio * len(order)  # images each subset is still owed
    size_norm = np.maximum(size_owed, 1e-9)
    label_owed = total[:, None] * ratio[None, :]  # label x subset: that label's images still owed
    label_norm = np.maximum(label_owed, 1e-9)
    rarest = [min(total[cols]) if cols else np.inf for cols in members]
    out: dict[int, int] = {}
    for pos in sorted(range(len(order)), key=lambda p: rarest[p]):  # stable: the permutation breaks ties
        cols = members[pos]
        unmet = size_owed / size_norm + (label_owed[cols] / label_norm[cols]).sum(axis=0)
        best = int(np.argmax(unmet))  # the first subset on a tie
        out[order[pos]] = best
        size_owed[best] -= 1
        label_owed[cols, best] -= 1
    return out


def carve_multilabel(indices: Sequence[int], labelsets: Sequence[Sequence[str]], fractions: dict[str, float],
                     rng: np.random.Generator) -> dict[int, str]:
    """:func:`carve` for images with several labels each: every split gets about its fraction of the
    images and of each label's images (iterative stratification); the rest is ``train``."""
    wanted = [(s, f) for s, f in fractions.items() if f > 0]
    names = [s for s, _ in wanted] + ["train"]
    ratios = [f for _, f in wanted] + [1.0 - sum(f for _, f in wanted)]
    return {i: names[j] for i, j in _iterative(indices, labelsets, ratios, rng).items()}


def assign_folds_multilabel(indices: Sequence[int], labelsets: Sequence[Sequence[str]], k: int,
                            rng: np.random.Generator) -> dict[int, int]:
    """:func:`assign_folds` for images with several labels each: k folds of about equal size, each with
    about 1/k of every label's images (iterative stratification)."""
    if k < 2:
        raise OptionError(f"--folds {k} must be at least 2 (or 0 for no folds)")
    counts: dict[str, int] = defaultdict(int)
    for i in indices:
        for name in labelsets[i]:
            counts[name] += 1
    if counts:
        smallest = min(sorted(counts), key=counts.get)
        if (n := counts[smallest]) < k:
            fix = f"use --folds {n} or fewer" if n >= 2 else "add images of it, or use --folds 0"
            raise OptionError(f"--folds {k}: label '{smallest}' has only {n} image(s) in train+val, so some folds "
                              f"would have none of it; {fix}")
    return _iterative(indices, labelsets, [1.0 / k] * k, rng)
