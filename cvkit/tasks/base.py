"""The interface every task implements.

A task object is built from the run's classes and its training options (:class:`TaskSpec`), and is
all the trainer, validation and inference need to know about what the outputs mean:

- ``targets(split)``: the split's targets as the trainer batches them, and ``check_train`` the refusal
  of training targets that cannot teach anything;
- ``num_outputs``: the head's width;
- ``train_targets(labels)``: what the loss compares the outputs with (soft targets, so label smoothing,
  mixup and cutmix work on them), and ``mixes``: whether mixing images may mix those targets;
- ``loss(outputs, targets)``: the mean loss of a batch, and ``train_loss``: the training loss, which adds
  the auxiliary classifiers' losses (``--aux-weight``) where the net makes them;
- ``hits(outputs, labels)``: the training metric's count for a batch (correct predictions);
- ``probabilities(outputs)``: what inference returns for each image;
- ``metric`` and ``score(probs, labels)``: the val figure that picks the best epoch (``val_<metric>``
  in metrics.csv), and ``better(value, best)``: its direction;
- ``metrics(probs, labels)``: evaluate's figures (metrics.json), ``summary_keys`` the few an ensemble
  lists per member; ``write_evaluation``: evaluate's other files (predictions.csv and the task's tables
  and pictures); ``prediction_table`` and ``top``: what predict writes and prints;
- ``calibrate(probs, targets)``: what the task learns on val for the best epoch (multi-label thresholds),
  kept in model.json as ``task_state`` with ``state()`` (what inference needs besides: regress's target
  names and statistics), and given back through ``TaskSpec.state``;
- ``fit_targets(targets)``: what the task learns from the train split's targets before training;
- ``flip_back``, ``view_back`` and ``undoes``: what a test-time view (a mirror, shift, zoom) predicts,
  moved back to the image's own frame, and which views the task can move back;
- ``scaling``, ``tempered``, ``nll``, ``reliability`` and ``set_temperature``: temperature scaling of the
  logits (``evaluate --calibrate``, tasks/calibration.py), for the tasks whose outputs are class scores;
- ``moves`` and ``move(labels, matrices, size)``: targets that are positions in the image (boxes,
  keypoints) follow the geometric augmentation; ``check_policy`` refuses augmentation a task's targets
  cannot follow.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from cvkit.errors import OptionError
from cvkit.models.auxiliary import AuxOutputs
from cvkit.transforms.views import View


@dataclass
class TaskSpec:
    """The options a task is built from: the run's classes and the training options that shape its loss."""

    classes: list[str]
    loss: str = "ce"
    label_smoothing: float = 0.0
    state: dict[str, Any] | None = None  # what the task learned on val (model.json's "task_state")
    # The dataset's target options (dataset.json: targets, keypoints, flip_pairs) and train's task options
    # (alpha, box_loss); None or absent: the task's defaults.
    options: dict[str, Any] | None = None
    aux_weight: float = 0.0  # --aux-weight: each auxiliary classifier's loss counts this much in training


class Task(ABC):
    name: ClassVar[str] = ""
    metric: ClassVar[str] = ""  # the val metric that picks the best epoch
    higher_is_better: ClassVar[bool] = True
    mixes: ClassVar[bool] = True  # mixup and cutmix may blend this task's targets
    moves: ClassVar[bool] = False  # the targets are positions in the image: geometric augmentation moves them
    dense: ClassVar[bool] = False  # per-pixel targets (N x P x H x W planes) that augmentation moves with the image
    pastes: ClassVar[bool] = False  # cutmix may paste this task's (per-pixel) targets though mixup cannot blend them
    outputs_are: ClassVar[str] = "classes"  # what ``classes`` names, in messages (regress: "targets")
    one_class: ClassVar[bool] = False  # the target is one class index per image, nothing else (the perceptron rule's)
    default_label_smoothing: ClassVar[float] = 0.0  # what --label-smoothing is when it is not given
    own_options: ClassVar[tuple[str, ...]] = ()  # train options only this task takes (TrainConfig field names)
    distills: ClassVar[bool] = False  # --teacher: the outputs are class scores a teacher's soft ones can guide
    summary_keys: ClassVar[tuple[str, ...]] = ()  # the metrics an ensemble lists per member
    headline: ClassVar[tuple[tuple[str, str], ...]] = ()  # (metrics.json key, column title) evaluate prints
    # What temperature scaling fits: "temperature" (one for all outputs), "per-class temperature"; None: refused
    scaling: ClassVar[str | None] = None

    def __init__(self, spec: TaskSpec) -> None:
        self.spec = spec
        self.temperature: np.ndarray | None = None  # calibration.json's: inference goes through ``tempered`` then

    # ------------------------------------------------------------------ temperature scaling

    def temperature_size(self) -> int:
        """How many temperatures ``scaling`` fits: one, or one per class."""
        return len(self.classes) if self.scaling == "per-class temperature" else 1

    def set_temperature(self, temperature: np.ndarray | list[float] | None) -> None:
        """Scale the probabilities by ``temperature`` from now on (None: the raw ones); what the runtime
        passes to ``tempered``."""
        if temperature is not None:
            temperature = np.asarray(temperature, dtype=np.float64)
            if temperature.shape != (self.temperature_size(),):
                raise ValueError(f"{self.name} takes {self.temperature_size()} temperature(s), got {temperature.shape}")
        self.temperature = temperature

    def tempered(self, views: list[torch.Tensor], temperature: torch.Tensor | None) -> torch.Tensor:
        """The probabilities (float64) of the logits ``views``: one, or an image's and its mirror's (averaged as
        flip TTA averages probabilities), with their log-odds divided by ``temperature`` (None: as they are).
        With one view that is dividing the logits themselves."""
        raise OptionError(f"temperature scaling is not available for --task {self.name}")

    def nll(self, probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The mean negative log-likelihood of ``targets`` under ``probs``: what a temperature is fit to lower."""
        raise OptionError(f"temperature scaling is not available for --task {self.name}")

    def reliability(self, probs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(confidence, outcome) pairs the reliability diagram and the ECE bin: how sure each decision was,
        and 1 where it was right."""
        raise OptionError(f"temperature scaling is not available for --task {self.name}")

    @property
    def classes(self) -> list[str]:
        return self.spec.classes

    @abstractmethod
    def targets(self, split: Any) -> np.ndarray:
        """The targets of a :class:`~cvkit.data.cache.SplitData`, one row per image, as the trainer batches them."""

    def check_train(self, split: Any, where: str) -> None:
        """Refuse training targets that cannot teach this task (``where``: the selection, for the message)."""

    def calibrate(self, probs: np.ndarray, targets: np.ndarray) -> dict[str, Any]:
        """What to learn on val for the best epoch (kept in model.json); nothing by default."""
        return {}

    def state(self) -> dict[str, Any]:
        """What inference needs besides the weights and what ``calibrate`` learned (model.json's task_state)."""
        return {}

    def fit_targets(self, targets: np.ndarray) -> None:
        """Learn what the loss needs from the train split's targets (regress: their mean and std)."""

    def check_policy(self, policy: Any) -> None:
        """Refuse augmentation this task's targets cannot follow, naming the transform and the fix."""
        if self.pastes and policy.mixup:
            raise OptionError(f"mixup blends two images, and --task {self.name} cannot blend its per-pixel classes "
                              f"(cutmix, which pastes a box of both, is fine); set it to 0 in the policy (cvkit "
                              f"augment DATASET --mixup 0)")
        if not self.mixes and not self.pastes and policy.mixes:
            raise OptionError(f"mixup and cutmix blend two images, and --task {self.name} cannot blend its targets; "
                              f"set them to 0 in the policy (cvkit augment DATASET --mixup 0 --cutmix 0)")
        if (self.moves or self.dense) and policy.auto != "none":
            raise OptionError(f"the automatic policy {policy.auto} shears, shifts and turns images without moving "
                              f"their targets, so --task {self.name} cannot use it; set --auto none in the policy "
                              f"(cvkit augment DATASET --auto none)")
        if self.moves and policy.elastic:
            raise OptionError(f"elastic deformation moves every pixel its own way, so --task {self.name}'s targets "
                              f"cannot follow it; set --elastic 0 in the policy (cvkit augment DATASET --elastic 0)")

    def move(self, labels: torch.Tensor, matrices: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """The batch's targets after geometric augmentation (``matrices``: each image's output-to-source
        matrix, see transforms/points.py; ``size``: height, width); unchanged unless the task ``moves``."""
        return labels

    def set_threshold(self, threshold: float) -> None:
        """``--threshold``: one decision threshold for every class, over what was learned on val."""
        raise OptionError(f"--threshold is not available for --task {self.name}: it decides no threshold")

    def weigh_positives(self, targets: np.ndarray) -> None:
        """``--pos-weight auto``: weigh each class's positives by its negatives in the train split."""
        raise OptionError(f"--pos-weight auto is not available for --task {self.name}")

    @property
    @abstractmethod
    def num_outputs(self) -> int:
        """See the module docstring."""

    @abstractmethod
    def train_targets(self, labels: torch.Tensor) -> torch.Tensor:
        """See the module docstring."""

    @abstractmethod
    def eval_targets(self, labels: torch.Tensor) -> torch.Tensor:
        """Targets for the validation loss: as for training, without smoothing."""

    @abstractmethod
    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """See the module docstring."""

    def distill(self, outputs: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
        """The loss that pulls ``outputs`` toward a teacher's outputs for the same batch (``--teacher``); only
        tasks that set ``distills`` have one."""
        raise OptionError(f"--teacher: --task {self.name} has no class scores to distil; distillation is for "
                          f"classify and multilabel runs")

    def train_loss(self, outputs: torch.Tensor | AuxOutputs, targets: torch.Tensor) -> torch.Tensor:
        """The loss of a training step: :meth:`loss` of the logits, plus ``aux_weight`` times the loss of each
        auxiliary classifier's logits when the net makes them (GoogLeNet's, while training)."""
        if not isinstance(outputs, AuxOutputs):
            return self.loss(outputs, targets)
        loss = self.loss(outputs.logits, targets)
        for aux in outputs.aux:
            loss = loss + self.spec.aux_weight * self.loss(aux, targets)
        return loss

    @abstractmethod
    def hits(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """See the module docstring."""

    @abstractmethod
    def probabilities(self, outputs: torch.Tensor) -> torch.Tensor:
        """See the module docstring."""

    @abstractmethod
    def score(self, probs: np.ndarray, labels: np.ndarray) -> float:
        """The val metric over these images."""

    def score_parts(self, probs: np.ndarray, labels: np.ndarray) -> list[float]:
        """What a distributed validation sums over the processes to get the val metric of all their shares
        (:meth:`score_total`): by default the metric times the share's images, and the images."""
        return [self.score(probs, labels) * len(labels), float(len(labels))]

    def score_total(self, parts: list[float]) -> float:
        """The val metric from the summed :meth:`score_parts`."""
        return parts[0] / parts[1] if parts[1] else 0.0

    def keep(self, probs: torch.Tensor) -> torch.Tensor:
        """What inference keeps of a batch's probabilities (on the CPU, as numpy afterwards): float64 by
        default; per-pixel probabilities take float16, a mask's worth of them per class and image."""
        return probs.double()

    def check_model(self, arch: str, model: torch.nn.Module) -> None:
        """Refuse an architecture whose outputs cannot be this task's: a dense (per-pixel) net for a task
        of one answer per image."""
        if getattr(model, "dense", False):
            raise OptionError(f"--arch {arch} predicts a class per pixel, and --task {self.name} predicts per image; "
                              f"train it on a dataset prepared with --masks (--task segment), or pick a classifier "
                              f"architecture")

    @abstractmethod
    def metrics(self, probs: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
        """evaluate's figures, under the task's stable keys (docs/tasks.md)."""

    @abstractmethod
    def prediction_table(self, paths: list[str], probs: np.ndarray, labels: np.ndarray | None = None,
                         frames: np.ndarray | None = None) -> Any:
        """predictions.csv as a DataFrame: one row per image (with its label when known). ``frames``
        (N x 4: sx, sy, ox, oy) puts positions the task predicts in normalized coordinates (0..1 across
        the network's input) into pixels: ``x * sx + ox``, ``y * sy + oy`` (evaluate: the cache's pixels;
        predict: each image file's); None: the task has no positions, or the network input's pixels."""

    def confusion(self, probs: np.ndarray, labels: np.ndarray) -> np.ndarray | None:
        """K x K counts of (true, predicted) class over these images, rows the true class (``train --log``
        pictures it each epoch); None: the task has no one predicted class to count."""
        return None

    def mismatch(self, split: Any) -> str | None:
        """Why a dataset's ``split`` cannot score this run (evaluate, visualize), or None when its targets
        are the run's: by default the same classes in the same order."""
        return None if split.classes == self.classes else "its classes.json differs from the run's classes"

    @property
    def class_outputs(self) -> int | None:
        """How many leading outputs score the classes when the head has more (localize's box outputs
        follow them); None: every output is a class score. cam explains only class scores."""
        return None

    def draw(self, images: np.ndarray, probs: np.ndarray, names: list[str], folder: Path) -> list[str]:
        """predict's pictures of what the task predicts on each image (``names``: a file stem per image,
        ``images``: the network's inputs, N x H x W x C uint8), written into ``folder``; the files written.
        Nothing by default: class scores need no picture."""
        return []

    def flip_back(self, probs: torch.Tensor) -> torch.Tensor:
        """What ``probabilities`` of a horizontally flipped image say about the image itself (predict
        --tta averages both): class scores stay, positions are mirrored back."""
        return probs

    def undoes(self, kind: str) -> bool:
        """Whether :meth:`view_back` can say what a test-time view of ``kind`` (flip, shift, scale:
        :mod:`cvkit.transforms.views`) predicts about the image itself; ``--tta`` refuses the others."""
        return True

    def view_back(self, probs: torch.Tensor, view: View) -> torch.Tensor:
        """What ``probabilities`` of a test-time view say about the image itself (evaluate and predict
        --tta average them): class scores are the same on every view, a flip's positions go through
        :meth:`flip_back`; a task whose outputs are positions moves them back from shifts and zooms."""
        return self.flip_back(probs) if view.kind == "flip" else probs

    @abstractmethod
    def top(self, probs: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """Each image's ``k`` best answers with their scores, for predict's summary."""

    @abstractmethod
    def write_evaluation(self, stage: Path, probs: np.ndarray, split: Any, top_n: int) -> None:
        """evaluate's files besides metrics.json, into ``stage``; ``top_n`` worst predictions shown."""

    @classmethod
    def label_sets(cls, frame: Any) -> list[list[str]] | None:
        """Each manifest row's labels, for splits and folds stratified over several labels per image;
        None: one label per row (the ``label`` column), stratified class by class."""
        return None

    @classmethod
    def trains_on(cls, dataset_task: str) -> bool:
        """Whether a dataset prepared for ``dataset_task`` holds this task's targets (``train --task``)."""
        return dataset_task == cls.name

    def sampling_groups(self, targets: np.ndarray) -> np.ndarray:
        """``--sampler``: N x G booleans, image i in group g (its class, its labels), the groups sampling balances."""
        raise OptionError(f"--sampler balances classes, and --task {self.name} has none to balance; leave --sampler out")

    def weigh_classes(self, labels: np.ndarray) -> None:
        """``--class-weights auto``: weigh the loss by the classes' frequencies in ``labels`` (the train split)."""
        raise OptionError(f"--class-weights auto is not available for --task {self.name}")

    @property
    def metrics_columns(self) -> tuple[str, ...]:
        """metrics.csv's columns for this task: the val metric is ``val_<metric>`` (``val_acc`` for classify)."""
        return ("epoch", "train_loss", "train_acc", "val_loss", f"val_{self.metric}", "lr", "seconds", "images_per_s")

    def monitor(self, option: str) -> str:
        """The metrics.csv column ``--monitor`` names: val_loss, or the task's val metric (``val_acc``, the
        default, stands for it whatever the task)."""
        return option if option == "val_loss" else f"val_{self.metric}"

    def better(self, monitor: str, value: float, best: float | None) -> bool:
        """Whether ``value`` of the monitored metric beats ``best``: the task's metric in its direction,
        losses downwards; a value that is not finite never wins."""
        if not math.isfinite(value):
            return False
        if best is None:
            return True
        up = monitor == f"val_{self.metric}" and self.higher_is_better
        return value > best if up else value < best
