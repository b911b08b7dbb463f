"""``cvkit train``: the fit loop and the run directory it writes.

Per epoch: recalibrated BatchNorm statistics, validation, ``metrics.csv``, the best weights
(``model.safetensors`` + ``model.json``), and ``last.ckpt`` for ``--resume``, each written
atomically. A run that replaces an old one (``--force``) is built beside it and swapped in only
when complete.

Under ``torchrun`` every process runs this loop on its share of the data (see distributed.py) and
only rank 0 writes the run directory; choices that are timed (``--budget``'s epochs) are rank 0's.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from cvkit import __version__
from cvkit.data.selection import Selection
from cvkit.errors import Interrupted, OptionError
from cvkit.files.atomic import remove_leftovers, write_npy
from cvkit.files.config import TrainConfig, parse_budget
from cvkit.files.lock import locked
from cvkit.files.logs import remove_logs
from cvkit.files.outputs import check_out, replacing
from cvkit.files.owned import own_run
from cvkit.files.run import (
    ModelInfo,
    has_checkpoint,
    load_model_weights,
    read_checkpoint,
    save_model_weights,
    write_checkpoint,
    write_metrics,
)
from cvkit.models.auxiliary import load_plain_state_dict, plain_state_dict
from cvkit.progress import info, set_quiet
from cvkit.train.batchnorm import RECALIBRATE_BELOW_STEPS
from cvkit.train.budget import Budget
from cvkit.train.budget_nets import net_is_open, wider_net
from cvkit.train.checkpoint import checkpoint_state, restore
from cvkit.train.distributed import World
from cvkit.train.logbook import EpochLog
from cvkit.train.divergence import check_finite
from cvkit.train.restarts import fit_restarts
from cvkit.train.trainer import Trainer


@dataclass
class TrainResult:
    run: Path
    best_epoch: int
    best_metric: float | None
    monitor: str
    epochs_run: int
    seconds: float
    stopped_early: bool
    history: list[dict[str, Any]] = field(default_factory=list)


Callback = Callable[[int, dict[str, Any]], None]  # (epoch, metrics row) after each epoch


def fit(cfg: TrainConfig, train: Selection | None = None, val: Selection | None = None, *, force: bool = False,
        callbacks: tuple[Callback, ...] = (), started: float | None = None) -> TrainResult:
    """Train ``cfg.arch`` on ``cfg.data`` into the run directory ``cfg.out``; see ``cvkit train --help``.

    ``train`` and ``val`` select the images (default: the train split, and the val split when the
    dataset has one): a split, a fold of train+val, or listed manifest rows. Normalization
    statistics come from the training images only. ``val`` None with a train selection given:
    no validation, and the epoch with the lowest training loss is kept (with a decaying schedule nearly
    always the last). ``started`` (a ``time.perf_counter()`` value) is when
    a ``--budget`` starts counting; default: now.
    """
    if cfg.restarts > 1:
        return fit_restarts(fit, cfg, train, val, force=force, callbacks=callbacks, started=started)
    budget = Budget(parse_budget(cfg.budget), started or time.perf_counter()) if cfg.budget else None
    with locked(cfg.out, enabled=World.launched_rank() == 0):  # one writer: a second train into this --out is refused
        run = check_out(cfg.out, reads=[cfg.data, *(p for p in (cfg.weights, cfg.teacher) if p)], own=own_run, force=force,
                        lock=False)
        world = World.start(cfg.device)
        if world.main:
            _clean(run)
        try:
            return world.finished(_fit(cfg, run, world, train, val, force, callbacks, budget))
        finally:
            world.stop()


def _fit(cfg: TrainConfig, run: Path, world: World, train: Selection | None, val: Selection | None, force: bool,
         callbacks: tuple[Callback, ...], budget: Budget | None) -> TrainResult:
    if not world.main:
        set_quiet(True)  # rank 0 prints for all
    trainer = Trainer.build(cfg, train, val, world=world)
    if budget is not None:
        n_val = len(trainer.data.val.labels) if trainer.data.val is not None else 0

        def plan(step_seconds: float) -> tuple[int, str]:
            return budget.first_plan(step_seconds, len(trainer.batches), n_val, trainer.batch_size)

        wider = world.agree(wider_net(trainer, lambda step: plan(step)[0])) if net_is_open(cfg) else None
        if wider is not None:  # the budget fits enough epochs of a wider net to beat the default (on val)
            for key, value in wider["options"].items():
                setattr(cfg, key, value)
            trainer = Trainer.build(cfg, train, val, world=world)
            info(f"--budget: {cfg.arch} " + " ".join(f"--{k} {v}" for k, v in wider["options"].items())
                 + f": about {wider['epochs']} epochs of it fit, and from {wider['needs_epochs']} it beat the default "
                 "on val at the same time (--base to choose yourself)")
        epochs, trainer.epochs_reason = world.agree(plan(trainer.step_seconds()))
        trainer.replan(epochs)
        cfg.resolved.budget = {"seconds": budget.seconds, "first_plan": trainer.epochs_reason, "wider_net": wider}
    cfg.resolved.selections = {"train": trainer.data.train_selection.to_json(),
                               "val": trainer.data.val_selection.to_json() if trainer.data.val_selection else None}
    if not world.main:  # the other processes train and write nothing
        return _loop(trainer, run, None, resumable=True, callbacks=callbacks, budget=budget)
    if run.exists() and any(run.iterdir()):
        with replacing(run) as stage:  # the old run stays whole until the new one is complete
            result = _loop(trainer, stage, None, resumable=False, callbacks=callbacks, budget=budget)
        result.run = run
        return result
    created = not run.exists()
    run.mkdir(parents=True, exist_ok=True)
    try:
        return _loop(trainer, run, None, resumable=True, callbacks=callbacks, budget=budget)
    except BaseException:
        _discard_unstarted(run, created)
        raise


def _discard_unstarted(run: Path, created: bool) -> None:
    """A new run that fails before its first epoch is saved leaves nothing: its config.json alone would
    block the next ``--out`` and could not be resumed. (The folder was empty: all in it is this run's.)"""
    if has_checkpoint(run):
        return
    for path in (TrainConfig.path(run), run / "mean_image.npy"):
        path.unlink(missing_ok=True)
    remove_logs(run)
    remove_leftovers(run)
    if created and not any(run.iterdir()):
        run.rmdir()


def resume(run: str | os.PathLike, callbacks: tuple[Callback, ...] = ()) -> TrainResult:
    """Finish an interrupted run from its ``last.ckpt``, with the options and schedule it was started with."""
    run = Path(run)
    if not run.is_dir():
        raise OptionError(f"--resume {run}: no such run directory")
    with locked(run, "--resume", enabled=World.launched_rank() == 0):
        return _resume(run, callbacks)


def _resume(run: Path, callbacks: tuple[Callback, ...]) -> TrainResult:
    cfg = TrainConfig.read(run)
    _clean(run)  # before reading: a write killed mid-way leaves its temporary file, never a half checkpoint
    ckpt = read_checkpoint(run)
    done = int(ckpt["epoch"])
    cfg.epochs = int(cfg.resolved.epochs or cfg.epochs)
    if done >= cfg.epochs or ckpt.get("stopped_early"):
        raise OptionError(f"--resume {run}: the run is complete ({done} of {cfg.epochs} epochs); to train longer, "
                          f"start a new run from its weights with --weights {run / 'model.safetensors'}")
    cfg.out = str(run)
    if ModelInfo.exists(run):  # the net the run was built as, even where a default has changed since
        for key, value in ModelInfo.read(run).build_options().items():
            if key != "head" and getattr(cfg, key, "") is None:
                setattr(cfg, key, value)
    selections = cfg.resolved.selections or {}
    train = Selection.from_json(selections["train"]) if selections.get("train") else None
    val = Selection.from_json(selections["val"]) if selections.get("val") else None
    budget, cfg.budget = cfg.budget, None  # a budget run resumes with the epochs it had planned
    world = World.start(cfg.device)
    try:
        if not world.main:
            set_quiet(True)
        trainer = Trainer.build(cfg, train, val, resume=ckpt, world=world)
        cfg.budget = budget
        return world.finished(_loop(trainer, run, ckpt, resumable=True, callbacks=callbacks))
    finally:
        world.stop()


def _clean(run: Path) -> None:
    if World.launched_rank() == 0:
        removed = remove_leftovers(run)
        if removed:
            info(f"Removed {len(removed)} temporary file(s) left by an interrupted write: {', '.join(sorted(removed))}")


def _loop(trainer: Trainer, run: Path, ckpt: dict[str, Any] | None, resumable: bool, budget: Budget | None = None,
          callbacks: tuple[Callback, ...] = ()) -> TrainResult:
    cfg, data = trainer.cfg, trainer.data
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"epoch": 0, "value": None}
    bad_epochs, start_epoch = 0, 1
    if ckpt is not None:
        restore(trainer, ckpt)
        history, best, bad_epochs = list(ckpt["history"]), dict(ckpt["best"]), int(ckpt["bad_epochs"])
        start_epoch = int(ckpt["epoch"]) + 1
    cfg.resolved = replace(cfg.resolved, precision=trainer.precision, memory_format=trainer.memory_format,
                           device=str(trainer.device), lr=trainer.base_lr, epochs=trainer.epochs,
                           batch_size=trainer.batch_size,
                           weight_decay=trainer.optimizer.param_groups[-1]["weight_decay"], loader_workers=0,
                           resident=trainer.batches.resident, augment=trainer.policy.to_json(),
                           augment_source=data.policy_source, epochs_reason=trainer.epochs_reason,
                           input_size=list(data.input_size), in_chans=data.in_chans, stats=data.stats.to_json(),
                           cvkit_version=__version__,
                           batchnorm_recalibration={"images": int(len(trainer.recalibration)),
                                                    "while_steps_below": RECALIBRATE_BELOW_STEPS},
                           torch_version=torch.__version__, world_size=trainer.world.world_size,
                           global_batch_size=trainer.batch_size, batch_size_per_process=trainer.batches.batch_size)
    main = trainer.world.main
    if main:
        # curves.png's imports (a second or so) while the epochs run, not after them
        threading.Thread(target=_import_plotting, daemon=True).start()
        cfg.write(run)
        if data.mean_image is not None:  # model.json points at it: the run must stand alone
            write_npy(run / "mean_image.npy", data.mean_image)
    metric = f"val_{trainer.task.metric}"
    monitor = trainer.task.monitor(cfg.monitor) if data.val is not None else "train_loss"
    if start_epoch == 1:
        info(f"Training {cfg.arch} on {len(data.train.labels):,} images ({data.train_selection.describe()}, "
             f"{data.input_size[0]}x{data.input_size[1]}x{data.in_chans}, {len(trainer.task.classes)} "
             f"{trainer.task.outputs_are}) on "
             f"{trainer.device}, {trainer.precision} {trainer.memory_format}"
             f"{' (' + cfg.resolved.speed_probe_skipped + ')' if cfg.resolved.speed_probe_skipped else ''}; "
             f"{trainer.epochs_reason}; "
             f"monitoring {monitor}; augmentation: {trainer.policy.describe()} ({data.policy_source})")
    started = time.perf_counter()
    stopped_early = False
    epoch, val_probs = start_epoch, None
    log = EpochLog(trainer, run, start_epoch)
    try:
        while epoch <= trainer.epochs:  # --budget may change trainer.epochs after an epoch
            epoch_started = time.perf_counter()
            if cfg.unfreeze_after is not None and cfg.freeze and epoch == cfg.unfreeze_after + 1:
                trainer.freezer.set(False)
                info(f"epoch {epoch}: backbone unfrozen (its lr is {cfg.backbone_lr_scale:g} x the head's)")
            log.start_epoch()
            row: dict[str, Any] = {"epoch": epoch, **trainer.train_epoch(epoch)}
            trainer.recalibrate_batchnorm()
            val_probs = None
            if data.val is not None:
                row["val_loss"], row[metric], val_probs = trainer.validate()
                if trainer.ema is not None:  # the live weights' figures beside the average's
                    row["live_val_loss"], row[f"live_{metric}"], _ = trainer.validate(live=True)
            else:
                row["val_loss"], row[metric] = float("nan"), float("nan")
            check_finite(trainer.model, epoch, row["val_loss"] if data.val is not None else None,
                         trainer.divergence_advice)  # before anything of the epoch is kept
            row["lr"] = trainer.optimizer.param_groups[-1]["lr"]
            row = {k: row[k] for k in (*trainer.task.metrics_columns, "errors", "grad_norm", "kd_loss", "live_val_loss",
                                       f"live_{metric}")
                   if k in row}
            history.append(row)
            log.end_epoch(epoch, row, val_probs)  # before the checkpoint: a resumed run's log drops what follows it
            value = row[monitor]
            if trainer.task.better(monitor, value, best["value"]):
                best, bad_epochs = {"epoch": epoch, "value": value}, 0
                state = {**trainer.task.state(),
                         **(trainer.task.calibrate(val_probs, trainer.val_targets()) if val_probs is not None else {})}
                if main:
                    save_model_weights(run, plain_state_dict(trainer.kept_model), epoch)  # no auxiliary classifiers
                    _model_info(trainer, epoch, row, state).write(run)
            else:
                bad_epochs += 1
            stop = cfg.patience is not None and bad_epochs >= cfg.patience
            ckpt_state = {**checkpoint_state(trainer, epoch, history, best, bad_epochs), "stopped_early": stop}  # all ranks
            if main:  # the checkpoint first: metrics.csv never lists an epoch that --resume would not start after
                write_checkpoint(run, ckpt_state)
                write_metrics(run, history)
            info(f"epoch {epoch}/{trainer.epochs}  train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f}  "
                 f"val loss {row['val_loss']:.4f} {trainer.task.metric} {row[metric]:.4f}  lr {row['lr']:.3g}  "
                 f"{row['seconds']:.1f} s, {row['images_per_s']:,.0f} img/s" + ("  *" if best["epoch"] == epoch else ""))
            for callback in callbacks:
                callback(epoch, row)
            if stop:
                info(f"Early stop: {monitor} has not improved for {bad_epochs} epochs (best {best['value']:.4f} "
                     f"at epoch {best['epoch']})")
                stopped_early = True
                break
            if budget is not None:
                _replan(trainer, budget, epoch, time.perf_counter() - epoch_started, run)
            epoch += 1
        epoch = min(epoch, trainer.epochs)
    except KeyboardInterrupt:
        if resumable and history:
            raise Interrupted(f"interrupted in epoch {epoch} of {trainer.epochs}; epochs 1-{history[-1]['epoch']} are "
                              f"saved: continue with 'cvkit train --resume {run}'") from None
        if resumable:
            raise Interrupted(f"interrupted in epoch {epoch}, before any epoch was saved; start the run again") from None
        raise Interrupted(f"interrupted in epoch {epoch}; the old run in {cfg.out} is unchanged") from None
    finally:
        log.close()
    _choose_tta(trainer, run, history, best["epoch"], val_probs)  # the last epoch's: used if it was the best
    if main:
        _plot_curves(run, history, best["epoch"] or None)
    return TrainResult(run, best["epoch"], best["value"], monitor, epoch - start_epoch + 1,
                       time.perf_counter() - started, stopped_early, history)


def _replan(trainer: Trainer, budget: Budget, epoch: int, seconds: float, run: Path) -> None:
    """--budget: fit the remaining epochs to the time left, as measured so far."""
    epochs = trainer.world.agree(budget.after_epoch(epoch, seconds, trainer.epochs))
    if epochs is None:
        return
    info(f"--budget: {epochs} epochs in all instead of {trainer.epochs} (epochs take {budget.replans[-1]['epoch_seconds']} s, "
         f"{max(0.0, budget.remaining()):.0f} s left)")
    trainer.replan(epochs, trainer.steps_done)
    trainer.cfg.resolved.epochs, trainer.cfg.resolved.budget_replans = epochs, budget.replans
    if trainer.world.main:
        trainer.cfg.write(run)


def _choose_tta(trainer: Trainer, run: Path, history: list[dict[str, Any]], best_epoch: int,
                best_probs: Any | None) -> None:
    """Flip test-time augmentation, chosen on val for the best weights: model.json records both val
    figures, and evaluate and predict average each image with its mirror when that scored higher.
    ``best_probs``: the best epoch's val probabilities when it was the last (else they are predicted again)."""
    if trainer.data.val is None or not best_epoch:
        return
    if history[-1]["epoch"] != best_epoch:  # the best epoch's weights, as model.safetensors holds them
        load_plain_state_dict(trainer.kept_model, load_model_weights(run))
        best_probs = None
    column = f"val_{trainer.task.metric}"
    plain = next(row[column] for row in history if row["epoch"] == best_epoch)
    flipped, probs = trainer.validate_flipped(best_probs)
    chosen = trainer.task.better(column, flipped, plain)
    if trainer.world.main:
        model_info = ModelInfo.read(run)
        model_info.tta = {"chosen": "flip" if chosen else "none", "metric": column, "plain": plain,
                          "flip": round(flipped, 6)}
        if chosen:  # what the task learns on val (thresholds), learned on the probabilities inference will see
            model_info.task_state = {**trainer.task.state(), **trainer.task.calibrate(probs, trainer.val_targets())}
        model_info.write(run)
    info(f"flip TTA: {column} {flipped:.4f} against {plain:.4f} without: "
         + ("evaluate and predict use it (--no-tta turns it off)" if chosen else "not used"))


def _model_info(trainer: Trainer, epoch: int, row: dict[str, Any], state: dict[str, Any]) -> ModelInfo:
    from cvkit.models import arch_options

    cfg, data = trainer.cfg, trainer.data
    return ModelInfo(cfg.arch, len(trainer.task.classes), trainer.task.num_outputs, data.in_chans,
                     list(data.input_size), trainer.task.classes, cfg.loss, data.stats.mean, data.stats.std,
                     arch_options(cfg.arch, **cfg.model_options()), "mean_image.npy" if data.mean_image is not None else None,
                     data.info.resize, epoch, row.get(f"val_{trainer.task.metric}"), row.get("val_loss"), __version__,
                     task=trainer.task.name, task_state=state)


def _import_plotting() -> None:
    try:
        import matplotlib.backends.backend_agg  # noqa: F401
        import matplotlib.figure  # noqa: F401
    except Exception:  # noqa: BLE001 (the plot imports it again and reports what fails)
        pass


def _plot_curves(run: Path, history: list[dict[str, Any]], best_epoch: int | None) -> None:
    import pandas as pd

    from cvkit.plots import plot_curves

    if history:
        plot_curves(pd.DataFrame(history), run / "curves.png", best_epoch)
