"""``cvkit predict`` on a dense (segmentation) run: a label map per image at the image file's own size.

Each image is decoded as ``prepare`` decodes it but not resized (``fit``: squashed to the run's input
size, and the probabilities resized back to the file's size), predicted in
overlapping tiles of the run's input size (:mod:`cvkit.runtime.tiles`), and handed to the task, which
writes its files (label map, overlay, probabilities) and the image's row of predictions.csv.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cvkit.files.images import BadImage, Resize, read_image_file
from cvkit.progress import progress_bar
from cvkit.runtime.run import LoadedRun
from cvkit.runtime.tiles import predict_tiled


def predict_dense(loaded: LoadedRun, paths: list[str], names: list[str], stage: Path, tta: bool = False,
                  batch_size: int = 32, keep_probs: bool = False, fit: bool = False,
                  max_pixels: int | None = None) -> tuple["pd.DataFrame", list[tuple[str, str]], np.ndarray]:  # noqa: F821
    """Predict and write every readable image of ``paths`` (``names``: a unique file stem each) into
    ``stage``; returns predictions.csv's rows, the unreadable images with the reason, and each readable
    image's share of pixels per class (N x K, for the summary)."""
    import pandas as pd

    task, rows, rejected, shares = loaded.task, [], [], []
    # --fit squashes the whole image (a crop would leave part of it without a prediction)
    resize = Resize(*loaded.input_size, "squash") if fit else None
    with progress_bar("Segmenting", total=len(paths)) as bar:
        for path, name in zip(paths, names):
            try:
                decoded, _ = read_image_file(path, loaded.in_chans, resize, max_pixels)
            except BadImage as e:
                rejected.append((path, str(e)))
                bar.advance(1)
                continue
            probs = predict_tiled(loaded.model, decoded.array, loaded.pre, loaded.input_size, task.probabilities,
                                  loaded.precision, batch_size, task.flip_back if tta else None)
            image = decoded.array
            if fit:  # back to the file's pixels (the decoded image, before resizing, at that size)
                h, w = decoded.size
                probs = F.interpolate(torch.from_numpy(probs)[None], size=(h, w), mode="bilinear",
                                      align_corners=False)[0].numpy()
                image, _ = read_image_file(path, loaded.in_chans, None, max_pixels)
                image = image.array
            row = task.write_prediction(stage, name, image, probs, keep_probs)
            rows.append({"path": path, **row})
            shares.append([row[f"pixels_{c}"] / max(1, image.shape[0] * image.shape[1]) for c in task.classes])
            bar.advance(1)
    return pd.DataFrame(rows), rejected, np.array(shares, dtype=np.float64).reshape(-1, len(task.classes))
