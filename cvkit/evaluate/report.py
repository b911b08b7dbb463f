"""The report ``evaluate`` writes from probabilities: metrics.json, and the task's predictions, tables and
pictures (one writer for a whole run and for merged shards)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cvkit.files.jsonio import write_json
from cvkit.files.outputs import replacing
from cvkit.tasks import Task


def write_report(out: Path, task: Task, probs: np.ndarray, split_data, extra: dict[str, Any], top_n: int,
                 keep: tuple[str, ...] = (), draw: Callable[[Path], None] | None = None) -> dict[str, Any]:
    """The task's metrics and files for ``probs`` on ``split_data``, written into ``out`` whole (``keep``:
    entries of ``out`` carried over; ``draw``: more pictures, drawn into the folder); returns the metrics."""
    metrics = {**task.metrics(probs, task.targets(split_data)), **extra}
    with replacing(out) as stage:
        for name in keep:
            shutil.copytree(out / name, stage / name)
        task.write_evaluation(stage, probs, split_data, top_n)
        if draw is not None:
            draw(stage)
        write_json(stage / "metrics.json", metrics)
    return metrics
