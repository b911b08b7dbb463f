"""Numeric targets of manifest rows, in the cached image's frame: localize boxes and regress targets.

Boxes and keypoints stay in manifest.csv in the image file's pixels, beside its ``width`` and
``height``; a cache of any size maps them here exactly as decoding resizes the image
(:meth:`~cvkit.files.images.Resize.point_map`). Other regress targets are taken as they are.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cvkit.errors import ManifestError
from cvkit.files.dataset import BOX_COLUMNS, LOCALIZE, REGRESS, SIZE_COLUMNS, DatasetInfo
from cvkit.files.images import Resize


def _columns(part: "pd.DataFrame", names: list[str], path: Path) -> np.ndarray:  # noqa: F821
    """The named columns as float64, or a one-line error naming the first bad manifest row."""
    import pandas as pd

    missing = [c for c in names if c not in part.columns]
    if missing:
        raise ManifestError(f"{path} lacks the column '{missing[0]}' its task needs; rerun 'cvkit prepare'")
    values = part[list(names)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ManifestError(f"{path} row {int(part.index[i]) + 2}: '{names[j]}' is not a finite number; rerun "
                            f"'cvkit prepare' or fix that row")
    return values


def to_cache_frame(values: np.ndarray, sizes: np.ndarray, size: tuple[int, int], resize: str) -> np.ndarray:
    """x, y columns (alternating) of images of ``sizes`` (N x 2: width, height) moved into an ``size``
    cache's pixels."""
    out = values.copy()
    target = Resize(size[0], size[1], resize)
    for n, (w, h) in enumerate(sizes):
        sx, sy, ox, oy = target.point_map(int(h), int(w))
        out[n, 0::2] = values[n, 0::2] * sx + ox
        out[n, 1::2] = values[n, 1::2] * sy + oy
    return out


def target_values(part: "pd.DataFrame", info: DatasetInfo, size: tuple[int, int], path: Path) -> np.ndarray | None:  # noqa: F821
    """N x D float32: the boxes (localize, clipped to the image) or targets (regress) of the rows of
    ``part`` in an ``size`` cache's frame; None for tasks without numeric targets."""
    if info.task == LOCALIZE:
        sizes = _columns(part, list(SIZE_COLUMNS), path)
        boxes = to_cache_frame(_columns(part, list(BOX_COLUMNS), path), sizes, size, info.resize)
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, size[1])
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, size[0])
        return boxes.astype(np.float32)
    if info.task == REGRESS:
        values = _columns(part, list(info.targets), path)
        if info.keypoints:
            values = to_cache_frame(values, _columns(part, list(SIZE_COLUMNS), path), size, info.resize)
        return values.astype(np.float32)
    return None


def image_frames(input_size: tuple[int, int], resize: str, sizes: list[tuple[int, int]]) -> np.ndarray:
    """N x 4 (sx, sy, ox, oy): normalized positions of the network's input (0..1 across it) in each image
    file's pixels (``sizes``: height, width), ``x * sx + ox``: the inverse of the resize decoding did."""
    h, w = input_size
    target = Resize(h, w, resize)
    frames = np.empty((len(sizes), 4), dtype=np.float64)
    for n, (fh, fw) in enumerate(sizes):
        sx, sy, ox, oy = target.point_map(int(fh), int(fw))
        frames[n] = (w / sx, h / sy, -ox / sx, -oy / sy)
    return frames


def cache_frames(n: int, size: tuple[int, int]) -> np.ndarray:
    """N x 4 frames putting normalized positions into the pixels of an ``size`` (height, width) image."""
    return np.tile(np.array([size[1], size[0], 0.0, 0.0]), (n, 1))
