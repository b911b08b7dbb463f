"""The files of a ``cvkit crossval`` output folder, each read and written here only.

``crossval.json`` (the plan: how the folds are made, the grid and its configurations, the base
options), ``folds.csv`` (which fold validates each train+val image), ``results.csv`` (one row per
configuration and fold), ``summary.csv`` (one row per configuration, best first) and ``best.json``
(the chosen configuration and the refit). The fold runs under ``folds/`` and the refit ``final/`` are
ordinary run directories (:mod:`cvkit.files.run`).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cvkit.errors import ManifestError
from cvkit.files.atomic import read_csv_checked, write_csv
from cvkit.files.jsonio import from_json, read_json, write_json

# Everything crossval writes into its --out (what --force may replace).
CROSSVAL_FILES = ("crossval.json", "folds.csv", "folds", "results.csv", "summary.csv", "crossval.png", "best.json",
                  "final")
# Train options crossval does not take (nor store in crossval.json's "base"): a time budget would make the
# folds' epochs depend on the machine; a teacher trained on the train split has seen the images the folds
# validate on.
EXCLUDED_OPTIONS = ("budget", "teacher", "kd_weight", "kd_temperature")
FOLD_KINDS = ("kfold", "manifest", "holdout", "loo")
# Leave-one-out trains one model per image: above this many train+val images it must be asked for.
DEFAULT_LOO_LIMIT = 100
FOLDS_COLUMNS = ("row", "path", "label", "split", "fold", "augmented_from")
AGAIN = "rerun 'cvkit crossval' with --force to start over"


@dataclass
class CrossvalPlan:
    """``crossval.json``: what a cross-validation trains, so reruns and ``summarize`` can check they match.

    ``configs`` maps each configuration's folder name to its grid values (``[{"name", "options"}]``);
    ``base`` holds every train option shared by the configurations; ``rows_key`` is a hash of the
    train+val rows of the manifest the folds were made from.
    """

    data: str
    folds: str  # one of FOLD_KINDS
    k: int  # number of folds (1 for a holdout split)
    seed: int
    grid: dict[str, list[Any]]
    configs: list[dict[str, Any]]
    base: dict[str, Any]
    rows_key: str
    holdout: float | None = None
    refit: bool = True  # the latest run's --refit: what 'summarize' does by default (not compared)
    cvkit_version: str = ""

    @staticmethod
    def path(out: str | os.PathLike) -> Path:
        return Path(out) / "crossval.json"

    @classmethod
    def exists(cls, out: str | os.PathLike) -> bool:
        return cls.path(out).is_file()

    @classmethod
    def read(cls, out: str | os.PathLike) -> "CrossvalPlan":
        out = Path(out)
        path = cls.path(out)
        if not path.is_file() and not path.parent.is_dir():
            raise ManifestError(f"{out} does not exist: give the --out folder of a 'cvkit crossval' run")
        if not path.is_file():
            raise ManifestError(f"{path} is missing: {out} is not the output of 'cvkit crossval'")
        plan = from_json(cls, read_json(path, AGAIN), path, AGAIN)
        if plan.folds not in FOLD_KINDS or plan.k < 1 or not plan.configs:
            raise ManifestError(f"{path}: 'folds' must be one of {', '.join(FOLD_KINDS)}, 'k' 1 or more and 'configs' "
                                f"not empty; {AGAIN}")
        for config in plan.configs:
            if not (isinstance(config, dict) and isinstance(config.get("name"), str)
                    and isinstance(config.get("options"), dict)):
                raise ManifestError(f"{path}: each of 'configs' must be {{\"name\": ..., \"options\": {{...}}}}; "
                                    f"{AGAIN}")
        return plan

    def write(self, out: str | os.PathLike) -> None:
        write_json(self.path(out), asdict(self))

    def differences(self, other: "CrossvalPlan") -> list[str]:
        """What differs, in the words of the command line (``refit`` and ``cvkit_version`` do not change the
        folds' results)."""
        mine, theirs = asdict(self), asdict(other)
        names = {"data": "DATA", "folds": "kind of folds", "k": "number of folds", "seed": "--seed",
                 "grid": "--grid", "rows_key": "train+val images in DATA", "holdout": "--holdout"}
        out = [names[k] for k in names if mine[k] != theirs[k]]
        if mine["configs"] != theirs["configs"] and "--grid" not in out:
            out.append("--grid")
        options = sorted(k for k in {*mine["base"], *theirs["base"]} if mine["base"].get(k) != theirs["base"].get(k))
        return out + [f"--{k.replace('_', '-')}" for k in options]


@dataclass
class BestConfig:
    """``best.json``: the configuration chosen by mean validation metric, and its refit on train+val."""

    config: str
    options: dict[str, Any]
    monitor: str
    mean: float
    std: float | None
    folds: int
    best_epochs: list[int]
    refit_epochs: int  # the mean best epoch over its folds, rounded: the refit's --epochs
    final: str | None = None  # the refit's run directory, relative to the crossval folder

    @classmethod
    def read(cls, out: str | os.PathLike) -> "BestConfig":
        path = Path(out) / "best.json"
        fix = f"rerun 'cvkit crossval summarize {out}'"
        return from_json(cls, read_json(path, fix), path, fix)

    def write(self, out: str | os.PathLike) -> None:
        write_json(Path(out) / "best.json", asdict(self))


# ----------------------------------------------------------------------------- folds.csv


def write_folds(out: str | os.PathLike, frame: "pd.DataFrame") -> None:  # noqa: F821
    """``folds.csv``: manifest ``row``, ``path``, ``label``, ``split``, the ``fold`` that validates the image
    (-1: never validated, e.g. the training part of a holdout split) and ``augmented_from`` (a copy written
    by ``augment --materialize``: its source's fold, left out of that fold's training, never validated)."""
    write_csv(Path(out) / "folds.csv", frame[list(FOLDS_COLUMNS)])


def read_folds(out: str | os.PathLike) -> "pd.DataFrame":  # noqa: F821
    frame = _read_csv(Path(out) / "folds.csv", FOLDS_COLUMNS, {"path": str, "label": str, "split": str,
                                                               "augmented_from": str})
    frame["augmented_from"] = frame["augmented_from"].fillna("")
    try:
        frame["row"], frame["fold"] = frame["row"].astype(int), frame["fold"].astype(int)
    except (TypeError, ValueError):
        raise ManifestError(f"{Path(out) / 'folds.csv'}: 'row' and 'fold' must be integers; {AGAIN}") from None
    return frame


# ----------------------------------------------------------------------------- results.csv and summary.csv


def write_results(out: str | os.PathLike, frame: "pd.DataFrame") -> None:  # noqa: F821
    """``results.csv``: one row per configuration and fold: the best epoch's ``val_acc`` and ``val_loss``,
    ``best_epoch``, ``epochs`` run and training ``seconds``; each grid key is a column after ``config``."""
    write_csv(Path(out) / "results.csv", frame)


def write_summary(out: str | os.PathLike, frame: "pd.DataFrame") -> None:  # noqa: F821
    """``summary.csv``: one row per configuration, best first: mean and standard deviation over its folds
    (``rank``, ``config``, ``folds``, ``val_acc_mean``, ``val_acc_std``, ``val_loss_mean``, ``val_loss_std``,
    ``best_epoch_mean``, ``seconds``; each grid key is a column after ``config``)."""
    write_csv(Path(out) / "summary.csv", frame)


def read_results(out: str | os.PathLike) -> "pd.DataFrame":  # noqa: F821
    """``results.csv`` as written by :func:`write_results` (the grid's columns kept as written)."""
    return _read_csv(Path(out) / "results.csv", ("config", "fold", "val_acc", "val_loss", "best_epoch"),
                     {"config": str})


def read_summary(out: str | os.PathLike) -> "pd.DataFrame":  # noqa: F821
    """``summary.csv`` as written by :func:`write_summary`, best first."""
    return _read_csv(Path(out) / "summary.csv", ("rank", "config", "folds", "val_acc_mean", "val_acc_std",
                                                  "val_loss_mean", "val_loss_std"), {"config": str})


def plot_path(out: str | os.PathLike) -> Path:
    """``crossval.png``: each configuration's mean and spread over its folds (drawn by ``crossval``)."""
    return Path(out) / "crossval.png"


def _read_csv(path: Path, columns: tuple[str, ...], dtype: dict[str, Any]) -> "pd.DataFrame":  # noqa: F821
    return read_csv_checked(path, columns, f"rerun 'cvkit crossval summarize {path.parent}'", dtype)
