"""``cvkit predict``: class probabilities for new images (files, folders, or a CSV of paths)."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cvkit.errors import OptionError, SourceError
from cvkit.io import write_csv, write_rejected


@dataclass
class PredictResult:
    out: Path
    paths: list[str]
    probs: np.ndarray  # N x K
    classes: list[str]
    rejected: list[tuple[str, str]]

    def top_k(self, k: int) -> list[list[tuple[str, float]]]:
        order = np.argsort(-self.probs, axis=1, kind="stable")[:, :k]
        return [[(self.classes[j], float(self.probs[i, j])) for j in row] for i, row in enumerate(order)]


def collect_inputs(inputs: list[str]) -> list[str]:
    """Image paths from files, folders (searched recursively) and CSV files with a ``path`` column."""
    import pandas as pd

    from cvkit.data.sources import files_below

    paths: list[str] = []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            paths.extend(os.path.abspath(f) for f in files_below(p))
        elif p.suffix.lower() == ".csv" and p.is_file():
            frame = pd.read_csv(p, dtype=str, keep_default_na=False)
            if "path" not in frame.columns:
                raise SourceError(f"{p} has no 'path' column; list the images under a 'path' header")
            paths.extend(os.path.normpath(p.parent.resolve() / q) for q in frame["path"])
        elif p.exists() or p.is_symlink():
            paths.append(os.path.abspath(p))
        else:
            raise SourceError(f"INPUT '{raw}' does not exist; give image files, folders or a CSV of paths")
    if not paths:
        raise SourceError("no images found in the INPUTs")
    return paths


def predict(run: str | os.PathLike, inputs: list[str], out: str | os.PathLike | None = None, tta: bool = False,
            device: str = "auto", batch_size: int = 256, workers: int | None = None) -> PredictResult:
    """Predict every readable image of ``inputs``; unreadable ones are reported and skipped."""
    import pandas as pd
    import torch

    from cvkit.data.decode import Task, decode_all
    from cvkit.device import resolve_device
    from cvkit.infer import predict_batches
    from cvkit.io import Resize
    from cvkit.runs import load_run
    from cvkit.train.loader import Batches

    if batch_size < 1:
        raise OptionError("--batch-size must be at least 1")
    loaded = load_run(run, resolve_device(device))
    paths = collect_inputs(inputs)
    h, w = loaded.input_size
    c = int(loaded.info["in_chans"])
    with tempfile.TemporaryDirectory(prefix="cvkit-predict-") as tmp:
        pixels = Path(tmp) / "pixels.npy"
        np.lib.format.open_memmap(pixels, mode="w+", dtype=np.uint8, shape=(len(paths), h, w, c)).flush()
        results = decode_all([Task(i, p) for i, p in enumerate(paths)], c, Resize(h, w, loaded.info.get("resize", "crop")),
                             out_path=str(pixels), workers=workers, description="Reading")
        good = np.array([r.index for r in results if not r.reason], dtype=np.int64)
        rejected = [(paths[r.index], r.reason) for r in results if r.reason]
        images = np.load(pixels, mmap_mode="r")[good] if len(good) else np.zeros((0, h, w, c), np.uint8)
    kept = [paths[i] for i in good]
    if len(kept):
        batches = Batches(images, np.zeros(len(kept), np.int64), batch_size, loaded.device, shuffle=False)
        with torch.inference_mode():
            probs, _ = predict_batches(loaded.model, ((x, None) for x, _ in batches.epoch()), loaded.pre,
                                       loaded.info["loss"], loaded.precision, tta=tta,
                                       num_classes=len(loaded.classes))
    else:
        probs = np.zeros((0, len(loaded.classes)))
    out = Path(out) if out else loaded.run / "predict"
    out.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame({"path": kept, "predicted": [loaded.classes[i] for i in probs.argmax(1)] if len(kept) else [],
                          "probability": probs.max(1) if len(kept) else []})
    for i, name in enumerate(loaded.classes):
        table[f"prob_{name}"] = probs[:, i]
    write_csv(out / "predictions.csv", table, "%.6g")
    write_rejected(out / "rejected.csv", rejected)
    return PredictResult(out, kept, probs, loaded.classes, rejected)
