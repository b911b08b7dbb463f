"""Loading a run directory (``model.json`` + ``model.safetensors``) into a ready-to-use model."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cvkit.errors import ManifestError
from cvkit.io import load_weights_file, read_json, read_model_info
from cvkit.train import speed
from cvkit.transforms.batch import Preprocess


@dataclass
class LoadedRun:
    run: Path
    model: nn.Module
    info: dict[str, Any]  # model.json
    pre: Preprocess
    precision: str
    device: torch.device

    @property
    def classes(self) -> list[str]:
        return self.info["classes"]

    @property
    def input_size(self) -> tuple[int, int]:
        return int(self.info["input_size"][0]), int(self.info["input_size"][1])

    @property
    def data(self) -> str | None:
        """The dataset the run was trained on, from config.json."""
        path = self.run / "config.json"
        return read_json(path, "").get("data") if path.is_file() else None


def load_run(run: str | os.PathLike, device: torch.device, precision: str = "auto") -> LoadedRun:
    """Rebuild the model of ``run`` from model.json alone and load its best weights (safetensors).

    ``precision="auto"`` reuses what training chose when this is the same kind of device, else fp32.
    """
    from cvkit.models import create_model

    run = Path(run)
    info = read_model_info(run)
    model = create_model(info["arch"], int(info["num_outputs"]), int(info["in_chans"]),
                         (int(info["input_size"][0]), int(info["input_size"][1])), **(info.get("arch_options") or {}))
    state = load_weights_file(run / "model.safetensors")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ManifestError(f"{run / 'model.safetensors'} does not fit the model of model.json "
                            f"({str(e).splitlines()[0]}); retrain the run") from None
    model.to(device).eval()
    memory_format = "contiguous"
    resolved = read_json(run / "config.json", "").get("resolved", {}) if (run / "config.json").is_file() else {}
    if precision == "auto":
        same_device = str(resolved.get("device", "cpu")).split(":")[0] == device.type
        precision = resolved.get("precision", "fp32") if same_device else "fp32"
        memory_format = resolved.get("memory_format", "contiguous") if same_device else "contiguous"
    speed.set_memory_format(model, memory_format)
    mean_image = np.load(run / info["mean_image"]) if info.get("mean_image") else None
    pre = Preprocess(info["mean"], info["std"], device, mean_image, channels_last=memory_format == "channels_last")
    return LoadedRun(run, model, info, pre, precision, device)
