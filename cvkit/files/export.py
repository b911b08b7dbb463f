"""``export.json``: what ``cvkit export`` wrote and how well it agrees with the run."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from cvkit.files.jsonio import finite, write_json

# Everything `export` writes into its folder.
EXPORT_FILES = ("model.onnx", "model.torchscript.pt", "model.safetensors", "model.json", "mean_image.npy",
                "export.json", "model.int8.onnx", "int8.png")


@dataclass
class Int8Info:
    """``export --int8``: the quantized file and how it compares with the fp32 one and the run."""

    file: str
    quantizer: str
    integer_nodes: int  # QuantizeLinear and integer-kernel nodes in the int8 graph
    float_ops: list[str]  # op types the quantizer left in floating point
    calibration: str  # how many train images of which dataset
    size_bytes: dict[str, int]  # "fp32", "int8"
    latency_ms: dict[str, dict[str, float]]  # "fp32"/"int8" -> batch size -> best milliseconds per forward pass
    latency_threads: int
    val_metric: str  # the run's task's val figure, e.g. val_acc
    val_images: int  # 0: the dataset has no val split the run can be scored on
    val: dict[str, float | None]  # "run" (PyTorch, as trained), "fp32" (the ONNX file), "int8"
    top1_agreement_fp32: float | None  # int8 and fp32 files, on val; None for a task without classes
    max_abs_prob_diff_fp32: float | None


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
    int8: Int8Info | None = None  # --int8 only

    def write(self, folder: str | os.PathLike) -> None:
        write_json(Path(folder) / "export.json", finite(asdict(self)))
