"""How train+val is cut for cross-validation: the manifest's own folds, stratified k-fold, one stratified
holdout split, or leave-one-out. The test split is never part of it.

Folds cvkit assigns itself are written to the crossval folder's ``folds.csv``, never into the dataset.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cvkit.data.selection import Selection
from cvkit.data.splits import assign_folds, assign_folds_multilabel, carve, carve_multilabel
from cvkit.errors import ManifestError, OptionError
from cvkit.files.crossval import DEFAULT_LOO_LIMIT, FOLDS_COLUMNS
from cvkit.files.dataset import DatasetInfo, read_manifest
from cvkit.progress import info
from cvkit.tasks import TASKS

DEFAULT_FOLDS = 5


@dataclass
class FoldPlan:
    """The folds of one cross-validation; ``frame`` is ``folds.csv`` (the fold that validates each image)."""

    kind: str  # kfold, manifest, holdout or loo
    k: int
    holdout: float | None
    frame: pd.DataFrame

    def selections(self, i: int) -> tuple[Selection, Selection]:
        """(train, val) of fold ``i``. Augmented copies (``augment --materialize``) carry their source's
        fold: they train only where their source does and are never validated on."""
        copies = (self.frame["augmented_from"] != "").to_numpy()
        if self.kind == "manifest" and not copies.any():  # compact selections, as 'train' would use
            return Selection.of_fold(i, False), Selection.of_fold(i, True)
        folds, rows = self.frame["fold"].to_numpy(), self.frame["row"].to_numpy()
        return Selection.of_rows(rows[folds != i].tolist()), Selection.of_rows(rows[(folds == i) & ~copies].tolist())

    def describe(self) -> str:
        if self.kind == "holdout":
            return f"one stratified holdout of {self.holdout:g}"
        return {"kfold": f"{self.k} stratified folds", "manifest": f"the manifest's {self.k} folds",
                "loo": f"leave-one-out ({self.k} folds)"}[self.kind]


def train_val(dataset: str | os.PathLike) -> pd.DataFrame:
    """The train and val rows of the manifest (``row`` is the manifest row), with their manifest folds and sha1."""
    frame = read_manifest(dataset)
    part = frame[frame["split"].isin(("train", "val"))]
    if part.empty:
        raise ManifestError(f"{dataset} has no train or val images to cross-validate on; prepare it with a train split")
    out = pd.DataFrame({"row": np.flatnonzero(frame["split"].isin(("train", "val")).to_numpy()),
                        "path": part["path"].to_numpy(), "label": part["label"].to_numpy(),
                        "split": part["split"].to_numpy(), "fold": part["fold"].to_numpy().astype(int),
                        "sha1": part["sha1"].to_numpy(),
                        "augmented_from": (part["augmented_from"].astype(str).to_numpy() if "augmented_from" in part
                                           else "")})
    for column in part.columns.difference(out.columns):  # the targets of other tasks (labels, ...) for the task
        out[column] = part[column].to_numpy()
    return out


def rows_key(frame: pd.DataFrame) -> str:
    """A hash of the train+val rows (and their manifest folds and content): a rerun on a changed dataset differs."""
    h = hashlib.sha1()
    for values in zip(*(frame[c].tolist() for c in (*FOLDS_COLUMNS, "sha1"))):
        h.update(("\t".join(map(str, values)) + "\n").encode())
    return h.hexdigest()


def plan_folds(dataset: str | os.PathLike, frame: pd.DataFrame, folds: int | None = None,
               holdout: float | None = None, loo: bool = False, loo_limit: int = DEFAULT_LOO_LIMIT,
               seed: int = 0) -> FoldPlan:
    """The folds of ``frame`` (from :func:`train_val`): ``--folds K`` (default: the manifest's folds when it
    has them, else 5), ``--holdout F`` or ``--loo``. Folds are drawn over the original images; an
    augmented copy gets its source's fold, so a copy and its source never sit on both sides."""
    copies = frame["augmented_from"] != ""
    plan = _plan_originals(dataset, frame[~copies].reset_index(drop=True), folds, holdout, loo, loo_limit, seed)
    if not copies.any():
        return plan
    source_fold = dict(zip(plan.frame["path"], plan.frame["fold"]))
    extra = frame[copies].copy()
    extra["fold"] = [source_fold.get(p, -1) for p in extra["augmented_from"]]
    plan.frame = pd.concat([plan.frame, extra]).sort_values("row", kind="stable").reset_index(drop=True)
    return plan


def _plan_originals(dataset: str | os.PathLike, frame: pd.DataFrame, folds: int | None, holdout: float | None,
                    loo: bool, loo_limit: int, seed: int) -> FoldPlan:
    if sum((folds is not None, holdout is not None, loo)) > 1:
        raise OptionError("--folds, --holdout and --loo each choose how train+val is cut; give one of them")
    n = len(frame)
    labels, indices = frame["label"].tolist(), list(range(n))
    task = TASKS.get(DatasetInfo.read(dataset).task)
    sets = task.label_sets(frame) if task is not None else None  # several labels per image: iterative stratification
    rng = np.random.default_rng(seed)
    out = frame.copy()
    if loo:
        if n > loo_limit:
            raise OptionError(f"--loo trains one model per train+val image, and {Path(dataset)} has {n}: more than "
                              f"--loo-limit {loo_limit}; raise --loo-limit to {n} to run it, or use --folds K")
        if n < 2:
            raise OptionError(f"--loo needs at least 2 train+val images; {dataset} has {n}")
        out["fold"] = np.arange(n)
        return FoldPlan("loo", n, None, out)
    if holdout is not None:
        if not 0 < holdout < 1:
            raise OptionError(f"--holdout {holdout} must be a fraction between 0 and 1, for example --holdout 0.2")
        chosen = (carve(indices, labels, {"val": holdout}, rng) if sets is None else
                  carve_multilabel(indices, sets, {"val": holdout}, rng))
        out["fold"] = [0 if chosen[i] == "val" else -1 for i in indices]
        if not (out["fold"] == 0).any():
            raise OptionError(f"--holdout {holdout} leaves no validation image out of {n}; use a larger fraction")
        return FoldPlan("holdout", 1, holdout, out)
    manifest_folds = sorted(set(frame["fold"]))
    has_folds = len(manifest_folds) >= 2 and manifest_folds == list(range(len(manifest_folds)))
    k = folds if folds is not None else (len(manifest_folds) if has_folds else DEFAULT_FOLDS)
    if k < 2:
        raise OptionError(f"--folds {k} must be at least 2 (for one split, use --holdout F)")
    if has_folds and k == len(manifest_folds):
        return FoldPlan("manifest", k, None, out)
    counts = frame["label"].value_counts() if sets is None else pd.Series([x for s in sets for x in s]).value_counts()
    if len(counts) and counts.min() < k:
        smallest, m = str(counts.idxmin()), int(counts.min())
        fix = f"use --folds {m} or fewer" if m >= 2 else "add images of it, or use --holdout F"
        raise OptionError(f"--folds {k}: class '{smallest}' has only {m} image(s) in train+val, so some folds would "
                          f"have none of it; {fix}")
    if has_folds:
        info(f"{dataset} has {len(manifest_folds)} folds from 'cvkit prepare'; --folds {k} assigns {k} new ones "
             f"(written to folds.csv)")
    assigned = assign_folds(indices, labels, k, rng) if sets is None else assign_folds_multilabel(indices, sets, k, rng)
    out["fold"] = [assigned[i] for i in indices]
    return FoldPlan("kfold", k, None, out)


def from_file(saved: pd.DataFrame, frame: pd.DataFrame, kind: str, k: int, holdout: float | None,
              where: Path) -> FoldPlan:
    """The folds saved in ``folds.csv`` by an earlier run of the same plan (they stay the source of truth)."""
    if saved["row"].tolist() != frame["row"].tolist() or saved["path"].tolist() != frame["path"].tolist():
        raise ManifestError(f"{where} does not list the dataset's train+val images; rerun with --force to start over")
    return FoldPlan(kind, k, holdout, saved)
