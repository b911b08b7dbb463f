"""``--teacher RUN``: knowledge distillation (Hinton, Vinyals and Dean 2015).

The teacher is a trained run, loaded once in eval mode. Each training step shows it the student's own
augmented (and mixed) batch, normalized with the teacher's statistics and resized to its input size, and
the step's loss becomes ``(1 - W) * task loss + W * KL`` of the two outputs softened at temperature T
(the task's :meth:`~cvkit.tasks.Task.distill`).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from cvkit.device import autocast
from cvkit.errors import ManifestError, OptionError
from cvkit.files.config import TrainConfig
from cvkit.files.run import ModelInfo
from cvkit.runtime import LoadedRun, load_run
from cvkit.tasks import Task

# Used when --teacher is given without them. W: the soft and the hard targets weigh the same (DeiT's soft
# distillation, timm's default); T: the temperature most distillation benchmarks use for CNNs (CRD, 2020).
DEFAULT_WEIGHT, DEFAULT_TEMPERATURE = 0.5, 4.0


class Teacher:
    """A trained run that scores each training batch; :meth:`blend` adds its term to the step's loss."""

    def __init__(self, run: LoadedRun, task: Task, weight: float, temperature: float) -> None:
        self.run, self.task, self.weight, self.temperature = run, task, weight, temperature
        self.run.model.requires_grad_(False)

    @classmethod
    def load(cls, cfg: TrainConfig, task: Task, classes: list[str], in_chans: int,
             device: torch.device) -> "Teacher":
        """The run ``cfg.teacher`` names, refused when its outputs cannot guide this run's."""
        path = cls.check(cfg, task)
        try:
            run = load_run(path, device)
        except ManifestError as e:
            raise OptionError(f"--teacher {path}: {e}") from None
        if run.task.name != task.name or run.classes != classes:
            raise OptionError(f"--teacher {path} predicts {run.task.name} over {len(run.classes)} classes and this run "
                              f"{task.name} over {len(classes)}: a teacher needs the same task and classes in the same "
                              f"order; train it on the same dataset")
        if run.info.num_outputs != task.num_outputs or run.info.loss != task.spec.loss:
            raise OptionError(f"--teacher {path} was trained with --loss {run.info.loss} and this run uses --loss "
                              f"{task.spec.loss}: their outputs are not comparable; give the same --loss")
        if run.in_chans != in_chans:
            raise OptionError(f"--teacher {path} takes {run.in_chans}-channel images and the dataset has {in_chans}; "
                              f"train the teacher on the same dataset")
        if run.info.score_maps or run.info.convolutional:
            raise OptionError(f"--teacher {path} was converted by 'cvkit convolutionalize'; give the run it came from")
        weight = cfg.kd_weight if cfg.kd_weight is not None else DEFAULT_WEIGHT
        temperature = cfg.kd_temperature if cfg.kd_temperature is not None else DEFAULT_TEMPERATURE
        return cls(run, task, weight, temperature)

    @staticmethod
    def check(cfg: TrainConfig, task: Task) -> Path:
        """What can be refused before any data is read: no run there, or a task without class scores."""
        path = Path(str(cfg.teacher))
        if not ModelInfo.present(path):
            raise OptionError(f"--teacher {path}: not a run directory (no model.json); give a run written by "
                              f"'cvkit train'")
        if not type(task).distills:
            raise OptionError(f"--teacher: --task {task.name} has no class scores to distil; distillation is for "
                              f"classify and multilabel runs")
        return path

    @torch.no_grad()
    def outputs(self, unit: torch.Tensor, precision: str) -> torch.Tensor:
        """The teacher's outputs for a batch in [0, 1] (N x C x H x W), at the student's precision."""
        size = self.run.input_size
        if tuple(unit.shape[2:]) != size:
            unit = F.interpolate(unit, size=size, mode="bilinear", align_corners=False,
                                 antialias=size[0] < unit.shape[2])
        with autocast(self.run.device, precision):
            return self.run.model(self.run.pre.normalize(unit))

    def blend(self, loss: torch.Tensor, outputs: torch.Tensor, unit: torch.Tensor,
              precision: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(the step's loss, the distillation term alone) for the student's ``outputs`` on ``unit``."""
        kd = self.task.distill(outputs, self.outputs(unit, precision), self.temperature)
        return (1 - self.weight) * loss + self.weight * kd, kd.detach()
