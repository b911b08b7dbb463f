"""``config.json``'s ``resolved``: what a run's ``auto`` options became and how it was set up.

Owned with the rest of config.json by :mod:`cvkit.files.config` (it reads and writes this part through
:class:`Resolved`); a module of its own so that the options' table stays readable.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass
class Resolved:
    """What a run's ``auto`` options became and how it was set up (config.json's ``resolved``): filled in
    by ``train``, read by ``--resume`` (epochs, selections), crossval's rerun check and the runtime's
    precision choice. Every field is None until train sets it; None fields are not written."""

    device: str | None = None
    precision: str | None = None
    memory_format: str | None = None
    lr: float | None = None
    epochs: int | None = None
    epochs_reason: str | None = None
    batch_size: int | None = None
    global_batch_size: int | None = None
    batch_size_per_process: int | None = None
    world_size: int | None = None
    weight_decay: float | None = None
    loader_workers: int | None = None
    resident: bool | None = None
    augment: dict[str, Any] | None = None
    augment_source: str | None = None
    input_size: list[int] | None = None
    in_chans: int | None = None
    stats: dict[str, Any] | None = None
    cvkit_version: str | None = None
    torch_version: str | None = None
    batchnorm_recalibration: dict[str, Any] | None = None
    selections: dict[str, Any] | None = None  # {"train": Selection JSON, "val": Selection JSON or None}
    budget: dict[str, Any] | None = None  # {"seconds", "first_plan", "wider_net" (train/budget_nets.py) or None}
    budget_replans: list[Any] | None = None
    restarts: list[Any] | None = None  # --restarts: each restart's seed and best val figure (as restarts.csv)
    speed_probe_ms_per_step: dict[str, Any] | None = None  # {"precision/memory_format": ms}
    label_smoothing: float | None = None  # --label-smoothing, or the task's default
    sampler_draws: list[float] | None = None  # --sampler: expected draws per class (label) in an epoch
    speed_probe_skipped: str | None = None  # why a candidate was not timed (bf16 on a CPU without it)
    im2col_weight_grad_ms: dict[str, Any] | None = None  # {layer: [oneDNN ms, im2col ms]}
    whitened: str | None = None  # --whiten: the first convolution that holds the whitening filters (frozen)
    keep_freed_memory: bool | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, data: dict[str, Any], path: Path | None = None, fix: str = "") -> "Resolved":
        """Keys written by other cvkit versions are ignored; a known key of the wrong type is refused."""
        from cvkit.files.jsonio import from_json as typed

        return typed(cls, data, path or Path("config.json"), fix or "start a new run", allow_unknown=True)
