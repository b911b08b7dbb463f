"""``export --int8``: onnxruntime's static quantizer against PyTorch's, on a Fashion-MNIST smallcnn.

The run: cvkit's defaults (smallcnn), ``train --epochs 2`` on the prepared Fashion-MNIST (made once under
WORK, read only here), or ``--run``. Both candidates calibrate on the same 256 train images (the sample
``export --int8`` takes) and are scored on the 6,000 val images; the test split is not read.

- onnxruntime: ``cvkit export RUN --int8`` itself (``quantize_static``, QDQ, per-channel int8 weights,
  uint8 activations, MinMax), timed in onnxruntime.
- PyTorch: its PT2E flow (``quantize_pt2e`` with X86InductorQuantizer) moved out of torch into torchao,
  which is not installed here; PyTorch's FX graph mode (``torch.ao.quantization.quantize_fx``, the x86
  qconfig: per-channel int8 weights, uint8 activations, histogram observers), the flow PT2E replaces,
  is measured instead, timed in PyTorch (quantized models do not export to ONNX: recorded).

Latency: one CPU thread for both, at batch 1 and 64, the best of up to 400 runs with the four models
(fp32 and int8 in each runtime) taking turns (figures on a machine other jobs use are noisy). Size: the
file each flow deploys (the ONNX file; TorchScript of the quantized module).

Usage: python bench/bench_int8.py [--run RUN]
Writes bench/results/int8.json.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import CVKIT, WORK, fmnist_dataset, run_measured, write_result  # noqa: E402

from cvkit.data import load_split  # noqa: E402
from cvkit.export.deploy import Deployed  # noqa: E402
from cvkit.export.int8 import calibration_set  # noqa: E402
from cvkit.runtime import load_run  # noqa: E402

BATCHES = (1, 64)


def interleaved_ms(calls: dict, x_of: dict, runs: int = 400, seconds: float = 6.0) -> dict[str, float]:
    """Best milliseconds of each call on its input, the calls taking turns (a load that comes and goes slows
    them alike; the best run is the least disturbed one)."""
    for name, fn in calls.items():
        fn(x_of[name])
    best, spent, done = dict.fromkeys(calls, float("inf")), 0.0, 0
    while done < 3 or (done < runs and spent < seconds):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn(x_of[name])
            took = time.perf_counter() - start
            best[name], spent = min(best[name], took), spent + took
        done += 1
    return {name: round(t * 1000, 4) for name, t in best.items()}


def onnxruntime_candidate(run: Path, out: Path) -> dict:
    seconds, _, _ = run_measured(CVKIT + ["-q", "export", str(run), "--int8", "--out", str(out), "--force"])
    q = json.loads((out / "export.json").read_text())["int8"]
    return {"export_wall_seconds": round(seconds, 1), "size_bytes": q["size_bytes"], "latency_ms_export_json": q["latency_ms"],
            "val_acc": q["val"], "top1_agreement_fp32": q["top1_agreement_fp32"], "float_ops": q["float_ops"],
            "quantizer": q["quantizer"]}


@torch.inference_mode()
def pytorch_candidate(run: Path) -> dict:
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    loaded = load_run(run, torch.device("cpu"), precision="fp32")
    deployed = Deployed(loaded.model, loaded.info.mean, loaded.info.std, loaded.task.probabilities).eval()
    calibration = torch.from_numpy(calibration_set(loaded, 256)[0])
    torch.backends.quantized.engine = "x86"
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice
        prepared = prepare_fx(copy.deepcopy(deployed), get_default_qconfig_mapping("x86"), (calibration[:2],))
        for i in range(0, len(calibration), 32):
            prepared(calibration[i:i + 32])
        quantized = convert_fx(prepared)
        seconds = time.perf_counter() - started
        files = {}
        for name, module in (("fp32", deployed), ("int8", quantized)):
            buffer = io.BytesIO()
            torch.jit.save(torch.jit.trace(module, calibration[:2]), buffer)
            files[name] = len(buffer.getvalue())
    val = load_split(loaded.data, "val", loaded.input_size)
    x = torch.from_numpy(np.ascontiguousarray(val.images.transpose(0, 3, 1, 2))).float() / 255
    probs = {name: torch.cat([m(x[i:i + 256]) for i in range(0, len(x), 256)]).argmax(1).numpy()
             for name, m in (("fp32", deployed), ("int8", quantized))}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(quantized, (calibration[:2],), str(WORK_INT8 / "fx.onnx"), dynamo=False)
        onnx = "exported"
    except Exception as e:  # noqa: BLE001
        onnx = f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
    return {"quantizer": f"torch {torch.__version__} quantize_fx (x86 qconfig)", "quantize_seconds": round(seconds, 2),
            "size_bytes": files,
            "val_acc": {k: round(float((v == val.labels).mean()), 4) for k, v in probs.items()},
            "top1_agreement_fp32": round(float((probs["int8"] == probs["fp32"]).mean()), 4), "onnx_export": onnx,
            "pt2e": "not measured: torch.ao.quantization.quantize_pt2e moved to torchao, not installed (no network)"}, \
        {"fp32": deployed, "int8": quantized}, x


def latency(out: Path, modules: dict, x: torch.Tensor) -> dict:
    """Batch 1 and 64, one thread: onnxruntime on the two files `export --int8` wrote, PyTorch on the fp32
    module and the FX-quantized one, all four taking turns."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    sessions = {name: ort.InferenceSession(str(out / file), options, providers=["CPUExecutionProvider"])
                for name, file in (("fp32", "model.onnx"), ("int8", "model.int8.onnx"))}
    result = {}
    for b in BATCHES:
        calls = {**{f"onnxruntime_{n}": (lambda a, s=s: s.run(None, {"image": a})) for n, s in sessions.items()},
                 **{f"pytorch_{n}": m for n, m in modules.items()}}
        x_of = {name: (x[:b].numpy() if name.startswith("onnx") else x[:b]) for name in calls}
        with torch.inference_mode():
            result[str(b)] = interleaved_ms(calls, x_of)
    return result


WORK_INT8 = WORK.parent / "cvkit-bench-int8"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, help="a smallcnn run on Fashion-MNIST (default: trained once, 2 epochs)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    WORK_INT8.mkdir(parents=True, exist_ok=True)
    run = args.run or WORK_INT8 / "runs" / "smallcnn_e2"
    if not (run / "model.safetensors").is_file():
        run_measured(CVKIT + ["-q", "train", str(fmnist_dataset("fmnist")), "--epochs", "2", "--out", str(run)])
    out = WORK_INT8 / "export_int8"
    onnxruntime = onnxruntime_candidate(run, out)
    pytorch, modules, x = pytorch_candidate(run)
    result = {"run": str(run), "threads": 1, "onnxruntime": onnxruntime, "pytorch": pytorch,
              "latency_ms_by_batch": latency(out, modules, x)}
    write_result("int8", result)


if __name__ == "__main__":
    main()
