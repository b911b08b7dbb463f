"""Evaluation memory on CUDA: a split twice as long costs its images' own bytes on the device and nothing
more, so a long evaluate does not grow until it runs out."""

from __future__ import annotations

import numpy as np
import torch

from cvkit.runtime import load_run
from tests.gpu.conftest import CUDA_ONLY, DEVICE, GPU

pytestmark = [*GPU, CUDA_ONLY]

IMAGES = 200_000  # 28 x 28 x 1: 157 MB of uint8 on the device, and twice that
MiB = 1 << 20


def _peak(loaded, images: np.ndarray) -> tuple[int, int]:
    """Bytes of CUDA memory above the start while ``images`` are predicted, at the peak and once done."""
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    start = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    probs, _ = loaded.predict(images, batch_size=512)
    torch.cuda.synchronize()
    assert probs.shape == (len(images), 10) and np.isfinite(probs).all()
    return torch.cuda.max_memory_allocated() - start, torch.cuda.memory_allocated() - start


def test_evaluation_memory_grows_only_by_the_images_held_on_the_device(device_run):
    """LoadedRun.predict is what evaluate, predict and export's checks run. A split under the resident
    limit (cvkit.data.batches.RESIDENT_BYTES) is copied to the device once, with an int64 label per image;
    everything else (activations, probabilities) must be per batch: kept on the device for the whole
    split, even the probabilities (40 bytes an image) would add 8 MB here, over the 4 MiB allowed."""
    loaded = load_run(device_run, torch.device(DEVICE))
    images = np.random.default_rng(0).integers(0, 256, (2 * IMAGES, 28, 28, 1), dtype=np.uint8)
    _peak(loaded, images[:1024])  # warm-up: cuDNN's kernels and workspaces, the allocator's first blocks
    short, left_short = _peak(loaded, images[:IMAGES])
    long, left_long = _peak(loaded, images)
    held = IMAGES * (28 * 28 * 1 + 8)  # the second half's images and labels
    assert long - short <= held + 4 * MiB, (short, long, held)
    assert max(left_short, left_long) <= 1 * MiB  # nothing stays behind once the predictions are returned
