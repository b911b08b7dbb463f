"""``evaluate --shard I/N`` and ``evaluate --merge``: a large evaluation split over machines.

Share I of N is a contiguous run of the split's images (``cvkit.data.selection.shard_range``); its
folder ``OUT/shard-I-of-N`` keeps the probabilities (``probabilities.npy``), ``predictions.csv`` and
``shard.json``. The merge checks that the N shards are all there and of the same evaluation,
concatenates their probabilities and writes the report an unsharded run writes, from them and the
split's labels and images (no forward pass), keeping the shard folders.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from cvkit.data.cache import SplitData
from cvkit.data.selection import shard_range
from cvkit.errors import ManifestError, OptionError
from cvkit.files.evaluate import ShardInfo
from cvkit.tasks import Task, TaskSpec, create_task

SHARD = re.compile(r"^shard-(\d+)-of-(\d+)$")


def shard_folder(out: Path, shard: tuple[int, int]) -> Path:
    return out / f"shard-{shard[0]}-of-{shard[1]}"


def write_shard(out: Path, task: Task, probs: np.ndarray, data: SplitData, shard: tuple[int, int],
                extra: dict[str, Any]) -> dict:
    from cvkit.files.atomic import write_csv, write_npy
    from cvkit.files.outputs import replacing

    n_total = int(extra.pop("total"))
    rows = shard_range(n_total, *shard)
    metrics = {**task.metrics(probs, task.targets(data)), **extra, "shard": list(shard)} if len(
        data.labels) else {"count": 0, **extra, "shard": list(shard)}
    with replacing(out) as stage:
        write_npy(stage / "probabilities.npy", probs.astype(np.float64))
        write_csv(stage / "predictions.csv", task.prediction_table(data.paths, probs, task.targets(data)), "%.6g")
        ShardInfo(shard[0], shard[1], rows.start, rows.stop, n_total, extra["split"], os.path.abspath(extra["data"]),
                  [os.path.abspath(r) for r in extra["runs"]],
                  extra["tta"], list(data.classes), {k: v for k, v in extra.items()
                                                     if k not in ("split", "data", "runs", "tta")}).write(stage)
    return metrics


def merge_shards(out: Path, split: str, top_n: int = 16) -> dict[str, Any]:
    """Put the shard folders of ``out`` together into the report of the whole split (written into ``out``)."""
    from cvkit.data import load_split
    from cvkit.evaluate.report import write_report
    from cvkit.files.run import ModelInfo

    if not out.is_dir():
        raise OptionError(f"--merge: {out} does not exist; run 'cvkit evaluate ... --shard I/N' for each share first")
    found = sorted((int(m.group(1)), int(m.group(2)), p) for p in out.iterdir() if (m := SHARD.match(p.name)))
    if not found:
        raise OptionError(f"--merge: {out} holds no shard-I-of-N folders; run 'cvkit evaluate ... --shard I/N' first")
    counts = {n for _, n, _ in found}
    if len(counts) > 1:
        raise ManifestError(f"--merge: {out} holds shards of different splits into N ({sorted(counts)}); remove the "
                            f"stale ones")
    count = counts.pop()
    missing = sorted(set(range(count)) - {i for i, _, _ in found})
    if missing:
        raise ManifestError(f"--merge: shard {missing[0]}/{count} is missing from {out} ({len(missing)} of {count} "
                            f"missing); run 'cvkit evaluate ... --shard {missing[0]}/{count}'")
    infos = [ShardInfo.read(p) for _, _, p in found]
    first = infos[0]
    for info, (_, _, path) in zip(infos, found):
        same = (info.split, info.data, info.runs, info.tta, info.extra.get("tta_views"), info.total, info.classes) == (
            first.split, first.data, first.runs, first.tta, first.extra.get("tta_views"), first.total, first.classes)
        if not same or info.split != split:
            raise ManifestError(f"--merge: {path} is a shard of another evaluation (split, data, runs, tta or size "
                                f"differ from {found[0][2].name}, or --split {split}); rerun it")
    probs = np.concatenate([np.load(p / "probabilities.npy") for _, _, p in found])
    info = ModelInfo.read(first.runs[0])
    data = load_split(first.data, first.split, None if info.score_maps else tuple(info.input_size))
    if len(data.labels) != first.total or len(probs) != first.total:
        raise ManifestError(f"--merge: the shards hold {len(probs)} predictions, {first.data} has {len(data.labels)} "
                            f"{first.split} images now; rerun the shards")
    extra = {"split": first.split, "data": first.data, "runs": first.runs, "tta": first.tta, **first.extra,
             "shards": count}
    # What the run's task learned and needs (multi-label thresholds, regress's keypoints): as evaluate scores it.
    task = create_task(info.task, TaskSpec(info.classes, info.loss, state=info.task_state))
    scaled = first.extra.get("calibration")
    if isinstance(scaled, dict) and scaled.get("temperature"):  # the shards' probabilities are calibrated
        task.set_temperature(scaled["temperature"])
    return write_report(out, task, probs, data, extra, top_n, keep=tuple(p.name for _, _, p in found))
