"""``cvkit train``: the fit loop.

The whole training split sits in memory as uint8 (the packed cache); each step takes one batch,
moves it to the device, and does the rest there: scale, augment, normalize, forward, backward.
Per epoch: validation, ``metrics.csv``, the best weights (``model.safetensors`` + ``model.json``),
and ``last.ckpt`` for ``--resume``, each written atomically.

Distributed-ready: ``Batches`` takes a rank and world size; the process group and the rank-0-only
file writes are left to the DistributedDataParallel work.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cvkit import __version__
from cvkit.data import load_split
from cvkit.device import keep_freed_memory, resolve_device
from cvkit.errors import ManifestError, OptionError, OutputExists, TrainingDiverged
from cvkit.infer import autocast, predict_batches
from cvkit.io import (
    read_dataset_info,
    read_json,
    save_weights,
    torch_load_safe,
    torch_save,
    write_json,
    write_metrics,
    write_model_info,
)
from cvkit.progress import info, progress_bar
from cvkit.train import speed
from cvkit.train.config import TrainConfig
from cvkit.train.loader import Batches
from cvkit.train.losses import Criterion, num_outputs, outputs_to_probs, soft_targets
from cvkit.train.optim import DEFAULT_LR, DEFAULT_WEIGHT_DECAY, lr_multiplier, make_optimizer, param_groups
from cvkit.transforms.batch import AugmentPolicy, Preprocess, augment, mix, read_augment


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


class Trainer:
    """Everything one training run needs, built from a :class:`TrainConfig`."""

    def __init__(self, cfg: TrainConfig, resume: dict[str, Any] | None = None) -> None:
        from cvkit.models import check_input_size, create_model, load_weights

        cfg.check()
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        if self.device.type == "cpu":
            cfg.resolved["keep_freed_memory"] = keep_freed_memory()
        torch.manual_seed(cfg.seed)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        data = Path(cfg.data)
        self.dataset_info = read_dataset_info(data)
        size = tuple(cfg.size) if cfg.size else None
        self.train = load_split(data, "train", size)
        self.classes = self.train.classes
        self.input_size = tuple(int(s) for s in self.train.images.shape[1:3])
        self.in_chans = int(self.train.images.shape[3])
        try:
            self.val = load_split(data, "val", self.input_size)
        except ManifestError:
            self.val = None  # no val split: the last epoch is kept
        self.stats = self._stats(data)
        k = len(self.classes)
        self.num_outputs = num_outputs(cfg.loss, k)
        self.model = create_model(cfg.arch, self.num_outputs, self.in_chans, self.input_size,
                                  init=cfg.init, pretrained=cfg.pretrained, **cfg.model_options())
        check_input_size(cfg.arch, self.model, self.in_chans, self.input_size)
        if cfg.weights:
            report = load_weights(self.model, cfg.weights)
            info(f"--weights {cfg.weights}: {report['loaded']} tensors loaded, {len(report['skipped'])} skipped "
                 f"(shape differs), {len(report['missing'])} left at their initial values")
        self.model.to(self.device)
        self.backbone = self._backbone_names()
        self._apply_freeze(frozen=cfg.freeze is not None)

        self.batches = Batches(self.train.images, self.train.labels, cfg.batch_size, self.device, shuffle=True,
                               drop_last=True)
        self.val_batches = (Batches(self.val.images, self.val.labels, cfg.eval_batch_size, self.device, shuffle=False)
                            if self.val is not None else None)
        base_lr = cfg.lr if cfg.lr is not None else DEFAULT_LR[cfg.optimizer] * cfg.batch_size / 128
        self.base_lr = base_lr
        decay = cfg.weight_decay if cfg.weight_decay is not None else DEFAULT_WEIGHT_DECAY[cfg.optimizer]
        groups = param_groups(self.model, decay, base_lr, self.backbone if cfg.freeze else None,
                              cfg.backbone_lr_scale)
        self.optimizer = make_optimizer(cfg.optimizer, groups, base_lr, cfg.momentum, cfg.nesterov)
        steps = len(self.batches)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_multiplier(cfg.schedule, steps * cfg.epochs, steps, round(cfg.warmup * steps),
                                          cfg.step_size, cfg.gamma))
        self.criterion = Criterion(cfg.loss, self._class_weights() if cfg.class_weights == "auto" else None)
        self.policy = self._policy(data)
        mean_image = np.load(data / self.stats["mean_image"]) if self.stats.get("mean_image") else None
        self.pre = Preprocess(self.stats["mean"], self.stats["std"], self.device, mean_image)
        self.precision, self.memory_format = "fp32", "contiguous"
        self.scaler = None
        self.forward = self.model
        # One fixed batch for the start-up timings (its own generator: training's draws are not shifted).
        sample = next(self.batches.epoch(torch.Generator().manual_seed(0)))
        if resume is not None:
            self.precision, self.memory_format = resume["precision"], resume["memory_format"]
        else:
            self._choose_speed(*sample)
        speed.set_memory_format(self.model, self.memory_format)
        self.pre.channels_last = self.memory_format == "channels_last"
        if self.device.type == "cpu" and not cfg.compile:
            self._tune_convs(sample[0])
        if self.precision == "fp16" and self.device.type == "cuda":
            self.scaler = torch.amp.GradScaler("cuda")
        if cfg.compile:
            self.forward = torch.compile(self.model)

    # ------------------------------------------------------------------ setup helpers

    def _stats(self, data: Path) -> dict[str, Any]:
        if (data / "stats.json").is_file():
            stats = read_json(data / "stats.json", "")
            if len(stats["mean"]) != self.in_chans:
                raise ManifestError(f"{data}/stats.json has {len(stats['mean'])} channel(s), the images have "
                                    f"{self.in_chans}; rerun 'cvkit normalize {data}'")
            return stats
        from cvkit.transforms.stats import compute_stats

        info(f"[yellow]{data}/stats.json is missing:[/] using statistics of the train split computed now "
             f"(store them with 'cvkit normalize {data}')")
        stats, _ = compute_stats(data, self.input_size)
        return stats

    def _policy(self, data: Path) -> AugmentPolicy:
        fields = {"hflip": self.cfg.hflip, "translate": self.cfg.translate}
        fields.update(read_augment(data) or {})  # the dataset's augment.json wins
        return AugmentPolicy(**fields)

    def _class_weights(self) -> torch.Tensor:
        counts = np.bincount(self.train.labels, minlength=len(self.classes)).astype(np.float64)
        weights = np.where(counts > 0, counts.sum() / (len(counts) * np.maximum(counts, 1)), 0.0)
        return torch.tensor(weights, dtype=torch.float32, device=self.device)

    def _backbone_names(self) -> set[str]:
        from cvkit.models import head_parameter_names

        head = head_parameter_names(self.model)
        return {n for n, _ in self.model.named_parameters() if n not in head}

    def _apply_freeze(self, frozen: bool) -> None:
        """``--freeze backbone``: train the head only; ``--freeze N``: the head and the last N blocks."""
        from cvkit.models import block_groups

        trainable = {n for n, _ in self.model.named_parameters()}
        if frozen:
            trainable -= self.backbone
            if self.cfg.freeze != "backbone":
                groups = block_groups(self.model)
                for group in groups[len(groups) - int(self.cfg.freeze):] if int(self.cfg.freeze) else []:
                    trainable |= set(group)
        for name, p in self.model.named_parameters():
            p.requires_grad_(name in trainable)
        self.frozen_modules = [m for m in self.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                               and not any(p.requires_grad for p in m.parameters())]

    def _train_mode(self) -> None:
        self.model.train()
        for m in self.frozen_modules:  # a frozen backbone keeps its normalization statistics too
            m.eval()

    def _choose_speed(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        options = speed.candidates(self.device, self.cfg.precision, self.cfg.memory_format)

        def step(precision: str, memory_format: str) -> None:
            self.pre.channels_last = memory_format == "channels_last"
            self._step(images, labels, precision, advance_schedule=False)

        gen_state = self.gen.get_state()  # the probe's augmentation draws must not shift training's
        (self.precision, self.memory_format), timings = speed.choose(self.model, self.optimizer, options, step)
        self.gen.set_state(gen_state)
        self.cfg.resolved["speed_probe_ms_per_step"] = timings

    def _tune_convs(self, images: torch.Tensor) -> None:
        from cvkit.train.conv_grad import tune_weight_grads

        switched = tune_weight_grads(self.model, self.pre(images), self.precision)
        self.cfg.resolved["im2col_weight_grad_ms"] = switched  # {layer: [oneDNN ms, im2col ms]}

    # ------------------------------------------------------------------ the loop

    def _step(self, images: torch.Tensor, labels: torch.Tensor, precision: str, advance_schedule: bool = True):
        """One training step. The speed probe and the lr range test set the lr themselves: no schedule step."""
        self._train_mode()
        x = augment(self.pre.to_unit(images), self.policy, self.gen)
        targets = soft_targets(labels, len(self.classes), self.cfg.label_smoothing)
        if self.policy.mixes:
            x, targets = mix(x, targets, self.policy, self.gen)
        x = self.pre.normalize(x)
        with autocast(self.device, precision):
            out = self.forward(x)
        loss = self.criterion(out, targets)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        if advance_schedule:
            self.scheduler.step()
        correct = (outputs_to_probs(out.detach(), self.cfg.loss).argmax(1) == labels).sum()
        return loss.detach(), correct

    def train_epoch(self, epoch: int) -> dict[str, float]:
        cfg = self.cfg
        total_loss = torch.zeros((), device=self.device)
        total_correct = torch.zeros((), dtype=torch.int64, device=self.device)
        seen = 0
        start = time.perf_counter()
        with progress_bar(f"epoch {epoch}/{cfg.epochs}", total=len(self.batches) * cfg.batch_size) as bar:
            for i, (images, labels) in enumerate(self.batches.epoch(self.gen)):
                loss, correct = self._step(images, labels, self.precision)
                total_loss += loss * len(labels)
                total_correct += correct
                seen += len(labels)
                bar.advance(len(labels))
                if i % 20 == 0 or self.device.type == "cpu":
                    value = float(loss)
                    if not math.isfinite(value):
                        raise TrainingDiverged(
                            f"the loss became {value} at epoch {epoch}, step {i + 1}; lower --lr (the base lr is "
                            f"{self.base_lr:g}) or try --precision fp32")
                    if i % 20 == 0:
                        bar.update(description=f"epoch {epoch}/{cfg.epochs} loss {float(total_loss) / seen:.4f} "
                                               f"acc {float(total_correct) / seen:.3f}")
        seconds = time.perf_counter() - start
        return {"train_loss": float(total_loss) / max(1, seen), "train_acc": float(total_correct) / max(1, seen),
                "seconds": seconds, "images_per_s": seen / seconds}

    def validate(self) -> tuple[float, float]:
        probs, loss = predict_batches(self.forward, self.val_batches.epoch(), self.pre, self.cfg.loss, self.precision,
                                      num_classes=len(self.classes))
        return float(loss), float((probs.argmax(1) == self.val.labels).mean())

    # ------------------------------------------------------------------ files

    def model_info(self, epoch: int, row: dict[str, Any]) -> dict[str, Any]:
        from cvkit.models import arch_options

        return {"arch": self.cfg.arch,
                "arch_options": arch_options(self.cfg.arch, **self.cfg.model_options()),
                "num_classes": len(self.classes), "num_outputs": self.num_outputs, "in_chans": self.in_chans,
                "input_size": list(self.input_size), "classes": self.classes, "loss": self.cfg.loss,
                "mean": self.stats["mean"], "std": self.stats["std"],
                "mean_image": "mean_image.npy" if self.stats.get("mean_image") else None,
                "resize": self.dataset_info.get("resize", "crop"), "epoch": epoch,
                "val_acc": row.get("val_acc"), "val_loss": row.get("val_loss"), "cvkit_version": __version__}

    def checkpoint(self, epoch: int, history: list[dict], best: dict, bad_epochs: int) -> dict[str, Any]:
        return {"format": 1, "epoch": epoch, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "rng_torch": torch.get_rng_state(),
                "rng_gen": self.gen.get_state(), "history": history, "best": best, "bad_epochs": bad_epochs,
                "precision": self.precision, "memory_format": self.memory_format,
                "unfrozen": not any(not p.requires_grad for p in self.model.parameters())}

    def restore(self, ckpt: dict[str, Any]) -> None:
        if ckpt.get("unfrozen"):
            self._apply_freeze(frozen=False)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        torch.set_rng_state(ckpt["rng_torch"])
        self.gen.set_state(ckpt["rng_gen"])


def _better(monitor: str, value: float, best: float | None) -> bool:
    """Accuracy should rise; losses (val_loss, or train_loss when there is no val split) should fall."""
    if best is None:
        return True
    return value > best if monitor == "val_acc" else value < best


def fit(cfg: TrainConfig, resume: str | os.PathLike | None = None, force: bool = False,
        callbacks: tuple[Callback, ...] = ()) -> TrainResult:
    """Train ``cfg.arch`` on ``cfg.data`` into the run directory ``cfg.out``; see ``cvkit train --help``.

    With ``resume``, the run's config.json and last.ckpt are used and training goes on from the
    epoch after the last completed one (``cfg.epochs`` may extend it).
    """
    run = Path(cfg.out)
    ckpt = None
    if resume is not None:
        ckpt = torch_load_safe(run / "last.ckpt", "checkpoint to resume from")
        if not isinstance(ckpt, dict) or ckpt.get("format") != 1:
            raise ManifestError(f"{run / 'last.ckpt'} is not a cvkit checkpoint; start a new run instead")
    elif run.exists() and any(run.iterdir()):
        if not force:
            raise OutputExists(f"--out {run} already holds a run; pass --force to replace it or --resume {run} to continue")
        shutil.rmtree(run)
    trainer = Trainer(cfg, resume=ckpt)
    run.mkdir(parents=True, exist_ok=True)
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"epoch": 0, "value": None}
    bad_epochs, start_epoch = 0, 1
    if ckpt is not None:
        trainer.restore(ckpt)
        history, best, bad_epochs = list(ckpt["history"]), dict(ckpt["best"]), int(ckpt["bad_epochs"])
        start_epoch = int(ckpt["epoch"]) + 1
    cfg.resolved.update({"precision": trainer.precision, "memory_format": trainer.memory_format,
                         "device": str(trainer.device), "lr": trainer.base_lr,
                         "weight_decay": trainer.optimizer.param_groups[-1]["weight_decay"], "loader_workers": 0,
                         "resident": trainer.batches.resident, "augment": trainer.policy.to_json(),
                         "input_size": list(trainer.input_size), "in_chans": trainer.in_chans,
                         "cvkit_version": __version__, "torch_version": torch.__version__})
    write_json(run / "config.json", cfg.to_json())
    if trainer.stats.get("mean_image"):  # model.json points at it: the run must stand alone
        shutil.copyfile(Path(cfg.data) / trainer.stats["mean_image"], run / "mean_image.npy")
    monitor = cfg.monitor if trainer.val is not None else "train_loss"
    if start_epoch == 1:
        info(f"Training {cfg.arch} on {trainer.train.images.shape[0]:,} images "
             f"({trainer.input_size[0]}x{trainer.input_size[1]}x{trainer.in_chans}, {len(trainer.classes)} classes) "
             f"on {trainer.device}, {trainer.precision} {trainer.memory_format}; monitoring {monitor}")
    started = time.perf_counter()
    stopped_early = False
    epoch = start_epoch - 1
    for epoch in range(start_epoch, cfg.epochs + 1):
        if cfg.unfreeze_after is not None and cfg.freeze and epoch == cfg.unfreeze_after + 1:
            trainer._apply_freeze(frozen=False)
            info(f"epoch {epoch}: backbone unfrozen (its lr is {cfg.backbone_lr_scale:g} x the head's)")
        row: dict[str, Any] = {"epoch": epoch, **trainer.train_epoch(epoch)}
        if trainer.val is not None:
            row["val_loss"], row["val_acc"] = trainer.validate()
        else:
            row["val_loss"], row["val_acc"] = float("nan"), float("nan")
        row["lr"] = trainer.optimizer.param_groups[-1]["lr"]
        row = {k: row[k] for k in ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds",
                                   "images_per_s")}
        history.append(row)
        value = row[monitor]
        if _better(monitor, value, best["value"]):
            best, bad_epochs = {"epoch": epoch, "value": value}, 0
            save_weights(run / "model.safetensors", trainer.model.state_dict(), {"epoch": str(epoch)})
            write_model_info(run, trainer.model_info(epoch, row))
        else:
            bad_epochs += 1
        write_metrics(run, history)
        torch_save(run / "last.ckpt", trainer.checkpoint(epoch, history, best, bad_epochs))
        info(f"epoch {epoch}/{cfg.epochs}  train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f}  "
             f"val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f}  lr {row['lr']:.3g}  "
             f"{row['seconds']:.1f} s, {row['images_per_s']:,.0f} img/s" + ("  *" if best["epoch"] == epoch else ""))
        for callback in callbacks:
            callback(epoch, row)
        if cfg.patience is not None and bad_epochs >= cfg.patience:
            info(f"Early stop: {monitor} has not improved for {bad_epochs} epochs (best {best['value']:.4f} "
                 f"at epoch {best['epoch']})")
            stopped_early = True
            break
    _plot_curves(run, history)
    return TrainResult(run, best["epoch"], best["value"], monitor, epoch - start_epoch + 1,
                       time.perf_counter() - started, stopped_early, history)


def _plot_curves(run: Path, history: list[dict[str, Any]]) -> None:
    import pandas as pd

    from cvkit.evaluate.plots import plot_curves

    if history:
        plot_curves(pd.DataFrame(history), run / "curves.png")


def load_config(run: str | os.PathLike) -> TrainConfig:
    """The TrainConfig a run was started with (for ``--resume``)."""
    path = Path(run) / "config.json"
    if not path.is_file():
        raise OptionError(f"--resume {run}: {path} is missing; is {run} a run directory written by 'cvkit train'?")
    data = read_json(path, "")
    data.pop("format", None)
    return TrainConfig.from_json(data)
