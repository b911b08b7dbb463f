"""Every option of ``cvkit train``, in one dataclass that ``config.json`` records."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from cvkit.errors import OptionError
from cvkit.train.losses import LOSSES
from cvkit.train.optim import OPTIMIZERS, SCHEDULES

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")


@dataclass
class TrainConfig:
    data: str
    out: str
    arch: str = "smallcnn"
    # model
    head: str = "auto"
    activation: str | None = None
    dropout: float | None = None
    batchnorm: bool | None = None
    hidden: list[int] | None = None
    init: str = "default"
    pretrained: bool = False
    weights: str | None = None
    freeze: str | None = None  # "backbone" or the number of last blocks left trainable
    unfreeze_after: int | None = None
    backbone_lr_scale: float = 0.1
    # optimisation
    epochs: int = 5
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float | None = None  # None: the optimizer's default (sgd 0.1, adam/adamw 3e-3) scaled by batch size / 128
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float | None = None  # None: sgd 5e-4, adam 0, adamw 0.05
    schedule: str = "onecycle"
    warmup: float = 0.0  # epochs
    step_size: int = 30
    gamma: float = 0.1
    label_smoothing: float = 0.0
    loss: str = "ce"
    class_weights: str | None = None  # "auto"
    patience: int | None = None
    monitor: str = "val_acc"
    # data and augmentation
    size: list[int] | None = None
    hflip: float = 0.5
    # Pad-and-crop is off by default: on Fashion-MNIST it cost 0.3-0.4 points of test accuracy in
    # 5-6 epoch runs (the net underfits that soon); --translate 0.0625 (2 px at 28 px) for long runs.
    translate: float = 0.0
    # speed
    precision: str = "auto"
    memory_format: str = "auto"
    compile: bool = False
    eval_batch_size: int = 512
    # run
    seed: int = 0
    device: str = "auto"
    resolved: dict[str, Any] = field(default_factory=dict)  # what "auto" became, filled in by fit

    def check(self) -> None:
        choices = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "loss": LOSSES, "precision": PRECISIONS,
                   "memory_format": MEMORY_FORMATS, "monitor": ("val_acc", "val_loss"), "head": ("auto", "fc", "gap"),
                   "init": ("default", "xavier", "he", "normal")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                flag = "--" + name.replace("_", "-")
                raise OptionError(f"{flag} {getattr(self, name)} must be one of {', '.join(allowed)}")
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise OptionError(f"--{name.replace('_', '-')} must be at least 1")
        if self.weight_decay is not None and self.weight_decay < 0:
            raise OptionError(f"--weight-decay {self.weight_decay} must be 0 or more")
        if self.lr is not None and not self.lr > 0:
            raise OptionError(f"--lr {self.lr} must be positive")
        if not 0 <= self.label_smoothing < 1:
            raise OptionError(f"--label-smoothing {self.label_smoothing} must be from 0 to below 1")
        if self.class_weights not in (None, "auto"):
            raise OptionError(f"--class-weights {self.class_weights} must be 'auto' (or left out)")
        if self.freeze not in (None, "backbone") and not str(self.freeze).isdigit():
            raise OptionError(f"--freeze {self.freeze} must be 'backbone' or a number of blocks to train")
        if self.patience is not None and self.patience < 1:
            raise OptionError("--patience must be at least 1")
        if self.pretrained and self.weights:
            raise OptionError("--pretrained and --weights both give starting weights; pick one")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def model_options(self) -> dict[str, Any]:
        """The options that change the architecture (rebuilt from model.json by every later command)."""
        return {"head": self.head, "activation": self.activation, "dropout": self.dropout,
                "batchnorm": self.batchnorm, "hidden": self.hidden}
