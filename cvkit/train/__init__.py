"""Training: the fit loop, optimizers and schedules, early stopping, checkpoints, resume.

``from cvkit.train import fit, TrainConfig`` works as usual; the names load on first use so that
``cvkit.train.losses`` (which inference needs) imports without pulling in the fit loop.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"TrainConfig": "cvkit.train.config", "TrainResult": "cvkit.train.trainer", "fit": "cvkit.train.trainer",
            "load_config": "cvkit.train.trainer", "lr_find": "cvkit.train.range_test"}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'cvkit.train' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
