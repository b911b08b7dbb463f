"""The named steps that build a training run: its data, model, epochs, optimizer and schedule.

Each step is a small function of the config and what the steps before it made, so ``fit``,
``lr_find`` and ``crossval`` assemble the same run from the same parts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cvkit.data.cache import SplitData
from cvkit.data.selection import Selection, load_selection
from cvkit.errors import ManifestError, OptionError
from cvkit.files.config import TrainConfig
from cvkit.files.dataset import AugmentFile, DatasetInfo, Stats, read_classes, read_manifest
from cvkit.progress import info
from cvkit.tasks import Task, TaskSpec, create_task, task_names
from cvkit.tasks.registry import TASKS
from cvkit.train import perceptron
from cvkit.train.optim import DEFAULT_LR, DEFAULT_WEIGHT_DECAY, lr_multiplier, make_optimizer, param_groups
from cvkit.transforms.policy import AugmentPolicy, read_augment, with_values
from cvkit.transforms.stats import image_stats

# --epochs auto: train for at least this many optimizer steps, but never fewer than DEFAULT_EPOCHS
# epochs (Fashion-MNIST's 421 steps per epoch keep their 5 epochs) nor more than MAX_AUTO_EPOCHS.
# MIN_STEPS was chosen on the val split of scikit-learn's digits (11 steps per epoch), where val
# accuracy rose up to about 400 steps and no further (bench/results/small_data.json). DEFAULT_EPOCHS for
# the default net (smallcnn --base 16) on Fashion-MNIST's val split, as evaluated with the flip TTA
# that training chooses on val: 5 epochs scored as high as 6 over four seeds (the two rows of today's
# defaults with --epochs 5 and 6, same code and seeds) and as 8, in less time (bench/results/recipe_val.json).
DEFAULT_EPOCHS = 5
MIN_STEPS = 400
MAX_AUTO_EPOCHS = 100


@dataclass
class TrainingData:
    """What a run trains and validates on, at one size, with its normalization and augmentation."""

    dataset: Path
    info: DatasetInfo
    train: SplitData
    val: SplitData | None
    train_selection: Selection
    val_selection: Selection | None
    stats: Stats
    mean_image: np.ndarray | None
    policy: AugmentPolicy
    policy_source: str = "default"  # where the policy came from (config.json's resolved.augment_source)

    @property
    def classes(self) -> list[str]:
        return self.train.classes

    @property
    def input_size(self) -> tuple[int, int]:
        return int(self.train.images.shape[1]), int(self.train.images.shape[2])

    @property
    def in_chans(self) -> int:
        return int(self.train.images.shape[3])


def default_selections(dataset: Path) -> tuple[Selection, Selection | None]:
    """The train split, and the val split when the dataset has one."""
    has_val = bool((read_manifest(dataset)["split"] == "val").any())
    return Selection.of_split("train"), (Selection.of_split("val") if has_val else None)


def load_data(cfg: TrainConfig, train: Selection, val: Selection | None, task: Task) -> TrainingData:
    """The selections' images and targets (refused when ``task`` can learn nothing from them), their
    normalization and the augmentation policy; ``--class-weights``/``--pos-weight auto`` weigh ``task``."""
    dataset = Path(cfg.data)
    dataset_info = DatasetInfo.read(dataset)
    size = tuple(cfg.size) if cfg.size else None
    train_data = load_selection(dataset, train, size)
    input_size = (int(train_data.images.shape[1]), int(train_data.images.shape[2]))
    val_data = load_selection(dataset, val, input_size) if val is not None else None
    task.check_train(train_data, f"{dataset}: {train.describe()}")  # before the statistics take their time
    if cfg.class_weights == "auto":
        task.weigh_classes(task.targets(train_data))
    if cfg.pos_weight == "auto":
        task.weigh_positives(task.targets(train_data))
    task.fit_targets(task.targets(train_data))
    stats, mean_image = training_stats(dataset, train, train_data)
    policy, source = resolve_policy(cfg)
    task.check_policy(policy)
    return TrainingData(dataset, dataset_info, train_data, val_data, train, val, stats, mean_image, policy, source)


# Without a policy file, train flips horizontally half the time and nothing else (Fashion-MNIST val
# accuracy, bench/results/defaults_val.json).
DEFAULT_POLICY = AugmentPolicy(hflip=0.5)


def resolve_policy(cfg: TrainConfig) -> tuple[AugmentPolicy, str]:
    """The augmentation ``--augment`` names (the dataset's augment.json, none, or a policy file), with
    ``--hflip`` / ``--translate`` on top when given; and where it came from, for config.json."""
    if cfg.augment == "none":
        policy, source = AugmentPolicy(), "none"
    elif cfg.augment == "dataset":
        found = read_augment(cfg.data)
        policy, source = (found, str(AugmentFile.locate(cfg.data))) if found else (DEFAULT_POLICY, "default")
    else:
        found = read_augment(cfg.augment)
        if found is None:  # a folder without augment.json
            raise OptionError(f"--augment {cfg.augment}: no augment.json there; give 'dataset', 'none' or a "
                              f"policy file written by 'cvkit augment'")
        policy, source = found, str(AugmentFile.locate(cfg.augment))
    given = {k: v for k, v in (("hflip", cfg.hflip), ("translate", cfg.translate)) if v is not None}
    if not given:
        return policy, source
    return with_values(policy, **given), f"{source} + options"


def training_stats(dataset: Path, selection: Selection, data: SplitData) -> tuple[Stats, np.ndarray | None]:
    """Normalization statistics of the images trained on: ``stats.json`` when it describes them (or is a
    pretrained model's), else computed now over the training images only."""
    in_chans = int(data.images.shape[3])
    if Stats.exists(dataset):
        stats = Stats.read(dataset)
        if len(stats.mean) != in_chans:
            raise ManifestError(f"{dataset}/stats.json has {len(stats.mean)} channel(s), the images have "
                                f"{in_chans}; rerun 'cvkit normalize {dataset}'")
        if stats.source != "computed" or selection.whole_split == stats.split:
            mean_image = np.load(dataset / stats.mean_image) if stats.mean_image else None
            return stats, mean_image
        pixel = stats.mode == "pixel"
    else:
        pixel = False
        info(f"[yellow]{dataset}/stats.json is missing:[/] using statistics of the training images computed now "
             f"(store them with 'cvkit normalize {dataset}')")
    mean, std, mean_image = image_stats(data.images, pixel)
    n, h, w, c = data.images.shape
    return Stats(mean, std, selection.describe(), int(n), [h, w], c, "pixel" if pixel else "channel"), mean_image


def build_model(cfg: TrainConfig, data: TrainingData, num_outputs: int, device: torch.device) -> nn.Module:
    from cvkit.models import check_input_size, create_model, load_weights

    model = create_model(cfg.arch, num_outputs, data.in_chans, data.input_size, init=cfg.init,
                         pretrained=cfg.pretrained, aux=cfg.aux_weight > 0, **cfg.model_options())
    check_input_size(cfg.arch, model, data.in_chans, data.input_size)
    if cfg.weights:
        report = load_weights(model, cfg.weights)
        info(f"--weights {cfg.weights}: {report['loaded']} tensors loaded, {len(report['skipped'])} skipped "
             f"(shape differs), {len(report['missing'])} left at their initial values")
    return model.to(device)


def plan_batch(cfg: TrainConfig, n_train: int, processes: int = 1) -> int:
    """The (global) batch size: ``--batch-size``, but never more images than the training set has
    (rounded down to a multiple of the number of processes of a distributed run)."""
    if cfg.batch_size > n_train:
        batch = max(processes, n_train - n_train % processes)
        info(f"--batch-size {cfg.batch_size} is more than the {n_train} training images: using batches of {batch}")
        return batch
    return cfg.batch_size


def optimizer_steps(cfg: TrainConfig, batches: int) -> int:
    """Optimizer steps an epoch of ``batches`` takes: one per ``--accumulate`` batches."""
    if batches < cfg.accumulate:
        raise OptionError(f"--accumulate {cfg.accumulate} is more than the {batches} batch(es) of an epoch: give at most "
                          f"{batches}, or a smaller --batch-size")
    return batches // cfg.accumulate


def plan_epochs(cfg: TrainConfig, steps_per_epoch: int) -> tuple[int, str]:
    """How many epochs, and why (printed at the start of the run)."""
    if cfg.epochs != "auto":
        return int(cfg.epochs), "--epochs"
    wanted = math.ceil(MIN_STEPS / max(1, steps_per_epoch))
    epochs = min(MAX_AUTO_EPOCHS, max(DEFAULT_EPOCHS, wanted))
    if epochs == DEFAULT_EPOCHS:
        why = f"--epochs auto: {DEFAULT_EPOCHS} epochs of {steps_per_epoch} steps"
    elif epochs == MAX_AUTO_EPOCHS and wanted > MAX_AUTO_EPOCHS:
        why = f"--epochs auto: {epochs} epochs (the most auto chooses) of {steps_per_epoch} steps"
    else:
        why = f"--epochs auto: {epochs} epochs of {steps_per_epoch} step(s), so that training takes {MIN_STEPS}+ steps"
    return epochs, why


def base_lr(cfg: TrainConfig, batch_size: int) -> float:
    """``--lr``, or the optimizer's default lr per 128 images scaled to the images of an optimizer step
    (the batch size times ``--accumulate``)."""
    if cfg.lr is not None:
        return cfg.lr
    if cfg.optimizer == perceptron.NAME:  # one image at a time: eta does not scale with the batch
        return perceptron.DEFAULT_LR
    return DEFAULT_LR[cfg.optimizer] * batch_size * cfg.accumulate / 128


def build_optimizer(cfg: TrainConfig, model: nn.Module, backbone: set[str], lr: float) -> torch.optim.Optimizer:
    if cfg.optimizer == perceptron.NAME:  # the learning rule, from zero weights unless --weights gave some
        return perceptron.PerceptronRule(model, lr, zero=not cfg.weights)
    decay = cfg.weight_decay if cfg.weight_decay is not None else DEFAULT_WEIGHT_DECAY[cfg.optimizer]
    groups = param_groups(model, decay, lr, backbone if cfg.freeze else None, cfg.backbone_lr_scale)
    return make_optimizer(cfg.optimizer, groups, lr, cfg.momentum, cfg.nesterov)


def build_schedule(cfg: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int,
                   epochs: int, start_step: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    """The lr schedule over ``epochs``; ``start_step`` > 0 rebuilds it mid-run (``--budget`` replans)."""
    schedule = "none" if cfg.optimizer == perceptron.NAME else cfg.schedule  # the rule's eta is constant
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_multiplier(schedule, steps_per_epoch * epochs, steps_per_epoch,
                                 round(cfg.warmup * steps_per_epoch), cfg.step_size, cfg.gamma),
        last_epoch=start_step - 1)


def draw_weights(cfg: TrainConfig, task: Task, data: TrainingData) -> np.ndarray | None:
    """``--sampler``: each training image's chance to be drawn (None: each once an epoch), said once."""
    if cfg.sampler == "none":
        return None
    from cvkit.data.sampling import group_counts, sample_weights

    groups = task.sampling_groups(task.targets(data.train))
    weights = sample_weights(groups, cfg.sampler)
    images, draws = group_counts(groups, weights)
    rare = int(np.argmin(np.where(images > 0, images, np.inf)))
    cfg.resolved.sampler_draws = [round(float(d), 1) for d in draws]
    info(f"--sampler {cfg.sampler}: the rarest group ({images[rare]:,} images) is drawn about {draws[rare]:,.0f} "
         f"times an epoch, the most common ({images.max():,}) about {draws[int(np.argmax(images))]:,.0f}")
    return weights


def build_task(cfg: TrainConfig) -> Task:
    """The dataset's task, or ``--task`` where the dataset holds its targets (a simpler task)."""
    dataset = Path(cfg.data)
    prepared = DatasetInfo.read(dataset).task
    name = cfg.task or prepared
    if name not in TASKS:
        raise OptionError(f"--task {name} must be one of {', '.join(task_names())}")
    if not TASKS[name].trains_on(prepared):
        raise OptionError(f"--task {name}: {dataset} was prepared for {prepared}, whose targets do not fit "
                          f"{name}; leave --task out, or prepare the source again with --task {name}")
    info = DatasetInfo.read(dataset)
    given = {"alpha": cfg.alpha, "box_loss": cfg.box_loss, "border_weight": cfg.border_weight, "dice": cfg.dice or None}
    for option, value in given.items():
        owner = next((task for task in TASKS.values() if option in task.own_options), None)
        if value is not None and owner is not None and owner is not TASKS[name]:
            raise OptionError(f"--{option.replace('_', '-')} is an option of --task {owner.name}, and this run is "
                              f"{name}; leave it out")
    options = {"targets": info.targets, "keypoints": info.keypoints, "flip_pairs": info.flip_pairs, **given}
    smoothing = TASKS[name].default_label_smoothing if cfg.label_smoothing is None else cfg.label_smoothing
    cfg.resolved.label_smoothing = smoothing
    return create_task(name, TaskSpec(read_classes(dataset), cfg.loss, smoothing, options=options,
                                      aux_weight=cfg.aux_weight))
