"""``cvkit export``: a run as an ONNX, TorchScript or safetensors file, checked against the run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cvkit.cli.common import emit, state
from cvkit.cli.options import Force, Out
from cvkit.progress import console


def export_command(
    run: Annotated[Path, typer.Argument(help="A run directory written by 'cvkit train'.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="onnx, torchscript or safetensors.")] = "onnx",
    fuse_bn: Annotated[bool, typer.Option("--fuse-bn", help=(
        "Fold each BatchNorm into the convolution or linear layer before it (at test time BN is a fixed affine "
        "map): fewer layers, the same predictions. onnx and torchscript only."))] = False,
    half: Annotated[bool, typer.Option("--half", help="fp16 weights (half the size; checked with a looser "
                                                      "tolerance).")] = False,
    opset: Annotated[int, typer.Option(help="ONNX opset version.")] = 18,
    int8: Annotated[bool, typer.Option("--int8", help=(
        "Also write model.int8.onnx: the ONNX graph statically quantized to int8 (onnxruntime, QDQ, per-channel "
        "weights), calibrated on train images of the run's dataset, with its file size, CPU latency and val "
        "figure against fp32 in export.json and int8.png. --format onnx only."))] = False,
    calibration_images: Annotated[Optional[int], typer.Option(help=(
        "--int8: how many train images (a seeded sample) set the activations' ranges. [default: 256]"))] = None,
    out: Out = None,
    force: Force = False,
) -> None:
    """Write RUN as a deployable file and check it: the exported file, read back (onnxruntime for ONNX when
    installed, torch.jit.load, cvkit's loader), must predict the run's val images as the run does; the largest
    probability difference and the top-1 agreement are printed and kept in export.json.

    ONNX and TorchScript take float32 images N x C x H x W in [0, 1] at the run's size and return class
    probabilities (normalization included); model.json beside the file gives the size, channels and class names.
    The safetensors export is a run folder cvkit predict/evaluate read. A TorchScript file runs code when loaded:
    load only files you trust.

    Default --out: RUN/export_FORMAT (replaced when run again).

    With --int8 the path printed is model.int8.onnx's (model.onnx, the checked fp32 file, is kept beside it).

    Example: cvkit export runs/fmnist --format onnx --fuse-bn --int8
    """
    from cvkit.export import export_run

    result = export_run(run, fmt, out, fuse_bn, half, opset, force=force or out is None, int8=int8,
                        calibration_images=calibration_images)
    if not state.quiet:
        i = result.info
        box = f", box {i.max_abs_box_diff:.2e}" if i.max_abs_box_diff is not None else ""
        check = (f"largest probability difference {i.max_abs_prob_diff:.2e}{box}, top-1 agreement {i.top1_agreement:.1%} "
                 f"on {i.check_images} {i.check_source} ({i.checked_with})" if i.max_abs_prob_diff is not None
                 else f"not checked: {i.checked_with}")
        console.print(f"{result.file}: {i.exporter}{', BatchNorm folded' if i.fuse_bn else ''}"
                      f"{', fp16' if i.half else ''}; {check}", highlight=False, soft_wrap=True)
        if i.int8 is not None:
            _print_int8(i.int8)
    emit(str(result.file))


def _print_int8(q) -> None:
    size = q.size_bytes
    latency = "; ".join(f"batch {b} {q.latency_ms['fp32'][b]:.3g} -> {q.latency_ms['int8'][b]:.3g} ms"
                        for b in q.latency_ms["int8"])
    console.print(f"int8: {size['fp32'] / 1e6:.2f} MB -> {size['int8'] / 1e6:.2f} MB; {latency} (onnxruntime, "
                  f"{q.latency_threads} CPU thread)", highlight=False, soft_wrap=True)
    if q.val_images:
        agree = f", top-1 agreement with fp32 {q.top1_agreement_fp32:.1%}" if q.top1_agreement_fp32 is not None else ""
        console.print(f"int8: {q.val_metric} {q.val['int8']:.4f} (fp32 file {q.val['fp32']:.4f}, run {q.val['run']:.4f}) "
                      f"on {q.val_images} val images{agree}", highlight=False, soft_wrap=True)
    else:
        console.print("int8: no val split to score it on", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("export")(export_command)
