"""Write a run in a deployment format and check it against the run as trained.

Every export is checked: the exported model (read back from its file: onnxruntime for ONNX when it
is installed, ``torch.jit.load`` for TorchScript, cvkit's own loader for safetensors) and the run
as trained, in fp32, predict the same images (the run's val split, or seeded random images when the
dataset is gone); the largest difference of the probabilities and the top-1 agreement are printed
and kept in ``export.json``, and an export that does not agree is not written.
"""

from __future__ import annotations

import os
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.markup import escape

from cvkit import __version__
from cvkit.errors import ManifestError, OptionError
from cvkit.export.deploy import Deployed
from cvkit.export.fuse import count_batchnorms, fuse_batchnorm, max_abs_diff
from cvkit.export.int8 import INT8_FILE, calibration_set, check_int8_options, check_quantizable, quantize
from cvkit.files.export import ExportInfo
from cvkit.files.lock import releasing
from cvkit.files.outputs import check_out, replacing
from cvkit.files.owned import own_export
from cvkit.files.run import ModelInfo, save_weights
from cvkit.progress import info
from cvkit.runtime import load_run

FORMATS = ("onnx", "torchscript", "safetensors")
FILE_OF = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt", "safetensors": "model.safetensors"}
# Largest allowed difference of a probability between the export and the run (fp32, fp16).
TOLERANCE = {False: 1e-3, True: 2e-2}
CHECK_IMAGES = 256
# Below this top-1 agreement with the fp32 file on val, --int8 warns (it still writes: the figures let
# the user weigh the loss against the speed).
INT8_AGREEMENT = 0.95


@dataclass
class ExportResult:
    out: Path
    file: Path
    info: ExportInfo


@releasing  # the --out lock check_out takes is given up on return
def export_run(run: str | os.PathLike, fmt: str, out: str | os.PathLike | None = None, fuse_bn: bool = False,
               half: bool = False, opset: int = 18, force: bool = False, int8: bool = False,
               calibration_images: int | None = None) -> ExportResult:
    """Export ``run`` as ``fmt`` into ``out`` (default ``RUN/export_FORMAT``); see ``cvkit export --help``.
    ``int8``: also write the ONNX graph statically quantized to int8 (``model.int8.onnx``), calibrated on
    ``calibration_images`` train images (default 256), with its size, latency and val figures."""
    if fmt not in FORMATS:
        raise OptionError(f"--format {fmt} must be one of {', '.join(FORMATS)}")
    if fuse_bn and fmt == "safetensors":
        raise OptionError("--fuse-bn changes the network's layers, and a safetensors file holds weights for the run's "
                          "own architecture; fuse with --format onnx or torchscript")
    if not 7 <= opset <= 23:
        raise OptionError(f"--opset {opset} must be from 7 to 23")
    calibration_images = check_int8_options(fmt, half, calibration_images, int8)
    cpu = torch.device("cpu")
    loaded = load_run(run, cpu, precision="fp32")  # refuses a run whose files are broken or unsafe
    run = loaded.run
    if int8:  # refused before anything is written
        check_quantizable(loaded)
        calibration, calibration_source = calibration_set(loaded, calibration_images)
    out = check_out(out or run / f"export_{fmt}", reads=[run], own=own_export, force=force)
    images, source = _check_images(loaded)
    reference = _probs(Deployed(loaded.model, loaded.info.mean, loaded.info.std, loaded.task.probabilities, _mean_image(loaded)),
                       images)
    if not torch.isfinite(reference).all():  # nothing to compare an export with: NaN == NaN is never checked
        raise ManifestError(f"the model of {run} gives outputs that are not finite (NaN or infinite) on "
                            f"{len(images)} {source}; retrain it: nothing was exported")

    model, fused, left = loaded.model, 0, count_batchnorms(loaded.model)
    fuse_diff = None
    if fuse_bn:
        model, fused, left = fuse_batchnorm(loaded.model, loaded.info.arch)
        fuse_diff = max_abs_diff(_logits(model, loaded, images), _logits(loaded.model, loaded, images))
        info(f"--fuse-bn: {fused} BatchNorm layer(s) folded into the layer before them ({left} left); largest "
             f"logit difference {fuse_diff:.2e}")
    if half:
        model = _half_copy(model)
    deployed = Deployed(model, loaded.info.mean, loaded.info.std, loaded.task.probabilities, _mean_image(loaded)).eval()
    started = time.perf_counter()
    with replacing(out) as stage:
        path = stage / FILE_OF[fmt]
        exporter = _write(fmt, deployed, model, path, images[:2], opset, loaded.task.dense)
        checked, probs = _read_back(fmt, path, images, loaded)
        if loaded.task.dense and fmt == "onnx" and probs is not None:
            _check_other_size(path, deployed, images, run)
        k = loaded.task.class_outputs  # both heads of a localize run are checked: class scores, then the box
        diff = max_abs_diff(probs[:, :k], reference[:, :k]) if probs is not None else None
        box_diff = max_abs_diff(probs[:, k:], reference[:, k:]) if probs is not None and k is not None else None
        agree = float((probs[:, :k].argmax(1) == reference[:, :k].argmax(1)).float().mean()) if probs is not None else None
        if diff is not None and not (diff <= TOLERANCE[half] and agree >= 0.99 and  # a NaN difference fails too
                                     (box_diff is None or box_diff <= TOLERANCE[half])):
            box = f", largest box difference {box_diff:.2e}" if box_diff is not None else ""
            raise ManifestError(f"the {fmt} export of {run} does not predict as the run does (largest probability "
                                f"difference {diff:.2e}, top-1 agreement {agree:.1%}{box}, on {len(images)} {source}); "
                                f"nothing was written: report it, and try without --fuse-bn / --half")
        ModelInfo.copy(run, stage)
        if loaded.info.mean_image:
            shutil.copy(run / loaded.info.mean_image, stage / loaded.info.mean_image)
        result = ExportInfo(str(run), fmt, FILE_OF[fmt], fuse_bn, fused, left, half, opset if fmt == "onnx" else None,
                            exporter, list(images.shape[1:]), fuse_diff, diff, agree, checked, len(images), source,
                            round(time.perf_counter() - started, 2), __version__, torch.__version__, box_diff)
        if int8:
            result.int8 = _quantize(loaded, path, stage / INT8_FILE, calibration, calibration_source)
            info(f"--int8: {result.int8.quantizer}; calibrated on {escape(calibration_source)}")  # a path: no markup
        result.write(stage)
    return ExportResult(out, out / (INT8_FILE if int8 else FILE_OF[fmt]), result)


def _quantize(loaded, fp32: Path, path: Path, calibration: np.ndarray, source: str):
    """``export --int8``: the quantized file, compared with ``fp32`` and the run; ``int8.png`` beside it."""
    from cvkit.export.measure import compare
    from cvkit.plots.int8 import plot_int8

    quantizer, integer, float_ops = quantize(fp32, path, calibration, loaded.info.arch)
    as_trained = Deployed(loaded.model, loaded.info.mean, loaded.info.std, loaded.task.probabilities,
                          _mean_image(loaded)).eval()
    report = compare(loaded, as_trained, fp32, path, quantizer, integer, float_ops, calibration, source)
    plot_int8(report.size_bytes, report.latency_ms, report.val_metric, report.val, path.parent / "int8.png")
    if report.top1_agreement_fp32 is not None and report.top1_agreement_fp32 < INT8_AGREEMENT:
        info(f"--int8: the int8 file changes the top class of {1 - report.top1_agreement_fp32:.1%} of the val images; "
             f"try more --calibration-images, or deploy the fp32 model.onnx")
    return report


def _mean_image(loaded) -> np.ndarray | None:
    return np.load(loaded.run / loaded.info.mean_image) if loaded.info.mean_image else None


def _check_images(loaded) -> tuple[torch.Tensor, str]:
    """Float images in [0, 1], N x C x H x W: the run's val split (else train), or seeded noise."""
    from cvkit.data import load_split
    from cvkit.files.dataset import is_dataset, read_manifest

    data = loaded.data
    if data and is_dataset(data):
        splits = set(read_manifest(data)["split"])
        split = "val" if "val" in splits else "train"  # the test split stays unread
        try:
            part = load_split(data, split, loaded.input_size)
            if part.images.shape[3] == loaded.in_chans:
                x = torch.from_numpy(np.array(part.images[:CHECK_IMAGES])).permute(0, 3, 1, 2).float() / 255
                return x.contiguous(), f"{split} images of {data}"
        except (ManifestError, OptionError):
            pass
    gen = torch.Generator().manual_seed(0)
    return torch.rand(CHECK_IMAGES // 4, loaded.in_chans, *loaded.input_size, generator=gen), "random images"


@torch.inference_mode()
def _probs(module: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    return torch.cat([module(images[i:i + 64]) for i in range(0, len(images), 64)]).float()


@torch.inference_mode()
def _logits(model: torch.nn.Module, loaded, images: torch.Tensor) -> torch.Tensor:
    pre = Deployed(torch.nn.Identity(), loaded.info.mean, loaded.info.std, "ce", _mean_image(loaded))
    return model((images - pre.mean) / pre.std).float()


def _half_copy(model: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(model).half()


def _check_other_size(path: Path, deployed: Deployed, images: torch.Tensor, run: Path) -> None:
    """A dense run's ONNX file takes any height and width: checked on the images enlarged by a few pixels."""
    import onnxruntime as ort

    h, w = images.shape[2:]
    other = torch.nn.functional.interpolate(images[:4], size=(h + 8, w + 12), mode="bilinear", align_corners=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {"image": other.numpy()})[0]).float()
    want = _probs(deployed, other)
    if got.shape != want.shape or not max_abs_diff(got, want) <= TOLERANCE[False]:
        raise ManifestError(f"the onnx export of {run} does not take another image size as the run does (at "
                            f"{h + 8}x{w + 12}: shape {tuple(got.shape)}, expected {tuple(want.shape)}); nothing was "
                            f"written: report it, and try --format torchscript")


def _write(fmt: str, deployed: Deployed, model: torch.nn.Module, path: Path, example: torch.Tensor, opset: int,
           dense: bool = False) -> str:
    """Write the file; returns how (the exporter used). ``dense``: a segment net, whose ONNX graph takes
    any height and width."""
    if fmt == "safetensors":
        save_weights(path, model.state_dict(), {"format": "cvkit", "half": str(next(model.parameters()).dtype)})
        return "safetensors"
    if fmt == "torchscript":
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scripted = torch.jit.trace(deployed, example, check_trace=False)
            torch.jit.save(scripted, str(path))
        return "torch.jit.trace"
    return _write_onnx(deployed, path, example, opset, dense)


def _write_onnx(deployed: Deployed, path: Path, example: torch.Tensor, opset: int, dense: bool = False) -> str:
    """torch's TorchScript-based ONNX exporter (0.7 s for smallcnn here), else its torch.export-based one (7 s,
    needs onnxscript). ``dense``: height and width are dynamic as well as the batch."""
    names = {"input_names": ["image"], "output_names": ["probabilities"]}
    axes = {0: "batch", 2: "height", 3: "width"} if dense else {0: "batch"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(deployed, (example,), str(path), dynamo=False, opset_version=opset,
                              dynamic_axes={"image": axes, "probabilities": axes}, **names)
            return "torch.onnx (TorchScript)"
        except Exception as first:  # noqa: BLE001 - fall back to the other exporter, report both if it fails too
            try:
                batch = torch.export.Dim("batch", min=1, max=1 << 16)
                shapes = {0: batch}
                if dense:
                    shapes.update({2: torch.export.Dim("height", min=8, max=4096),
                                   3: torch.export.Dim("width", min=8, max=4096)})
                torch.onnx.export(deployed, (example,), str(path), dynamo=True, opset_version=opset,
                                  dynamic_shapes=(shapes,), **names)
                return "torch.onnx (torch.export)"
            except ImportError:
                raise OptionError("--format onnx needs onnx and onnxscript: pip install 'cvkit[onnx]'") from None
            except Exception as second:  # noqa: BLE001
                raise OptionError(f"this network cannot be exported to ONNX ({type(first).__name__}: "
                                  f"{str(first).splitlines()[0][:100]}; {type(second).__name__}: "
                                  f"{str(second).splitlines()[0][:100]}); try --format torchscript") from None


def _read_back(fmt: str, path: Path, images: torch.Tensor, loaded) -> tuple[str, torch.Tensor | None]:
    """Load the written file the way a user would and predict the check images."""
    if fmt == "safetensors":
        from cvkit.files.run import load_weights_file

        model = loaded.model  # takes the exported weights for the check, then its own back
        state = {k: v.float() for k, v in load_weights_file(path).items()}
        saved = {k: v.clone() for k, v in model.state_dict().items()}
        model.load_state_dict(state)
        probs = _probs(Deployed(model, loaded.info.mean, loaded.info.std, loaded.task.probabilities, _mean_image(loaded)), images)
        model.load_state_dict(saved)
        return "cvkit (safetensors)", probs
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch 2.14 calls TorchScript deprecated; it still loads and runs
            module = torch.jit.load(str(path), map_location="cpu")  # our own file, just written
        return "torch.jit.load", _probs(module, images)
    try:
        import onnxruntime as ort
    except ImportError:
        info("onnxruntime is not installed: the ONNX file is not checked (pip install 'cvkit[onnx]')")
        return "skipped (no onnxruntime)", None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = [session.run(None, {"image": images[i:i + 64].numpy()})[0] for i in range(0, len(images), 64)]
    return f"onnxruntime {ort.__version__}", torch.from_numpy(np.concatenate(out)).float()
