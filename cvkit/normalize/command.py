"""``cvkit normalize``: per-channel mean and std of the train split, written to ``stats.json``.

Statistics come from the train split only (val and test must not leak into preprocessing), computed
by :func:`cvkit.transforms.stats.image_stats`; ``--from-arch`` takes a pretrained model's instead.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import numpy as np

from cvkit.data.cache import load_split
from cvkit.data.decode import check_workers
from cvkit.errors import OptionError, UnknownArchitecture
from cvkit.files.atomic import write_npy
from cvkit.files.dataset import DatasetInfo, Stats
from cvkit.files.lock import locked
from cvkit.transforms.stats import image_stats


def compute_stats(dataset: str | os.PathLike, size: tuple[int, int] | None = None, mode: str = "channel",
                  workers: int | None = None) -> tuple[Stats, np.ndarray | None]:
    """Mean and std per channel over the train split; with ``mode="pixel"`` also the mean image."""
    if mode not in ("channel", "pixel"):
        raise OptionError(f"--mode {mode} must be channel or pixel")
    data = load_split(dataset, "train", size, workers)
    n, h, w, c = data.images.shape
    mean, std, mean_image = image_stats(data.images, mode == "pixel")
    return Stats(mean, std, "train", int(n), [h, w], c, mode, "computed"), mean_image


def timm_arch_names() -> list[str]:
    import timm

    return timm.list_models()


def stats_from_arch(arch: str, channels: int) -> Stats:
    """The preprocessing statistics a pretrained timm model expects, folded to ``channels``."""
    import timm
    from timm.models import get_pretrained_cfg

    if not timm.is_model(arch) and not timm.is_model(arch.split(".")[0]):
        close = difflib.get_close_matches(arch, timm_arch_names(), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownArchitecture(f"Unknown architecture '{arch}'.{hint} See timm.list_models() for the names.")
    cfg = get_pretrained_cfg(arch) or get_pretrained_cfg(arch.split(".")[0])
    mean = list(getattr(cfg, "mean", None) or (0.485, 0.456, 0.406))
    std = list(getattr(cfg, "std", None) or (0.229, 0.224, 0.225))
    if channels == 1 and len(mean) == 3:  # a grayscale dataset: one channel with the average statistics
        mean, std = [sum(mean) / 3], [sum(std) / 3]
    return Stats([round(float(m), 6) for m in mean], [round(float(s), 6) for s in std], None, 0, None, channels,
                 "channel", f"timm:{arch}")


def normalize(dataset: str | os.PathLike, size: tuple[int, int] | None = None, mode: str = "channel",
              from_arch: str | None = None, workers: int | None = None) -> Stats:
    """Write ``DATASET/stats.json`` (and ``mean_image.npy`` in pixel mode); returns the statistics."""
    check_workers(workers)
    dataset = Path(dataset)
    with locked(dataset, "dataset"):  # not while prepare or augment rewrite it
        return _normalize(dataset, size, mode, from_arch, workers)


def _normalize(dataset: Path, size: tuple[int, int] | None, mode: str, from_arch: str | None,
               workers: int | None) -> Stats:
    info = DatasetInfo.read(dataset)
    if from_arch:
        if mode != "channel":
            raise OptionError("--from-arch gives per-channel statistics only; drop --mode pixel")
        stats = stats_from_arch(from_arch, info.channels)
        stats.size = list(size) if size else info.size
        mean_image = None
    else:
        stats, mean_image = compute_stats(dataset, size, mode, workers)
    if mean_image is not None:
        write_npy(dataset / "mean_image.npy", mean_image)
        stats.mean_image = "mean_image.npy"
    stats.write(dataset)
    return stats
