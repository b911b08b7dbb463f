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
    cache's pixels (one point map per distinct file size, not per image)."""
    target = Resize(size[0], size[1], resize)
    distinct, which = np.unique(np.asarray(sizes, dtype=np.int64), axis=0, return_inverse=True)
    maps = np.array([target.point_map(int(h), int(w)) for w, h in distinct], dtype=np.float64)
    return apply_frames(values, maps[np.asarray(which).reshape(-1)])


def apply_frames(values: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """x, y columns (alternating) of ``values`` through each row's frame (sx, sy, ox, oy): ``x * sx + ox``,
    ``y * sy + oy`` (a copy, float64)."""
    out = np.array(values, dtype=np.float64)
    frames = np.asarray(frames, dtype=np.float64).reshape(-1, 4)
    out[:, 0::2] = out[:, 0::2] * frames[:, 0:1] + frames[:, 2:3]
    out[:, 1::2] = out[:, 1::2] * frames[:, 1:2] + frames[:, 3:4]
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
    if not len(sizes):
        return np.zeros((0, 4))
    distinct, which = np.unique(np.asarray(sizes, dtype=np.int64).reshape(-1, 2), axis=0, return_inverse=True)
    maps = np.array([target.point_map(int(fh), int(fw)) for fh, fw in distinct], dtype=np.float64)
    sx, sy, ox, oy = maps.T
    return np.stack([w / sx, h / sy, -ox / sx, -oy / sy], 1)[np.asarray(which).reshape(-1)]


def cache_frames(n: int, size: tuple[int, int]) -> np.ndarray:
    """N x 4 frames putting normalized positions into the pixels of an ``size`` (height, width) image."""
    return np.tile(np.array([size[1], size[0], 0.0, 0.0]), (n, 1))
