"""What ``export --int8`` reports: file sizes, onnxruntime latency and the val figure, fp32 against int8.

Latency is onnxruntime's on one CPU thread (a machine's other cores come and go with other jobs; one
thread is the figure that repeats), the best of several timed runs after one warm-up, the two files
taking turns, at batch 1 (one request) and batch 64 (throughput). The val figure is the run's task's own metric (``val_acc`` for classify)
of the run as trained (PyTorch, fp32), of the fp32 ONNX file and of the int8 one, on the run's val
split: the test split stays unread.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from cvkit.files.export import Int8Info

LATENCY_BATCHES = (1, 64)
LATENCY_THREADS = 1
# Each timing stops after this many runs or seconds, whichever comes first (at least 3 runs).
LATENCY_RUNS, LATENCY_SECONDS = 50, 1.0
VAL_BATCH = 256


def _session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = LATENCY_THREADS
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def latency_ms(files: dict[str, Path], images: np.ndarray, batch: int, runs: int = LATENCY_RUNS,
               seconds: float = LATENCY_SECONDS) -> dict[str, float]:
    """Milliseconds per forward pass of ``batch`` images (repeated from ``images`` when it has fewer) of each
    file. The files take turns, so a load that comes and goes on the machine slows them alike."""
    sessions = {name: _session(path) for name, path in files.items()}
    x = np.ascontiguousarray(np.resize(images, (batch, *images.shape[1:])))
    best = dict.fromkeys(files, float("inf"))
    for session in sessions.values():
        session.run(None, {"image": x})  # the first run allocates
    spent, done = 0.0, 0
    while done < 3 or (done < runs and spent < seconds):
        for name, session in sessions.items():
            start = time.perf_counter()
            session.run(None, {"image": x})
            took = time.perf_counter() - start
            best[name], spent = min(best[name], took), spent + took
        done += 1
    return {name: round(t * 1000, 4) for name, t in best.items()}


@torch.inference_mode()
def _val_probs(deployed: torch.nn.Module, files: dict[str, Path], split) -> dict[str, np.ndarray]:
    """Probabilities of the val images by the run as trained ("run") and by each file, a batch at a time
    (the split stays memory-mapped)."""
    sessions = {name: _session(path) for name, path in files.items()}
    parts: dict[str, list[np.ndarray]] = {"run": [], **{name: [] for name in files}}
    for i in range(0, len(split.images), VAL_BATCH):
        x = np.ascontiguousarray(np.asarray(split.images[i:i + VAL_BATCH]).transpose(0, 3, 1, 2)).astype(np.float32) / 255
        parts["run"].append(deployed(torch.from_numpy(x)).double().numpy())
        for name, session in sessions.items():
            parts[name].append(session.run(None, {"image": x})[0].astype(np.float64))
    return {name: np.concatenate(p) for name, p in parts.items()}


def _val_split(loaded):
    """The run's val split when its dataset has one whose targets are the run's; else None."""
    from cvkit.data import load_split
    from cvkit.files.dataset import read_manifest

    if "val" not in set(read_manifest(loaded.data)["split"]):
        return None
    split = load_split(loaded.data, "val", loaded.input_size)
    return None if loaded.task.mismatch(split) or split.images.shape[3] != loaded.in_chans else split


def compare(loaded, deployed: torch.nn.Module, fp32: Path, int8: Path, quantizer: str, integer_nodes: int,
            float_ops: list[str], calibration: np.ndarray, calibration_source: str) -> Int8Info:
    """Size, latency and val figures of the two files (``deployed``: the run as trained, for its own figure)."""
    by_batch = {str(b): latency_ms({"fp32": fp32, "int8": int8}, calibration, b) for b in LATENCY_BATCHES}
    latency = {name: {b: times[name] for b, times in by_batch.items()} for name in ("fp32", "int8")}
    task = loaded.task
    split = _val_split(loaded)
    scores: dict[str, float | None] = {"run": None, "fp32": None, "int8": None}
    agreement = diff = None
    images = 0
    if split is not None:
        probs = _val_probs(deployed, {"fp32": fp32, "int8": int8}, split)
        targets = task.targets(split)
        scores = {name: round(float(task.score(p, targets)), 4) for name, p in probs.items()}
        k = task.class_outputs
        if task.outputs_are == "classes":
            agreement = round(float((probs["int8"][:, :k].argmax(1) == probs["fp32"][:, :k].argmax(1)).mean()), 4)
        diff = round(float(np.abs(probs["int8"] - probs["fp32"]).max()), 4)
        images = len(split.images)
    return Int8Info(int8.name, quantizer, integer_nodes, float_ops, calibration_source,
                    {"fp32": fp32.stat().st_size, "int8": int8.stat().st_size}, latency, LATENCY_THREADS,
                    f"val_{task.metric}", images, scores, agreement, diff)
