"""Tests of ``cvkit visualize`` and the receptive fields it crops with."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def check_png(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """A PNG that is a picture, not a blank: many distinct colours, and ``size`` (width, height) in
    pixels when given (one pixel of rounding allowed). Returns it as an RGB array."""
    with Image.open(path) as image:
        assert image.format == "PNG", path
        pixels = np.asarray(image.convert("RGB"))
    colours = np.unique(pixels.reshape(-1, 3).astype(np.int32) @ np.array([1 << 16, 1 << 8, 1], np.int32))
    assert len(colours) > 20, f"{path.name} has {len(colours)} colours: blank"
    if size is not None:
        assert abs(pixels.shape[1] - size[0]) <= 1 and abs(pixels.shape[0] - size[1]) <= 1, \
            f"{path.name} is {pixels.shape[1]}x{pixels.shape[0]}, expected {size[0]}x{size[1]}"
    return pixels
