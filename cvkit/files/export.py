"""``export.json``: what ``cvkit export`` wrote and how well it agrees with the run."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from cvkit.files.jsonio import finite, write_json

# Everything `export` writes into its folder.
EXPORT_FILES = ("model.onnx", "model.torchscript.pt", "model.safetensors", "model.json", "mean_image.npy",
                "export.json")


@dataclass
class ExportInfo:
    run: str
    format: str
    file: str
    fuse_bn: bool
    batchnorms_folded: int
    batchnorms_left: int
    half: bool
    opset: int | None
    exporter: str
    input_shape: list[int]  # C, H, W of the float input in [0, 1]
    fuse_max_abs_logit_diff: float | None
    max_abs_prob_diff: float | None
    top1_agreement: float | None
    checked_with: str
    check_images: int
    check_source: str
    seconds: float
    cvkit_version: str
    torch_version: str
    # Runs whose head has outputs after the class scores (localize's box, 0..1 across the image): their
    # largest difference, checked against the run like the probabilities; None when there are none.
    max_abs_box_diff: float | None = None

    def write(self, folder: str | os.PathLike) -> None:
        write_json(Path(folder) / "export.json", finite(asdict(self)))
