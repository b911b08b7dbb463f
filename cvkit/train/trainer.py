"""One training run as an object: a model, its data, an optimizer with its schedule, and a step.

:meth:`Trainer.build` assembles it from a config and two data selections through the named steps
of :mod:`cvkit.train.setup`. The whole training set sits in memory as uint8 (the packed cache);
each step takes one batch, moves it to the device, and does the rest there: scale, augment,
normalize, forward, backward.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cvkit.data.batches import Batches, steps_per_epoch
from cvkit.data.cache import take
from cvkit.data.selection import Selection
from cvkit.device import autocast, keep_freed_memory, resolve_device, set_memory_format
from cvkit.files.config import TrainConfig
from cvkit.models.auxiliary import main_logits
from cvkit.progress import progress_bar
from cvkit.runtime.infer import predict_batches
from cvkit.tasks import Task
from cvkit.train import perceptron, setup, speed
from cvkit.train.checkpoint import SEED_STRIDE
from cvkit.train.batchnorm import RECALIBRATE_BELOW_STEPS, recalibrate, sample_indices
from cvkit.train.distributed import World, check_sync_bn
from cvkit.train.distill import Teacher
from cvkit.train.divergence import DivergenceWatch, advice
from cvkit.train.ema import WeightAverage
from cvkit.train.freezing import Freezer
from cvkit.train.perceptron import PerceptronRule
from cvkit.train.setup import TrainingData
from cvkit.transforms.batch import Preprocess, augment, augment_planes, mix


class Trainer:
    """Holds the parts of a run; :meth:`step`, :meth:`train_epoch` and :meth:`validate` use them."""

    def __init__(self, cfg: TrainConfig, data: TrainingData, task: Task, device: torch.device, model: torch.nn.Module,
                 batch_size: int, epochs: int, world: World | None = None) -> None:
        self.cfg, self.data, self.task, self.device, self.model = cfg, data, task, device, model
        self.world = world or World()
        self.batch_size, self.epochs = batch_size, epochs  # batch_size: the global batch
        # Two generators: the epoch's shuffle (the same on every process, which then take their shares)
        # and the augmentation draws (each process its own).
        self.order_gen = torch.Generator().manual_seed(cfg.seed)
        self.gen = torch.Generator().manual_seed(cfg.seed + SEED_STRIDE * self.world.rank)
        self.classes = data.classes
        rank, size = self.world.rank, self.world.world_size
        self.batches = Batches(data.train.images, task.targets(data.train), self.world.per_process_batch(batch_size), device,
                               shuffle=True, drop_last=True, rank=rank, world_size=size,
                               weights=setup.draw_weights(cfg, task, data))
        self.val_batches = (Batches(data.val.images, task.targets(data.val), cfg.eval_batch_size, device, shuffle=False,
                                    rank=rank, world_size=size) if data.val is not None else None)
        self.freezer = Freezer(model, cfg.freeze)
        self.base_lr = setup.base_lr(cfg, batch_size)
        self.optimizer = setup.build_optimizer(cfg, model, self.freezer.backbone, self.base_lr)
        # How a batch is learned from, chosen once: a gradient step, or the perceptron rule's
        self.rule = isinstance(self.optimizer, PerceptronRule)
        if self.rule:
            perceptron.check_run(data.policy.mixes, self.world.distributed)
        self.learn = self._rule_step if self.rule else self._gradient_step
        self.errors = torch.zeros((), dtype=torch.int64, device=device)  # the rule's mistakes this epoch
        # --accumulate K: an epoch takes this many optimizer steps of K batches (up to K-1 batches left out)
        self.optimizer_steps = setup.optimizer_steps(cfg, len(self.batches))
        self.scheduler = setup.build_schedule(cfg, self.optimizer, self.optimizer_steps, epochs)
        self.accumulated = 0  # batches whose gradients wait for the next optimizer step
        self.grad_norms: list[torch.Tensor] = []  # --clip-grad: each optimizer step's norm before clipping
        self.policy = data.policy
        self.pre = Preprocess(data.stats.mean, data.stats.std, device, data.mean_image)
        self.precision, self.memory_format = "fp32", "contiguous"
        self.scaler = None
        self.forward = model  # evaluation passes; training steps go through train_forward (DDP when distributed)
        self.train_forward = model
        self.ema: WeightAverage | None = None  # --ema: started once the speed probe has run its steps
        self.teacher = Teacher.load(cfg, task, data.classes, data.in_chans, device) if cfg.teacher else None
        self.kd_losses: list[torch.Tensor] = []  # --teacher: each step's distillation term
        self.recalibration = sample_indices(len(data.train.images), cfg.seed)
        self.peek: Callable[[torch.Tensor], None] | None = None  # train --log: shown the next augmented batch

    @classmethod
    def build(cls, cfg: TrainConfig, train: Selection | None = None, val: Selection | None = None,
              resume: dict[str, Any] | None = None, world: World | None = None) -> "Trainer":
        """Check the config, load the selections (default: the train and val splits), build every part.
        ``world``: the processes of a torchrun job (default: this process alone)."""
        cfg.check()
        perceptron.check_options(cfg)
        world = world or World()
        device = resolve_device(world.device_name(cfg.device))
        check_sync_bn(cfg.sync_bn and world.distributed, device)
        if device.type == "cpu":
            cfg.resolved.keep_freed_memory = keep_freed_memory()
        torch.manual_seed(cfg.seed)
        if train is None:
            train, default_val = setup.default_selections(Path(cfg.data))
            val = default_val if val is None else val
        task = setup.build_task(cfg)
        if cfg.teacher:
            Teacher.check(cfg, task)  # before the data take their time
        if cfg.optimizer == perceptron.NAME:
            perceptron.check_task(task)
        data = setup.load_data(cfg, train, val, task)
        model = setup.build_model(cfg, data, task.num_outputs, device)
        task.check_model(cfg.arch, model)
        if cfg.sync_bn and world.distributed:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        batch_size = setup.plan_batch(cfg, len(data.train.labels), world.world_size)
        epochs, why = setup.plan_epochs(cfg, setup.optimizer_steps(cfg, steps_per_epoch(len(data.train.labels), batch_size,
                                                                                         drop_last=True)))
        trainer = cls(cfg, data, task, device, model, batch_size, epochs, world)
        trainer.epochs_reason = why
        trainer.whiten(resume is not None)
        trainer.setup_speed(resume)
        if cfg.ema is not None:
            trainer.ema = WeightAverage(trainer.model, cfg.ema)
        return trainer

    @property
    def kept_model(self) -> torch.nn.Module:
        """The weights that are validated and saved: the moving average with ``--ema``, else the model."""
        return self.ema.model if self.ema is not None else self.model

    @property
    def eval_forward(self) -> torch.nn.Module:
        return self.ema.model if self.ema is not None else self.forward

    # ------------------------------------------------------------------ setup steps

    def whiten(self, resumed: bool) -> None:
        """``--whiten``: the first convolution set to the train patches' whitening and pinned frozen (on
        ``--resume``: pinned again where the run whitened it; the checkpoint holds the filters)."""
        from cvkit.train import whiten

        cfg = self.cfg
        if resumed:
            name = cfg.resolved.whitened
        elif self.rule or not whiten.wanted(cfg.whiten, cfg.arch, bool(cfg.pretrained or cfg.weights)):
            return
        elif cfg.whiten == "auto" and whiten.why_not(self.model) is not None:
            return
        else:
            name = whiten.whiten(self.model, self.data.train.images, self.pre, cfg.seed)
        if name:
            self.freezer.pin({f"{name}.weight"})
            cfg.resolved.whitened = name

    def setup_speed(self, resume: dict[str, Any] | None) -> None:
        """Precision and memory format (timed at start-up, or as saved), conv tuning, loss scaling, compile."""
        # One fixed batch for the start-up timings (its own generator: training's draws are not shifted).
        sample = next(self.batches.epoch(torch.Generator().manual_seed(0)))
        if resume is not None:
            self.precision, self.memory_format = resume["precision"], resume["memory_format"]
        else:
            self._choose_speed(*sample)
            # every process trains at rank 0's choice (each timed its own steps)
            self.precision, self.memory_format = self.world.agree((self.precision, self.memory_format))
        set_memory_format(self.model, self.memory_format)
        self.pre.channels_last = self.memory_format == "channels_last"
        # Conv tuning is a timed choice like --precision auto: with both speed options given, the run
        # stays bit-for-bit repeatable on the CPU, so it is left out then.
        tuned = "auto" in (self.cfg.precision, self.cfg.memory_format)
        if self.device.type == "cpu" and not self.cfg.compile and tuned:
            from cvkit.train.conv_grad import tune_weight_grads

            switched = tune_weight_grads(self.model, self.pre(sample[0]), self.precision)
            self.cfg.resolved.im2col_weight_grad_ms = switched  # {layer: [oneDNN ms, im2col ms]}
        if self.precision == "fp16" and self.device.type == "cuda":
            self.scaler = torch.amp.GradScaler("cuda")
        self.train_forward = self.world.wrap(self.model, self.device)
        if self.cfg.compile:
            self.forward = torch.compile(self.model)
            self.train_forward = torch.compile(self.train_forward) if self.world.distributed else self.forward

    def step_seconds(self) -> float:
        """Seconds per training step at the chosen precision and memory format, as the start-up probe
        timed it (with ``--budget`` it times even a single candidate)."""
        return self.cfg.resolved.speed_probe_ms_per_step[f"{self.precision}/{self.memory_format}"] / 1000

    def replan(self, epochs: int, steps_done: int = 0) -> None:
        """Train for ``epochs`` in all: the schedule is rebuilt for them from the step reached."""
        self.epochs = epochs
        self.scheduler = setup.build_schedule(self.cfg, self.optimizer, self.optimizer_steps, epochs, steps_done)

    def _choose_speed(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        precision = "fp32" if self.rule else self.cfg.precision  # the rule adds images to weights: no autocast
        options = speed.candidates(self.device, precision, self.cfg.memory_format)

        def step(precision: str, memory_format: str) -> None:
            self.pre.channels_last = memory_format == "channels_last"
            self.step(images, labels, precision, advance_schedule=False)

        gen_state = self.gen.get_state()  # the probe's augmentation draws must not shift training's
        (self.precision, self.memory_format), timings = speed.choose(self.model, self.optimizer, options, step,
                                                                     always_time=self.cfg.budget is not None)
        self.gen.set_state(gen_state)
        self.cfg.resolved.speed_probe_ms_per_step = timings
        self.cfg.resolved.speed_probe_skipped = speed.skipped(self.device, self.cfg.precision)

    # ------------------------------------------------------------------ the loop

    def set_lr(self, lr: float) -> None:
        """Every group's lr, for the lr range test (which does not step the schedule)."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def step(self, images: torch.Tensor, labels: torch.Tensor, precision: str | None = None,
             advance_schedule: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """One training step on a uint8 batch; returns (loss, number correct) as device tensors. With
        ``--accumulate K`` the optimizer steps on every K-th batch, on the mean gradient of the K; a step that
        does not advance the schedule (the speed probe, the lr range test) is always a whole step."""
        precision = precision or self.precision
        self.freezer.train_mode()
        if self.task.dense:  # masks (and weight maps) move with the image, pixel for pixel
            x, labels = augment_planes(self.pre.to_unit(images), labels, self.task.fill, self.policy, self.gen)
        elif self.task.moves:  # boxes and keypoints follow the flips, shifts and zooms
            x, matrices = augment(self.pre.to_unit(images), self.policy, self.gen, track=True)
            labels = self.task.move(labels, matrices, (x.shape[2], x.shape[3]))
        else:
            x = augment(self.pre.to_unit(images), self.policy, self.gen)
        targets = self.task.train_targets(labels)
        if self.policy.mixes and (self.task.mixes or self.task.pastes):
            x, targets = mix(x, targets, self.policy, self.gen)
        if self.peek is not None:
            self.peek(x)
        return self.learn(self.pre.normalize(x), labels, targets, precision, advance_schedule, x)

    def _rule_step(self, x: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor, precision: str,
                   advance_schedule: bool, unit: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The perceptron rule on the batch: (the task's loss of the batch before it was learned from, the
        images it classified right when their turn came)."""
        with torch.no_grad():
            loss = self.task.loss(self.model(x), targets)
        mistakes = self.optimizer.step(images=x, labels=labels)
        if advance_schedule:
            self.errors += mistakes
            self.scheduler.step()
        return loss, len(labels) - mistakes

    def _gradient_step(self, x: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor, precision: str,
                       advance_schedule: bool, unit: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One gradient step on the normalized batch ``x`` (``unit``: the same images in [0, 1], for a teacher)."""
        accumulate = self.cfg.accumulate if advance_schedule else 1
        first = self.accumulated == 0 or not advance_schedule
        last = self.accumulated + 1 >= accumulate or not advance_schedule
        if first:
            self.optimizer.zero_grad(set_to_none=True)
        with self._gradient_sync(last):
            with autocast(self.device, precision):
                out = self.train_forward(x)
            loss = objective = self.task.train_loss(out, targets)
            out = main_logits(out)  # the auxiliary classifiers' logits (--aux-weight) serve the loss only
            if self.teacher is not None:
                objective, kd = self.teacher.blend(loss, out, unit, precision)
                self.kd_losses.append(kd)
            scaled = objective / accumulate if accumulate > 1 else objective
            (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
        if advance_schedule:
            self.accumulated = 0 if last else self.accumulated + 1
        if last:
            self._optimizer_step()
            if advance_schedule:
                self.scheduler.step()
                if self.ema is not None:
                    self.ema.update(self.model)
        return loss.detach(), self.task.hits(out, labels)

    def _gradient_sync(self, last: bool) -> contextlib.AbstractContextManager:
        """DDP averages gradients over the processes on the last batch of an accumulation only."""
        if last or not self.world.distributed:
            return contextlib.nullcontext()
        return getattr(self.train_forward, "_orig_mod", self.train_forward).no_sync()

    def _optimizer_step(self) -> None:
        if self.cfg.clip_grad is not None:
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)  # the norm of the true gradients, not the scaled ones
            params = [p for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
            self.grad_norms.append(torch.nn.utils.clip_grad_norm_(params, self.cfg.clip_grad).detach())
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()

    def train_epoch(self, epoch: int) -> dict[str, float]:
        total_loss = torch.zeros((), device=self.device)
        total_correct = torch.zeros((), dtype=torch.float64, device=self.device)  # the task's hits (may be shares)
        watch = DivergenceWatch(self.device)
        seen = 0
        start = time.perf_counter()
        title = f"epoch {epoch}/{self.epochs}"
        sync_every = 1 if self.device.type == "cpu" else 20
        used = self.optimizer_steps * self.cfg.accumulate  # batches that make whole optimizer steps
        self.grad_norms, self.kd_losses = [], []
        self.errors.zero_()
        with progress_bar(title, total=used * self.batches.batch_size, summary=False) as bar:
            for i, (images, labels) in enumerate(self.batches.epoch(self.order_gen)):
                if i >= used:
                    continue  # read to the end (a streamed epoch's reader finishes), not trained on
                loss, correct = self.step(images, labels)
                total_loss += loss * len(labels)
                total_correct += correct
                seen += len(labels)
                bar.advance(len(labels))
                watch.see(i, loss)
                if i % sync_every == 0:
                    watch.stop_if_diverged(epoch, self.divergence_advice)
                if i % 20 == 0:
                    bar.update(description=f"{title} loss {float(total_loss) / seen:.4f} "
                                           f"acc {float(total_correct) / seen:.3f}")
        watch.stop_if_diverged(epoch, self.divergence_advice)  # before anything of this epoch is saved
        seconds = time.perf_counter() - start
        loss_sum, correct, seen = self.world.sum(float(total_loss), float(total_correct), seen)  # over the processes
        row = {"train_loss": loss_sum / max(1, seen), "train_acc": correct / max(1, seen),
               "seconds": seconds, "images_per_s": seen / seconds}
        if self.rule:
            row["errors"] = int(self.errors)
        if self.grad_norms:
            row["grad_norm"] = float(torch.stack(self.grad_norms).float().mean())
        if self.kd_losses:
            row["kd_loss"] = float(torch.stack(self.kd_losses).float().mean())
        return row

    @property
    def divergence_advice(self) -> str:
        return advice(self.base_lr, self.precision)

    @property
    def steps_done(self) -> int:
        """Optimizer steps taken so far (the schedule counts them, and resumes with them)."""
        return int(self.scheduler.last_epoch)

    def recalibrate_batchnorm(self) -> int:
        """Running BatchNorm statistics from training images at eval-time preprocessing, while the run is
        short (see batchnorm.py); returns the number of layers recalibrated."""
        if self.steps_done >= RECALIBRATE_BELOW_STEPS:
            return 0
        images = self.data.train.images
        sample = images if len(self.recalibration) == len(images) else take(images, self.recalibration)
        done = recalibrate(self.model, sample, self.pre, self.precision, self.cfg.eval_batch_size, self.freezer.modules)
        if self.ema is not None:  # the average's own statistics, for its own weights (frozen layers keep theirs)
            names = {id(m): name for name, m in self.model.named_modules()}
            averaged = dict(self.ema.model.named_modules())
            recalibrate(self.ema.model, sample, self.pre, self.precision, self.cfg.eval_batch_size,
                        [averaged[names[id(m)]] for m in self.freezer.modules])
        return done

    def val_targets(self) -> np.ndarray:
        """This process's share of the val targets, in the order validate predicts them."""
        return self.task.targets(self.data.val)[self.world.rank::self.world.world_size]

    def validate(self, live: bool = False) -> tuple[float, float, np.ndarray]:
        """(val loss, val metric, probabilities) in eval mode, of the kept weights (``live``: of the trained
        model itself, with ``--ema``); each process of a distributed run takes its share of val."""
        model = self.forward if live else self.eval_forward
        probs, loss = predict_batches(model, self.val_batches.epoch(), self.pre, self.task, self.precision)
        labels = self.val_targets()
        loss_sum, n, *parts = self.world.sum(float(loss) * len(labels), len(labels),
                                             *self.task.score_parts(probs, labels))
        return loss_sum / n, self.task.score_total(parts), probs

    def validate_flipped(self, probs: np.ndarray | None = None) -> tuple[float, np.ndarray]:
        """The val metric with flip test-time augmentation (each image averaged with its mirror), and
        this process's probabilities; ``probs``: the model's own val probabilities, when at hand."""
        if probs is None:
            probs, _ = predict_batches(self.eval_forward, self.val_batches.epoch(), self.pre, self.task, self.precision)
        mirrored, _ = predict_batches(self.eval_forward, self.val_batches.epoch(), self.pre, self.task, self.precision,
                                      mirrored=True)
        probs = (probs + mirrored) / 2
        return self.task.score_total(self.world.sum(*self.task.score_parts(probs, self.val_targets()))), probs
