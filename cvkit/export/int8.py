"""``export --int8``: the ONNX export quantized to 8-bit integers, calibrated on the run's train images.

Static quantization: the weights become int8 (one scale per output channel) and each activation
between layers gets one uint8 scale and zero point, measured once on ``--calibration-images`` train
images of the run's dataset (read from the packed cache and fed through the exported graph, whose
first nodes normalize exactly as the run does). onnxruntime's ``quantize_static`` rewrites the
checked fp32 ONNX graph in the QDQ format (QuantizeLinear / DequantizeLinear pairs that onnxruntime
fuses into integer kernels). It was measured against PyTorch's own flow (``bench/bench_int8.py``,
``bench/results/int8.json``): see CHANGELOG.md for why this one was kept.

The calibration images come from train only: val scores the result, test stays unread.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from cvkit.errors import ManifestError, OptionError

INT8_FILE = "model.int8.onnx"
# Images the activation ranges are measured on. The min/max of an activation settles after a few
# hundred images of a classification set; more only cost time (every image is one forward pass).
CALIBRATION_IMAGES = 256
CALIBRATION_BATCH = 32
CALIBRATION_SEED = 0
# Nodes whose presence shows a graph runs integer kernels.
INTEGER_OPS = ("QuantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger")


def check_int8_options(fmt: str, half: bool, calibration_images: int | None, int8: bool) -> int:
    """Refuse option combinations --int8 cannot honour; the number of calibration images to use."""
    if not int8:
        if calibration_images is not None:
            raise OptionError("--calibration-images sets how many train images calibrate --int8; add --int8")
        return 0
    if fmt != "onnx":
        raise OptionError(f"--int8 quantizes the ONNX graph, and --format is {fmt}; use --format onnx (or drop --int8)")
    if half:
        raise OptionError("--int8 and --half both choose the weights' precision; give one of them")
    n = CALIBRATION_IMAGES if calibration_images is None else calibration_images
    if n <= 0:
        raise OptionError(f"--calibration-images {n} must be a positive number of train images (default "
                          f"{CALIBRATION_IMAGES})")
    return n


def check_quantizable(loaded) -> None:
    """Refuse a run --int8 cannot quantize, before anything is written."""
    if loaded.task.dense:
        raise OptionError(f"--int8 calibrates one input size, and a --task {loaded.task.name} run's ONNX graph takes "
                          f"any height and width; export it without --int8")
    try:
        import onnxruntime.quantization  # noqa: F401
    except ImportError:
        raise OptionError("--int8 needs onnxruntime: pip install 'cvkit[onnx]'") from None


def calibration_set(loaded, n: int) -> tuple[np.ndarray, str]:
    """``n`` train images of the run's dataset (a seeded sample, all when it has fewer), float32 N x C x H x W
    in [0, 1] as the exported graph takes them; and where they came from, for the summary."""
    from cvkit.data import load_split
    from cvkit.files.dataset import is_dataset

    data = loaded.data
    if not data or not is_dataset(data):
        where = f"its dataset {data} is missing" if data else "it records no dataset (config.json)"
        raise ManifestError(f"--int8 calibrates on the train images of the run's dataset, and {where}; put the "
                            f"dataset back where it was trained, or export without --int8")
    part = load_split(data, "train", loaded.input_size)
    if part.images.shape[3] != loaded.in_chans:
        raise ManifestError(f"{data} holds {part.images.shape[3]}-channel images and the run takes {loaded.in_chans}; "
                            f"put back the dataset the run was trained on, or export without --int8")
    rows = np.arange(len(part.images))
    if n < len(rows):
        rows = np.sort(np.random.default_rng(CALIBRATION_SEED).choice(rows, n, replace=False))
    images = np.ascontiguousarray(np.asarray(part.images[rows]).transpose(0, 3, 1, 2)).astype(np.float32) / 255
    return images, f"{len(rows)} train images of {data}"


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """onnxruntime's quantizer logs advice on the root logger (pre-processing, BatchNorm's rank-1 weights)
    that a cvkit user cannot act on."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize(fp32: Path, int8: Path, images: np.ndarray, arch: str) -> tuple[str, int, list[str]]:
    """Write ``int8``, the static INT8 version of the ONNX file ``fp32`` calibrated on ``images``; returns the
    quantizer used, the number of integer nodes and the op types left in floating point."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(range(0, len(images), CALIBRATION_BATCH))

        def get_next(self) -> dict[str, np.ndarray] | None:
            start = next(self.batches, None)
            return None if start is None else {"image": images[start:start + CALIBRATION_BATCH]}

    graph = onnx.load(str(fp32)).graph
    outputs = {o.name for o in graph.output}
    # The last node (softmax, sigmoid) stays in floating point: quantized, the probabilities would come in
    # steps of 1/255, too coarse for a threshold or a calibration curve; it is one cheap op.
    last = [n.name for n in graph.node if outputs.intersection(n.output)]
    try:
        with _quiet_quantizer():
            quantize_static(str(fp32), str(int8), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=last)
    except Exception as e:  # noqa: BLE001 - the quantizer fails in many ways on graphs it does not support
        raise OptionError(f"--int8: onnxruntime cannot quantize {arch} ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:120] if str(e) else ''}); export it without --int8") from None
    nodes = onnx.load(str(int8)).graph.node
    integer = sum(node.op_type in INTEGER_OPS for node in nodes)
    if not integer:
        raise OptionError(f"--int8: none of {arch}'s layers has an int8 kernel in onnxruntime (its ops: "
                          f"{', '.join(sorted({n.op_type for n in nodes}))}); export it without --int8")
    # In the QDQ format a node runs an integer kernel when its inputs are dequantized and its outputs
    # quantized again; any other node computes in floating point.
    dequantized = {out for n in nodes if n.op_type == "DequantizeLinear" for out in n.output}
    requantized = {n.input[0] for n in nodes if n.op_type == "QuantizeLinear"}
    left = sorted({n.op_type for n in nodes if n.op_type not in ("QuantizeLinear", "DequantizeLinear")
                   and not (dequantized.intersection(n.input) and requantized.issuperset(n.output))})
    return f"onnxruntime {ort.__version__} quantize_static (QDQ, int8 per-channel weights, uint8 activations, MinMax)", \
        integer, left
