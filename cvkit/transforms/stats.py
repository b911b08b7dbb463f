"""Per-channel mean and std of uint8 images (what ``cvkit normalize`` stores and ``train`` computes
when a selection has no ``stats.json``): read in bounded chunks with exact integer sums, so memory
stays constant and the result does not depend on the chunk size."""

from __future__ import annotations

import numpy as np

from cvkit.data.cache import COPY_BYTES
from cvkit.progress import progress_bar


def image_stats(images: np.ndarray, want_mean_image: bool = False) -> tuple[list[float], list[float], np.ndarray | None]:
    """Mean and std per channel (in [0, 1] units) of N x H x W x C uint8 images; optionally the mean image."""
    n, h, w, c = images.shape
    total = np.zeros(c, dtype=np.uint64)
    squares = np.zeros(c, dtype=np.uint64)
    pixel_sum = np.zeros((h, w, c), dtype=np.uint64) if want_mean_image else None
    step = max(1, COPY_BYTES // (h * w * c * 4))
    with progress_bar("Statistics", total=n) as bar:
        for i in range(0, n, step):
            chunk = np.asarray(images[i:i + step])
            flat = chunk.reshape(-1, c)
            total += flat.sum(0, dtype=np.uint64)
            wide = flat.astype(np.uint32)
            squares += (wide * wide).sum(0, dtype=np.uint64)
            if pixel_sum is not None:
                pixel_sum += chunk.sum(0, dtype=np.uint64)
            bar.advance(len(chunk))
    count = max(1, n * h * w)
    mean = total.astype(np.float64) / count / 255.0
    var = squares.astype(np.float64) / count / 255.0**2 - mean**2
    std = np.sqrt(np.maximum(var, 0.0))
    std = np.where(std > 0, std, 1.0)  # a constant channel: leave its scale alone rather than divide by 0
    mean_image = (pixel_sum.astype(np.float64) / max(1, n) / 255.0).astype(np.float32) if pixel_sum is not None else None
    return [round(float(m), 6) for m in mean], [round(float(s), 6) for s in std], mean_image
