"""The fold runs of a cross-validation: where each lives, its TrainConfig, and whether it is finished.

A fold run is an ordinary run directory written by :func:`cvkit.train.fit`. It counts as finished
when its ``config.json`` holds the planned options and data selections and its ``metrics.csv`` holds
every planned epoch (or fewer, when ``last.ckpt`` says it stopped early): a rerun skips it, and
``summarize`` reads its result from ``model.json`` and ``metrics.csv``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cvkit.data.selection import Selection
from cvkit.errors import CvkitError
from cvkit.files.config import TrainConfig, cli_fields, parse_epochs
from cvkit.files.crossval import EXCLUDED_OPTIONS, CrossvalPlan
from cvkit.files.run import ModelInfo, read_checkpoint, read_metrics



def fold_dir(out: Path, config: str, i: int, k: int) -> Path:
    """``OUT/folds/<config>/<i>``, zero-padded so that folders sort in fold order."""
    return out / "folds" / config / f"{i:0{len(str(max(0, k - 1)))}d}"


def base_options(cfg: TrainConfig) -> dict[str, Any]:
    """The train options of ``cfg`` that crossval takes (what ``crossval.json`` stores as ``base``)."""
    data = cfg.to_json()
    data["epochs"] = parse_epochs(data["epochs"])  # "5" from the command line is 5
    return {f.name: data[f.name] for f in cli_fields() if f.name not in EXCLUDED_OPTIONS}


def config_for(plan: CrossvalPlan, options: dict[str, Any], out: Path, device: str = "auto",
               **changes: Any) -> TrainConfig:
    """A fresh TrainConfig for one configuration of ``plan`` (nothing shared between runs), checked."""
    cfg = TrainConfig.from_json({**plan.base, "seed": plan.seed, **options, **changes, "data": plan.data,
                                 "out": str(out), "device": device, "resolved": {}})
    cfg.check()
    return cfg


def run_finished(run: Path, cfg: TrainConfig, train: Selection, val: Selection | None) -> bool:
    """Whether ``run`` is a complete run of ``cfg`` on these selections (a rerun may skip it)."""
    if not ModelInfo.complete(run):
        return False
    try:
        done = TrainConfig.read(run)
        epochs = len(read_metrics(run))
        ModelInfo.read(run)
    except CvkitError:  # a damaged or foreign run: train it again
        return False
    mine, theirs = done.to_json(), cfg.to_json()
    if any(mine.get(f.name) != theirs.get(f.name) for f in cli_fields()) or done.seed != cfg.seed:
        return False
    selections = done.resolved.selections or {}
    if selections.get("train") != train.to_json() or selections.get("val") != (val.to_json() if val else None):
        return False
    planned = done.resolved.epochs
    if not isinstance(planned, int):
        return False
    if epochs >= planned:
        return True
    if done.patience is None:
        return False
    try:
        return bool(read_checkpoint(run).get("stopped_early"))
    except CvkitError:
        return False


def fold_result(run: Path) -> dict[str, Any]:
    """The result of a finished fold run: the best epoch's validation metrics, epochs run, training seconds."""
    info = ModelInfo.read(run)
    metrics = read_metrics(run)
    return {"val_acc": info.val_acc, "val_loss": info.val_loss, "best_epoch": info.epoch, "epochs": len(metrics),
            "seconds": round(float(metrics["seconds"].sum()), 3)}


def relocate(out: Path, stage: Path) -> None:
    """After a staged output took ``out``'s place: point each run's ``config.json`` at its final folder."""
    runs = [*out.glob("folds/*/*"), out / "final"]
    for run in runs:
        if not TrainConfig.path(run).is_file():
            continue
        cfg = TrainConfig.read(run)
        if cfg.out.startswith(str(stage)):
            cfg.out = str(out) + cfg.out[len(str(stage)):]
            cfg.write(run)
