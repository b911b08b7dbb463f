"""Parallel decoding: check, hash and (optionally) resize many images into one uint8 array.

Work is cut into chunks handed to a pool of processes (Pillow's decoders need the GIL for their
Python parts, so threads would not scale). Each worker writes its pixels straight into a shared
memory-mapped ``.npy`` file, so only a few bytes of status per image cross process boundaries.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cvkit.errors import OptionError
from cvkit.files.images import BadImage, Resize, decode_image, encode_png, read_image_file, sha1_bytes
from cvkit.progress import progress_bar

# Below this many images a pool costs more to start than it saves.
POOL_THRESHOLD = 512
CHUNK = 256


@dataclass
class Task:
    """Decode ``path``, or first encode ``array`` as a PNG written to ``write_to``."""

    index: int
    path: str | None
    array: np.ndarray | None = None
    write_to: str | None = None


@dataclass
class Result:
    index: int
    sha1: str = ""
    reason: str | None = None  # why the image was rejected; None when it is fine
    gray: bool = True
    size: tuple[int, int] = (0, 0)  # (height, width) of the image file, EXIF orientation applied


_open_outputs: dict[str, np.ndarray] = {}


def shared_output(path: str | None) -> np.ndarray | None:
    """The memory-mapped ``.npy`` at ``path``, opened once per process (None: no output)."""
    if path is None:
        return None
    if path not in _open_outputs:
        _open_outputs.clear()
        _open_outputs[path] = np.load(path, mmap_mode="r+")
    return _open_outputs[path]


def _run_chunk(tasks: list[Task], channels: int | None, resize: Resize | None, max_pixels: int | None,
               out_path: str | None) -> list[Result]:
    out = shared_output(out_path)
    results = []
    for t in tasks:
        try:
            if t.array is not None:
                data = encode_png(t.array)
                Path(t.write_to).parent.mkdir(parents=True, exist_ok=True)
                Path(t.write_to).write_bytes(data)
                decoded, sha1 = decode_image(data, channels, resize, max_pixels), sha1_bytes(data)
            else:
                decoded, sha1 = read_image_file(t.path, channels, resize, max_pixels)
        except BadImage as e:
            results.append(Result(t.index, reason=str(e)))
            continue
        if out is not None:
            out[t.index] = decoded.array  # broadcasts one channel to three when channels are mixed
        results.append(Result(t.index, sha1, None, decoded.gray, decoded.size))
    return results


def check_workers(workers: int | None) -> None:
    """``--workers``: None (one per core) or at least 1."""
    if workers is not None and workers < 1:
        raise OptionError(f"--workers {workers} must be at least 1 (or left out: one per core)")


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 16))


def decode_all(tasks: list[Task], channels: int | None = None, resize: Resize | None = None,
               max_pixels: int | None = None, out_path: str | None = None, workers: int | None = None,
               description: str = "Decoding") -> list[Result]:
    """Decode every task; with ``out_path`` (an ``.npy`` of N x H x W x C uint8) store pixels at ``index``.

    Returns one :class:`Result` per task, in task order. Never raises for a bad image.
    """
    check_workers(workers)  # every command that decodes images comes here: none takes --workers 0
    if out_path is not None:
        np.load(out_path, mmap_mode="r")  # fail here, not in a worker, when the file is wrong
    return map_chunks(_run_chunk, tasks, workers, description, channels, resize, max_pixels, out_path)


def map_chunks(work: Callable[..., list], tasks: list, workers: int | None, description: str, *args) -> list:
    """``work(chunk, *args)`` over chunks of ``tasks`` (a module-level function: it runs in a pool of
    processes when there are many tasks), with a progress bar; the results in task order."""
    workers = default_workers() if workers is None else workers
    chunks = [tasks[i:i + CHUNK] for i in range(0, len(tasks), CHUNK)]
    results: list = []
    with progress_bar(description, total=len(tasks)) as bar:
        if workers == 1 or len(tasks) < POOL_THRESHOLD:
            for chunk in chunks:
                results.extend(work(chunk, *args))
                bar.advance(len(chunk))
            _open_outputs.clear()
        else:
            # spawn, not fork: the parent may hold threads (rich's refresh) and torch state.
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
                futures = [pool.submit(work, c, *args) for c in chunks]
                for future in futures:
                    part = future.result()
                    results.extend(part)
                    bar.advance(len(part))
    return results
