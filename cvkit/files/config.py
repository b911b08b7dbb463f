"""``config.json``: every option of ``cvkit train``, defined once.

Each field of :class:`TrainConfig` carries its help text and help panel as metadata; the CLI builds
``cvkit train``'s options from these fields (and ``crossval`` will reuse them), so a default or a
help text lives in one place. This module imports nothing heavy: the CLI reads it at start-up.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from cvkit.checks import check_seed, finite_fields
from cvkit.errors import ManifestError, OptionError
from cvkit.files.jsonio import from_json, read_json, write_json
from cvkit.files.resolved import Resolved
from cvkit.files.logs import LOGS, check_log

OPTIMIZERS = ("sgd", "adam", "adamw", "perceptron")
SCHEDULES = ("onecycle", "cosine", "step", "none")
SAMPLERS = ("none", "balanced", "sqrt")
LOSSES = ("ce", "bce", "mse", "l1", "smooth_l1")
BOX_LOSSES = ("smooth_l1", "giou")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
PADDINGS = ("valid", "same")  # unet's convolutions
DECODERS = ("fcn8s", "transposed")
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")
HEADS = ("auto", "fc", "gap", "gmp")
INITS = ("default", "xavier", "he", "normal")
MONITORS = ("val_acc", "val_loss")

MODEL, OPTIM, AUGMENT, SPEED = "Model", "Optimization", "Augmentation", "Speed"

# hflip and translate are fields of the augmentation policy (transforms/policy.py) that train also takes
# as options over the policy's: their help and their range are written once, here, for both.
HFLIP_HELP = "Probability of a horizontal flip (0 for digits and text: a mirrored 2 is not a 2)."
TRANSLATE_HELP = "Largest shift, as a fraction of the size (0.1: 10%)."


def check_flip_and_shift(hflip: float | None, translate: float | None, at: str = "") -> None:
    """The ranges of ``--hflip`` (a probability) and ``--translate`` (below half the size)."""
    if hflip is not None and not 0 <= hflip <= 1:
        raise OptionError(f"{at}--hflip {hflip} must be a probability from 0 to 1")
    if translate is not None and not 0 <= translate < 0.5:
        raise OptionError(f"{at}--translate {translate} must be a fraction from 0 to below 0.5")


def option(default: Any, help: str, panel: str | None = None, flags: str | None = None, cli: bool = True,
           cli_type: type | None = None) -> Any:
    """A config field that is also a ``cvkit train`` option (``flags`` overrides the ``--name`` spelling,
    ``cli_type`` the type the command line reads, e.g. str for ``--hidden 512,256``)."""
    return field(default=default, metadata={"help": help, "panel": panel, "flags": flags, "cli": cli,
                                            "cli_type": cli_type})


def internal(default: Any = None, factory: Any = None) -> Any:
    """A config field that is not a command-line option."""
    if factory is not None:
        return field(default_factory=factory, metadata={"cli": False})
    return field(default=default, metadata={"cli": False})


def parse_border_weight(text: str) -> tuple[float, float]:
    """``--border-weight 10,5`` -> (w0, sigma): U-Net's border weight and its width in pixels."""
    parts = str(text).split(",")
    try:
        w0, sigma = (float(v) for v in parts)
    except ValueError:
        w0 = sigma = float("nan")
    if not (math.isfinite(w0) and math.isfinite(sigma) and w0 >= 0 and sigma > 0):
        raise OptionError(f"--border-weight {text} must be W0,SIGMA: a weight of 0 or more and a width in pixels above "
                          f"0, for example --border-weight 10,5 (the U-Net paper's)")
    return w0, sigma


@dataclass
class TrainConfig:
    data: str = internal("")
    out: str = internal("")
    task: str | None = option(None, "What to predict (default: the task the dataset was prepared for); a simpler task "
                                    "the dataset's targets allow, e.g. classify on a localize dataset.", MODEL)
    arch: str = option("smallcnn", "Architecture: see 'cvkit models'.", MODEL)
    head: str = option("auto", "auto (the architecture's own), fc (classic fully connected), gap (global "
                               "average pooling + one linear layer) or gmp (global max pooling + one linear "
                               "layer).", MODEL)
    activation: str | None = option(None, "relu, leaky_relu[:SLOPE] (default slope 0.01; the classic choice is 0.1), "
                                          "elu[:ALPHA], tanh, sigmoid, gelu, or maxout:K (cvkit's own nets: each "
                                          "unit the max of K linear pieces, the layer before made K times wider).",
                                    MODEL)
    dropout: float | None = option(None, "Dropout probability.", MODEL)
    batchnorm: bool | None = option(None, "Batch normalization (cvkit's own nets).", MODEL,
                                    flags="--batchnorm/--no-batchnorm")
    hidden: list[int] | None = option(None, "mlp: hidden layer widths, e.g. 512,256.", MODEL, cli_type=str)
    padding: str | None = option(None, "unet: same (the default: chosen on val at one time budget) or valid (the "
                                       "paper's: the image is mirror-padded so the output covers it, overlap-tile).",
                                 MODEL)
    base: int | None = option(None, "smallcnn: channels of the first stage, doubled at each stage after it "
                                    "(default 16); unet: channels of the first level, doubled at each level below "
                                    "(default 16); fcn: channels of the decoder (default 32).", MODEL)
    depth: int | None = option(None, "smallcnn: stages, each ending with a 2x2 max-pool (default 2); unet: number "
                                     "of 2x2 max-pool downsamplings; images need at least 2^depth px (default 3).",
                               MODEL)
    encoder: str | None = option(None, "fcn: the classifier whose convolutional stages encode (any --arch with "
                                       "several scales, e.g. smallcnn, vgg11, resnet18; default smallcnn).", MODEL)
    decoder: str | None = option(None, "fcn: fcn8s (the last three scales fused by learned 2x upsamplings) or "
                                       "transposed (transposed convolutions from the deepest; default fcn8s).", MODEL)
    init: str = option("default", "default, xavier, he, normal (N(0, 0.01^2): a standard deviation of 0.01) or "
                                  "normal:STD (normal:0.1 is N(0, 0.01) written as a variance).", MODEL)
    whiten: str = option("auto", "on: the first convolution's filters are the whitening of the train images' "
                                 "patches (their covariance's top eigenvectors, each with its negative), and are not "
                                 "trained (airbench); off: a trained first layer; auto: on for smallcnn from "
                                 "scratch.", MODEL)
    pretrained: bool = option(False, "Start from timm/torchvision pretrained weights (needs the network).", MODEL,
                              flags="--pretrained")
    weights: str | None = option(None, "Start from a local safetensors file or state dict.", MODEL)
    freeze: str | None = option(None, "'backbone' (train the head only) or N (train the head and the last N "
                                      "block groups; the rest stays frozen).", MODEL)
    unfreeze_after: int | None = option(None, "Unfreeze everything after this many epochs.", MODEL)
    backbone_lr_scale: float = option(0.1, "Backbone lr as a fraction of the head's once unfrozen.", MODEL)
    # optimisation
    budget: str | None = option(None, "Wall-clock budget such as 90s, 10m or 1h: as many epochs as fit, measured "
                                      "(the schedule is planned for them); replaces --epochs. With smallcnn and no "
                                      "--base or --depth it also picks a wider net when enough epochs of it fit.",
                                OPTIM)
    epochs: int | str = option("auto", "Epochs, or auto: 5, or more on a small dataset so that training takes "
                                       "at least a measured number of optimizer steps (printed at the start).",
                               OPTIM, cli_type=str)
    batch_size: int = option(128, "Images per step (at most the train split's size).", OPTIM)
    optimizer: str = option("adam", "sgd, adam, adamw, or perceptron (--arch perceptron only: the perceptron "
                                    "learning rule, image by image, from zero weights with a constant eta = --lr; "
                                    "metrics.csv adds each epoch's errors).", OPTIM)
    lr: float | None = option(None, "Peak learning rate (default: sgd 0.1, adam/adamw 3e-3, times batch size / 128; "
                                    "perceptron: eta, default 1).", OPTIM)
    momentum: float = option(0.9, "SGD momentum.", OPTIM)
    nesterov: bool = option(True, "Nesterov momentum for SGD.", OPTIM, flags="--nesterov/--no-nesterov")
    weight_decay: float | None = option(None, "Weight decay, not on biases and norm layers (default: sgd 5e-4, "
                                              "adam 0, adamw 0.05).", OPTIM)
    schedule: str = option("onecycle", "onecycle, cosine, step or none.", OPTIM)
    warmup: float = option(0.0, "Warm-up epochs (linear).", OPTIM)
    step_size: int = option(30, "'step' schedule: epochs between lr drops.", OPTIM)
    gamma: float = option(0.1, "'step' schedule: lr factor at each drop.", OPTIM)
    label_smoothing: float | None = option(None, "Label smoothing (default: 0.1 for classify, chosen on the "
                                                 "Fashion-MNIST val split; 0 for the other tasks).", OPTIM)
    loss: str = option("ce", "ce, bce (two classes: one sigmoid output) or mse; regress: mse, l1 or smooth_l1 "
                             "(ce, the default, means smooth_l1 there).", OPTIM)
    alpha: float | None = option(None, "localize: the class loss's weight a in a*CE + (1-a)*box loss (default "
                                       "0.25, chosen on val: docs/tasks.md).", OPTIM)
    box_loss: str | None = option(None, "localize: smooth_l1 (on normalized centre and size) or giou (default "
                                        "smooth_l1, chosen on val: docs/tasks.md).", OPTIM)
    border_weight: str | None = option(None, "segment: U-Net's border weight w0,sigma (e.g. 10,5): background pixels "
                                             "between two objects weigh w0*exp(-(d1+d2)^2/(2 sigma^2)) more (d1, d2: "
                                             "pixel distances to the nearest two objects).", OPTIM, cli_type=str)
    dice: float = option(0.0, "segment: weight of a soft Dice loss added to the per-pixel cross-entropy (0: off).",
                         OPTIM)
    class_weights: str | None = option(None, "'auto': weight classes by inverse frequency (segment: of their pixels).",
                                       OPTIM)
    pos_weight: str | None = option(None, "'auto' (multi-label): weigh each class's positives by its negatives "
                                          "in the train split (rare labels count more).", OPTIM)
    aux_weight: float = option(0.0, "googlenet, inception_v3: train with their auxiliary classifiers, adding this "
                                    "weight times each one's loss to the loss (the GoogLeNet paper's 0.3); the saved "
                                    "net drops them. 0: without them.", OPTIM)
    accumulate: int = option(1, "Gradient accumulation: one optimizer step every K batches, on the gradient of K x "
                                "--batch-size images (the default lr scales with that product).", OPTIM)
    clip_grad: float | None = option(None, "Clip the gradient's global L2 norm to this before each optimizer step; "
                                           "metrics.csv adds grad_norm, the mean norm before clipping.", OPTIM)
    sampler: str = option("none", "How training draws images: none (each once an epoch), balanced (every class "
                                  "equally often) or sqrt (by the square root of its size); multi-label: by each "
                                  "image's rarest label. Beside or instead of --class-weights.", OPTIM)
    ema: float | None = option(None, "Keep an exponential moving average of the weights with this decay (e.g. 0.999; "
                                     "warmed up as in timm): validation, the best epoch and the saved weights use "
                                     "it, and metrics.csv adds the live weights' val figures.", OPTIM)
    teacher: str | None = option(None, "Knowledge distillation from this trained run (same task and classes): the "
                                       "loss adds the KL divergence to its outputs on the same augmented batch.", OPTIM)
    kd_weight: float | None = option(None, "--teacher: the distillation term's weight W in (1-W)*loss + W*KL "
                                           "(default 0.5).", OPTIM)
    kd_temperature: float | None = option(None, "--teacher: the temperature both outputs are softened at (default 4; "
                                                "the KL term is scaled by its square).", OPTIM)
    restarts: int = option(1, "Train this many runs, from --seed, --seed+1, ..., and keep the one with the best val "
                              "figure (--monitor); restarts.csv lists them all. A --budget is shared among them.", OPTIM)
    patience: int | None = option(None, "Early stopping: epochs without improvement of --monitor.", OPTIM)
    monitor: str = option("val_acc", "val_acc (the task's val metric: accuracy, mAP for multi-label) or val_loss: "
                                     "picks the best epoch.", OPTIM)
    # data and augmentation
    size: list[int] | None = internal(None)
    augment: str = option("dataset", "The augmentation policy: 'dataset' (DATA/augment.json, written by 'cvkit "
                                     "augment'; without one: --hflip 0.5), 'none', or a policy file.", AUGMENT)
    hflip: float | None = option(None, f"{HFLIP_HELP[:-1]}; over the policy's (without a policy: 0.5).", AUGMENT)
    # Pad-and-crop is off by default: in 5-epoch Fashion-MNIST runs it lowered the best val accuracy
    # (the net underfits that soon; bench/results/defaults_val.json); --translate 0.0625 for long runs.
    translate: float | None = option(None, f"{TRANSLATE_HELP[:-1]}; over the policy's (pad-and-crop; 0.0625 is 2 px "
                                           f"at 28 px, worth it for runs of 15+ epochs).", AUGMENT)
    # speed
    precision: str = option("auto", "auto (time the candidates), fp32, bf16 or fp16.", SPEED)
    memory_format: str = option("auto", "auto, channels_last or contiguous.", SPEED)
    compile: bool = option(False, "torch.compile the model (slow to start).", SPEED, flags="--compile")
    sync_bn: bool = option(False, "Under torchrun on GPUs: BatchNorm statistics over the global batch "
                                  "(SyncBatchNorm) instead of each process's share.", SPEED, flags="--sync-bn")
    eval_batch_size: int = internal(512)
    # run
    log: str = option("none", f"Where the epochs' figures also go: {', '.join(LOGS)} (tensorboard: RUN/tensorboard/, "
                              "with the augmented first batch and the val confusion matrix; metrics.csv is always "
                              "written).")
    seed: int = internal(0)
    device: str = internal("auto")
    resolved: Resolved = internal(factory=Resolved)  # what "auto" became, filled in by fit

    def check(self) -> None:
        """Refuse option values that cannot work, naming the option and the fix."""
        finite_fields(self)  # NaN would pass every range check below
        check_seed(self.seed)
        choices = {"optimizer": OPTIMIZERS, "sampler": SAMPLERS, "schedule": SCHEDULES, "loss": LOSSES, "precision": PRECISIONS,
                   "memory_format": MEMORY_FORMATS, "monitor": MONITORS, "head": HEADS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise OptionError(f"{flag(name)} {getattr(self, name)} must be one of {', '.join(allowed)}")
        if self.init.partition(":")[0] not in INITS:
            raise OptionError(f"--init {self.init} must be one of {', '.join(INITS)} or normal:STD")
        self.epochs = parse_epochs(self.epochs)
        if self.budget is not None:
            parse_budget(self.budget)
            if self.epochs != "auto":
                raise OptionError("--budget and --epochs both set how long to train; give one of them")
        for name in ("batch_size", "eval_batch_size", "step_size", "accumulate", "restarts"):
            if getattr(self, name) < 1:
                raise OptionError(f"{flag(name)} {getattr(self, name)} must be at least 1")
        if self.weight_decay is not None and self.weight_decay < 0:
            raise OptionError(f"--weight-decay {self.weight_decay} must be 0 or more")
        if self.lr is not None and not self.lr > 0:
            raise OptionError(f"--lr {self.lr} must be positive")
        if self.dropout is not None and not 0 <= self.dropout <= 1:
            raise OptionError(f"--dropout {self.dropout} must be a probability from 0 to 1")
        for name, allowed in (("padding", PADDINGS), ("decoder", DECODERS)):
            if getattr(self, name) not in (None, *allowed):
                raise OptionError(f"{flag(name)} {getattr(self, name)} must be one of {', '.join(allowed)}")
        for name in ("base", "depth"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise OptionError(f"{flag(name)} {getattr(self, name)} must be at least 1")
        check_flip_and_shift(self.hflip, self.translate)
        if self.clip_grad is not None and not self.clip_grad > 0:
            raise OptionError(f"--clip-grad {self.clip_grad} must be a norm above 0, for example --clip-grad 1")
        if self.ema is not None and not 0 < self.ema < 1:
            raise OptionError(f"--ema {self.ema} must be a decay above 0 and below 1, for example --ema 0.999")
        if self.teacher is None and (self.kd_weight is not None or self.kd_temperature is not None):
            raise OptionError("--kd-weight and --kd-temperature tune --teacher; give --teacher RUN (a trained run)")
        if self.kd_weight is not None and not 0 < self.kd_weight <= 1:
            raise OptionError(f"--kd-weight {self.kd_weight} must be a weight above 0 and at most 1")
        if self.kd_temperature is not None and not self.kd_temperature > 0:
            raise OptionError(f"--kd-temperature {self.kd_temperature} must be above 0, for example 4")
        if self.label_smoothing is not None and not 0 <= self.label_smoothing < 1:
            raise OptionError(f"--label-smoothing {self.label_smoothing} must be from 0 to below 1")
        if self.warmup < 0 or self.momentum < 0 or self.backbone_lr_scale < 0 or self.gamma <= 0:
            raise OptionError("--warmup, --momentum and --backbone-lr-scale must be 0 or more, --gamma above 0")
        if self.class_weights not in (None, "auto"):
            raise OptionError(f"--class-weights {self.class_weights} must be 'auto' (or left out)")
        if self.alpha is not None and not 0 <= self.alpha <= 1:
            raise OptionError(f"--alpha {self.alpha} must be a weight from 0 to 1")
        if self.box_loss not in (None, *BOX_LOSSES):
            raise OptionError(f"--box-loss {self.box_loss} must be one of {', '.join(BOX_LOSSES)}")
        if self.border_weight is not None:
            parse_border_weight(self.border_weight)
        if self.aux_weight < 0:
            raise OptionError(f"--aux-weight {self.aux_weight} must be a weight of 0 or more (0: no auxiliary "
                              f"classifiers; the GoogLeNet paper's is 0.3)")
        if self.dice < 0:
            raise OptionError(f"--dice {self.dice} must be a weight of 0 or more (0: off)")
        if self.pos_weight not in (None, "auto"):
            raise OptionError(f"--pos-weight {self.pos_weight} must be 'auto' (or left out)")
        if self.freeze not in (None, "backbone") and not (str(self.freeze).isdigit() and int(self.freeze) >= 1):
            raise OptionError(f"--freeze {self.freeze} must be 'backbone' or a number of block groups (1 or more) "
                              f"to train besides the head")
        if self.unfreeze_after is not None and (self.unfreeze_after < 0 or self.freeze is None):
            raise OptionError("--unfreeze-after needs --freeze and a number of epochs of 0 or more")
        if self.patience is not None and self.patience < 1:
            raise OptionError("--patience must be at least 1")
        check_log(self.log)
        if self.whiten not in ("auto", "on", "off"):
            raise OptionError(f"--whiten {self.whiten} must be auto, on or off")
        if self.pretrained and self.weights:
            raise OptionError("--pretrained and --weights both give starting weights; pick one")

    def to_json(self) -> dict[str, Any]:
        return {**{f.name: getattr(self, f.name) for f in fields(self) if f.name != "resolved"},
                "resolved": self.resolved.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        resolved = Resolved.from_json(data.get("resolved") or {})
        return cls(**{k: v for k, v in data.items() if k in known and k != "resolved"}, resolved=resolved)

    def model_options(self) -> dict[str, Any]:
        """The options that change the architecture (rebuilt from model.json by every later command)."""
        return {"head": self.head, "activation": self.activation, "dropout": self.dropout,
                "batchnorm": self.batchnorm, "hidden": self.hidden, "padding": self.padding, "base": self.base,
                "depth": self.depth, "encoder": self.encoder, "decoder": self.decoder}

    # ------------------------------------------------------------------ config.json

    def write(self, run: str | os.PathLike) -> None:
        write_json(self.path(run), self.to_json())

    @staticmethod
    def path(run: str | os.PathLike) -> Path:
        return Path(run) / "config.json"

    @classmethod
    def read_if_present(cls, run: str | os.PathLike) -> "TrainConfig | None":
        """The run's config.json, or None for a run directory that has none (model.json alone suffices)."""
        return cls.read(run) if (Path(run) / "config.json").is_file() else None

    @classmethod
    def read(cls, run: str | os.PathLike) -> "TrainConfig":
        path = Path(run) / "config.json"
        if not path.is_file():
            raise ManifestError(f"{path} is missing: {run} is not a run directory written by 'cvkit train'")
        fix = "it was written by 'cvkit train'; start a new run"
        data = read_json(path, fix)
        resolved = data.pop("resolved", None) or {}
        if not isinstance(resolved, dict):
            raise ManifestError(f"{path}: 'resolved' must be an object; {fix}")
        cfg = from_json(cls, data, path, fix)  # keys and types checked
        cfg.resolved = Resolved.from_json(resolved, path, fix)
        return cfg


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def parse_epochs(value: int | str) -> int | str:
    """``auto`` or a positive whole number of epochs."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        epochs = int(value)
    except (TypeError, ValueError):
        epochs = 0
    if isinstance(value, float) and value != epochs:
        epochs = 0
    if epochs < 1:
        raise OptionError(f"--epochs {value} must be 'auto' or a whole number of epochs, 1 or more")
    return epochs


def parse_budget(text: str) -> float:
    """``90s``, ``10m``, ``1h``, ``1h30m`` or plain seconds -> seconds."""
    import re

    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "": 1.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([hms]?)", str(text).strip().lower())
    joined = "".join(f"{n}{u}" for n, u in parts)
    seconds = sum(float(n) * units[u] for n, u in parts)
    if not parts or joined != re.sub(r"\s+", "", str(text).strip().lower()) or not seconds > 0:
        raise OptionError(f"--budget {text} must be a duration such as 90s, 10m, 1h or 1h30m")
    return seconds


def cli_fields() -> list[Any]:
    """The TrainConfig fields that are ``cvkit train`` options, in declaration order."""
    return [f for f in fields(TrainConfig) if f.metadata.get("cli", True)]

