"""New images for a trained run, read exactly as ``prepare`` decodes them, with the rejected list."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cvkit.data.decode import Task, decode_all
from cvkit.data.sources import files_below
from cvkit.errors import SourceError
from cvkit.files.images import Resize


@dataclass
class NewImages:
    """The readable images (N x H x W x C uint8) with their paths, and the unreadable ones with the reason."""

    images: np.ndarray
    paths: list[str]
    rejected: list[tuple[str, str]]
    sizes: list[tuple[int, int]] = field(default_factory=list)  # each readable file's (height, width)


def collect_inputs(inputs: list[str]) -> list[str]:
    """Image paths from files, folders (searched recursively) and CSV files with a ``path`` column."""
    import pandas as pd

    paths: list[str] = []
    for raw in inputs:
        if "\x00" in raw:
            raise SourceError("an INPUT holds a NUL byte; give image files, folders or a CSV of paths")
        p = Path(raw)
        if p.is_dir():
            paths.extend(os.path.abspath(f) for f in files_below(p))
        elif p.suffix.lower() == ".csv" and p.is_file():
            try:
                frame = pd.read_csv(p, dtype=str, keep_default_na=False)
            except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
                raise SourceError(f"{p} cannot be read as CSV ({e}); list the images under a 'path' header") from None
            if "path" not in frame.columns:
                raise SourceError(f"{p} has no 'path' column; list the images under a 'path' header")
            for row, q in enumerate(frame["path"], start=2):
                if not q or "\x00" in q:
                    raise SourceError(f"{p} row {row}: the path is empty or holds a NUL byte; fix that row")
                paths.append(os.path.normpath(p.parent.resolve() / q))
        elif p.exists() or p.is_symlink():
            paths.append(os.path.abspath(p))
        else:
            raise SourceError(f"INPUT '{raw}' does not exist; give image files, folders or a CSV of paths")
    if not paths:
        raise SourceError("no images found in the INPUTs; give image files, folders or a CSV of paths")
    return paths


def read_images(paths: list[str], size: tuple[int, int], channels: int, resize: str = "crop",
                workers: int | None = None) -> NewImages:
    """Decode, check and resize ``paths`` as ``prepare`` does; unreadable images are listed, not fatal."""
    h, w = size
    with tempfile.TemporaryDirectory(prefix="cvkit-images-") as tmp:
        pixels = Path(tmp) / "pixels.npy"
        np.lib.format.open_memmap(pixels, mode="w+", dtype=np.uint8, shape=(len(paths), h, w, channels)).flush()
        results = decode_all([Task(i, p) for i, p in enumerate(paths)], channels, Resize(h, w, resize),
                             out_path=str(pixels), workers=workers, description="Reading")
        good = np.array([r.index for r in results if not r.reason], dtype=np.int64)
        rejected = [(paths[r.index], r.reason) for r in results if r.reason]
        images = np.load(pixels, mmap_mode="r")[good] if len(good) else np.zeros((0, h, w, channels), np.uint8)
    size_of = {r.index: r.size for r in results if not r.reason}
    return NewImages(np.ascontiguousarray(images), [paths[i] for i in good], rejected, [size_of[i] for i in good])
