"""The run directory's files: ``model.json``, ``model.safetensors``, ``metrics.csv``, ``last.ckpt``.

(``config.json`` is :class:`cvkit.files.config.TrainConfig`.) Weights are safetensors and the
checkpoint loads with ``weights_only=True``: reading a run never executes code.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cvkit.errors import ManifestError, UnsafeCheckpoint
from cvkit.files.atomic import NO_ROOM, atomic_path, disk_full, read_csv_checked, write_csv
from cvkit.files.dataset import DEFAULT_TASK
from cvkit.files.jsonio import from_json, read_json, type_ok, write_json
from cvkit.files.logs import LOG_FOLDERS

RETRAIN = "retrain with 'cvkit train'"
METRICS_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "images_per_s")


# Everything `train` writes into a run, and the output folders later commands put there by default.
RUN_FILES = ("model.safetensors", "model.json", "last.ckpt", "metrics.csv", "config.json", "curves.png", "restarts.csv",
             "mean_image.npy", "lr_find.csv", "lr_find.png", "calibration.json", "eval_*", "ensemble_eval_*", "predict",
             "cam", "convolutional", "visualize", "export_*", "report", *LOG_FOLDERS)


# ----------------------------------------------------------------------------- model.json

# model.json's "arch_options": the keyword arguments of cvkit.models.create_model that shape the net.
ARCH_OPTION_TYPES = {"head": "str", "activation": "str | None", "dropout": "float | None", "batchnorm": "bool | None",
                     "hidden": "list[int] | None", "padding": "str | None", "base": "int | None",
                     "depth": "int | None", "encoder": "str | None", "decoder": "str | None"}
# smallcnn before --base and --depth were options (a model.json without them): two stages of 32 and 64 channels.
SMALLCNN_BEFORE_OPTIONS = {"base": 32, "depth": 2}


@dataclass
class ModelInfo:
    """Everything needed to rebuild and use the model with no other file."""

    arch: str
    num_classes: int
    num_outputs: int
    in_chans: int
    input_size: list[int]
    classes: list[str]
    loss: str
    mean: list[float]
    std: list[float]
    arch_options: dict[str, Any] = field(default_factory=dict)
    mean_image: str | None = None
    resize: str = "crop"
    epoch: int = 0
    val_acc: float | None = None  # the best epoch's val figure of the task: accuracy (mAP for multilabel)
    val_loss: float | None = None
    cvkit_version: str = ""
    convolutional: bool = False  # written by 'cvkit convolutionalize': the head is made of convolutions
    # 'cvkit convolutionalize --segmenter': the converted net's score maps as a segmenter (models/scoremaps.py):
    # {"mode": "upsample" or "stitch", "stride": [y, x], "centre": [y, x], "min_size": [h, w]}; None otherwise
    score_maps: dict[str, Any] | None = None
    task: str = DEFAULT_TASK  # what the run predicts (cvkit/tasks/)
    task_state: dict[str, Any] = field(default_factory=dict)  # what the task learned on val (e.g. thresholds)
    # Flip test-time augmentation, chosen on val for the best weights when training ended: {"chosen": "flip"
    # or "none", "metric": the val column, "plain" and "flip": its two values}; {} for runs made before
    tta: dict[str, Any] = field(default_factory=dict)

    @property
    def flip_tta(self) -> bool:
        """Whether evaluate and predict average each image with its mirror when --tta is not given."""
        return self.tta.get("chosen") == "flip"

    @classmethod
    def read(cls, run: str | os.PathLike) -> "ModelInfo":
        run = Path(run)
        path = run / "model.json"
        if not path.is_file():
            what = "is a file" if run.is_file() else "has no model.json"
            raise ManifestError(f"{run} {what}: it is not a run directory; create one with 'cvkit train'")
        info = from_json(cls, read_json(path, RETRAIN), path, RETRAIN)
        info._check_values(path)
        if info.num_classes != len(info.classes):
            raise ManifestError(f"{path}: 'num_classes' is {info.num_classes} but 'classes' names "
                                f"{len(info.classes)}; restore model.json or {RETRAIN}")
        if len(info.input_size) != 2 or min(info.input_size) < 1:
            raise ManifestError(f"{path}: 'input_size' must be [height, width], each 1 or more; restore model.json "
                                f"or {RETRAIN}")
        return info

    def _check_values(self, path: Path) -> None:
        """Values that pass the type check but would make every prediction wrong or crash the model's rebuild."""
        from cvkit.files.config import LOSSES

        fix = f"restore model.json or {RETRAIN}"
        if self.num_classes < 1 or self.in_chans < 1:
            raise ManifestError(f"{path}: 'num_classes' and 'in_chans' must be 1 or more; {fix}")
        for key in ("mean", "std"):
            values = getattr(self, key)
            if len(values) != self.in_chans:
                raise ManifestError(f"{path}: '{key}' has {len(values)} value(s) but 'in_chans' is {self.in_chans}: "
                                    f"it needs one per input channel; {fix}")
            if not all(math.isfinite(v) for v in values):
                raise ManifestError(f"{path}: '{key}' {values} holds NaN or infinity; {fix}")
        if min(self.std) <= 0:  # dividing by 0 makes every input NaN: one class for everything, no probabilities
            raise ManifestError(f"{path}: 'std' {self.std} must be above 0 for every channel; {fix}")
        if self.loss not in LOSSES:
            raise ManifestError(f"{path}: 'loss' {self.loss!r} is not one of {', '.join(LOSSES)}; {fix}")
        if self.resize not in ("crop", "squash"):
            raise ManifestError(f"{path}: 'resize' {self.resize!r} must be crop or squash; {fix}")
        if self.mean_image not in (None, "mean_image.npy"):
            raise ManifestError(f"{path}: 'mean_image' must be \"mean_image.npy\" or null; {fix}")
        for key, value in self.arch_options.items():
            if key not in ARCH_OPTION_TYPES:
                raise ManifestError(f"{path}: 'arch_options' has unknown key '{key}' (known: "
                                    f"{', '.join(ARCH_OPTION_TYPES)}); {fix}")
            if not type_ok(value, ARCH_OPTION_TYPES[key]):
                raise ManifestError(f"{path}: 'arch_options' '{key}' is {json.dumps(value)[:60]}, which is not "
                                    f"{ARCH_OPTION_TYPES[key]}; {fix}")

    def write(self, run: str | os.PathLike) -> None:
        write_json(Path(run) / "model.json", asdict(self))

    def build_options(self) -> dict[str, Any]:
        """``arch_options`` as ``create_model`` takes them: a smallcnn of a model.json written before
        smallcnn took ``base`` and ``depth`` gets the values it was built with."""
        if self.arch == "smallcnn" and "base" not in self.arch_options:
            return {**self.arch_options, **SMALLCNN_BEFORE_OPTIONS}
        return dict(self.arch_options)

    @staticmethod
    def exists(run: str | os.PathLike) -> bool:
        """Whether ``run`` holds a model.json: a run directory, as far as a search for runs needs."""
        return (Path(run) / "model.json").is_file()

    @staticmethod
    def present(run: str | os.PathLike) -> bool:
        """Whether ``run`` has a model.json: all that :func:`cvkit.runtime.load_run` needs besides the weights."""
        return (Path(run) / "model.json").is_file()

    @staticmethod
    def complete(run: str | os.PathLike) -> bool:
        """Whether ``run`` holds every file a finished training run writes (weights, model.json,
        metrics.csv, config.json): what crossval checks before it scores or skips a fold run."""
        return all((Path(run) / name).is_file() for name in ("model.safetensors", "model.json", "metrics.csv",
                                                             "config.json"))

    @staticmethod
    def written_at(run: str | os.PathLike) -> float:
        """When the run's model.json was last written (seconds since the epoch)."""
        return (Path(run) / "model.json").stat().st_mtime

    @staticmethod
    def runs_under(root: str | os.PathLike, depth: int) -> list[Path]:
        """The run directories 1 to ``depth`` folders below ``root`` (those that hold a model.json)."""
        return [p.parent for level in range(1, depth + 1)
                for p in Path(root).glob("/".join(["*"] * level) + "/model.json")]

    @staticmethod
    def copy(run: str | os.PathLike, folder: str | os.PathLike) -> None:
        """Copy the run's model.json, byte for byte, into ``folder`` (an export beside its model file)."""
        import shutil

        shutil.copy(Path(run) / "model.json", Path(folder) / "model.json")


# ----------------------------------------------------------------------------- metrics.csv


def write_metrics(run: str | os.PathLike, rows: list[dict[str, Any]]) -> None:
    """``metrics.csv``: one row per epoch in the rows' own column order (the task's ``metrics_columns``:
    its val metric, ``val_acc`` for classify, follows ``val_loss``), rewritten whole after each epoch."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    write_csv(Path(run) / "metrics.csv", frame, "%.6g")


def write_restarts(run: str | os.PathLike, rows: list[dict[str, Any]]) -> None:
    """``restarts.csv`` (``train --restarts N``): one row per restart, its seed, best val figure and epoch,
    and which one the run kept."""
    import pandas as pd

    write_csv(Path(run) / "restarts.csv", pd.DataFrame(rows), "%.6g")


def read_metrics(run: str | os.PathLike) -> "pd.DataFrame":  # noqa: F821
    """``RUN/metrics.csv`` as a DataFrame, checked for the columns ``train`` writes."""
    return read_csv_checked(Path(run) / "metrics.csv", METRICS_COLUMNS[:2] + ("val_loss",), RETRAIN)


# ----------------------------------------------------------------------------- model.safetensors


def save_weights(path: str | os.PathLike, state: dict[str, "torch.Tensor"],  # noqa: F821
                 metadata: dict[str, str] | None = None) -> None:
    """Weights as safetensors: loading them never executes code."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    with atomic_path(path) as tmp:
        try:
            save_file(tensors, str(tmp), metadata=metadata)
        except SafetensorError as e:  # its Rust writer reports a failed write as "... (os error 28)"
            code = re.search(r"os error (\d+)", str(e))
            if code and int(code.group(1)) in NO_ROOM:
                raise disk_full(path, str(e).splitlines()[0][:120]) from None
            raise


def load_weights_file(path: str | os.PathLike) -> dict[str, "torch.Tensor"]:  # noqa: F821
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ManifestError(f"{path} is not a readable safetensors file ({str(e)[:160]}); {RETRAIN} "
                            f"or restore the file") from None
    bad = sum(int((~t.isfinite()).sum()) for t in state.values() if t.is_floating_point())
    if bad:  # a diverged model predicts one class for everything, with NaN probabilities
        raise ManifestError(f"{path} holds {bad:,} NaN or infinite weights: the model diverged and predicts "
                            f"nothing; {RETRAIN} (a lower --lr) or restore the file")
    return state


def save_model_weights(run: str | os.PathLike, state: dict[str, "torch.Tensor"], epoch: int) -> None:  # noqa: F821
    """``RUN/model.safetensors``: the best epoch's weights."""
    save_weights(Path(run) / "model.safetensors", state, {"epoch": str(epoch)})


def load_model_weights(run: str | os.PathLike) -> dict[str, "torch.Tensor"]:  # noqa: F821
    path = Path(run) / "model.safetensors"
    if not path.is_file():
        raise ManifestError(f"{path} is missing; {RETRAIN}")
    return load_weights_file(path)


# ----------------------------------------------------------------------------- last.ckpt and torch files


def torch_save(path: str | os.PathLike, obj: Any) -> None:
    import torch

    try:
        with atomic_path(path) as tmp:
            torch.save(obj, tmp)
    except RuntimeError as e:  # torch's zip writer reports a failed write (ENOSPC, EFBIG) this way
        message = str(e)
        if "write" in message.lower() or "unexpected pos" in message:
            raise disk_full(path, message.splitlines()[0][:120]) from None
        raise


def torch_load_safe(path: str | os.PathLike, what: str = "checkpoint") -> Any:
    """``torch.load`` with ``weights_only=True``: tensors and plain containers only, never code."""
    import torch

    try:
        # Through an open file: given a path, recent torch picks its reader by the suffix, so a
        # torch.save file named *.safetensors would be read as safetensors and fail.
        with open(path, "rb") as f:
            return torch.load(f, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ManifestError(f"{path} is missing: there is no {what} there") from None
    except IsADirectoryError:
        raise ManifestError(f"{path} is a folder, not a {what}") from None
    except pickle.UnpicklingError as e:
        # torch's allow-list stopped at something other than tensors and plain containers: a function
        # or class (code that would run), or bytes that are not a torch.save file at all.
        blocked = re.search(r"GLOBAL (\S+)", str(e))
        why = f"it would call {blocked.group(1)}" if blocked else str(e).strip().splitlines()[0][:120]
        raise UnsafeCheckpoint(f"{path} is not a plain file of tensors that loads without running code ({why}); "
                               f"cvkit refuses to unpickle anything else: use a safetensors file or a state dict "
                               f"saved with torch.save") from None
    except OSError as e:
        if e.errno in NO_ROOM:
            raise disk_full(path, e) from None
        raise ManifestError(f"{path} is not a readable {what} ({str(e).splitlines()[0][:160]})") from None
    except Exception as e:  # noqa: BLE001 - a damaged file can fail in torch's zip and unpickling code in many ways
        raise ManifestError(f"{path} is not a readable {what} ({type(e).__name__}: "
                            f"{str(e).splitlines()[0][:160] if str(e) else 'damaged'})") from None


CHECKPOINT_KEYS = ("format", "epoch", "model", "optimizer", "scheduler", "rng_torch", "rng_gen", "history", "best",
                   "bad_epochs", "precision", "memory_format", "unfrozen")


def has_checkpoint(run: str | os.PathLike) -> bool:
    """Whether ``run`` holds a ``last.ckpt`` (at least one epoch of it was saved)."""
    return (Path(run) / "last.ckpt").exists()


def read_checkpoint(run: str | os.PathLike) -> dict[str, Any]:
    """``RUN/last.ckpt``: the state needed to resume, checked for the keys cvkit writes."""
    path = Path(run) / "last.ckpt"
    if not path.is_file():
        raise ManifestError(f"{path} is missing: {run} has no checkpoint to resume from; start a new run instead")
    ckpt = torch_load_safe(path, "checkpoint")
    if not isinstance(ckpt, dict) or ckpt.get("format") != 1:
        raise ManifestError(f"{path} is not a cvkit checkpoint; start a new run instead")
    missing = [k for k in CHECKPOINT_KEYS if k not in ckpt]
    if missing:
        raise ManifestError(f"{path} lacks {', '.join(missing)}; start a new run instead")
    return ckpt


def write_checkpoint(run: str | os.PathLike, ckpt: dict[str, Any]) -> None:
    torch_save(Path(run) / "last.ckpt", {"format": 1, **ckpt})
