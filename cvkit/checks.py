"""Checks every command shares: a float option is a finite number, a seed is one numpy and torch take.

``float("nan")`` slips through every range check (``nan < 0`` and ``nan > 1`` are both False), so
each float a user gives, on the command line or in a JSON file cvkit reads, passes here first. The
CLI's error handler runs :func:`require_finite` over every float option of every command; the
config dataclasses (``TrainConfig``, ``AugmentPolicy``) run :func:`finite_fields` for library callers
and for files edited by hand.
"""

from __future__ import annotations

import math
from dataclasses import fields, is_dataclass
from typing import Any

from cvkit.errors import OptionError


def nonfinite(value: Any) -> float | None:
    """The first NaN or infinite float in ``value`` (a number or a list/tuple of them), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else value
    if isinstance(value, (list, tuple)):
        for item in value:
            bad = nonfinite(item)
            if bad is not None:
                return bad
    return None


def require_finite(option: str, value: Any, where: str = "") -> Any:
    """``value`` unchanged, or an OptionError naming ``option`` (and ``where``: the file it came from)."""
    bad = nonfinite(value)
    if bad is not None:
        at = f"{where}: " if where else ""
        shown = ",".join(f"{v:g}" for v in value) if isinstance(value, (list, tuple)) else f"{bad:g}"
        raise OptionError(f"{at}{option} {shown} is not a finite number; give a number (NaN and infinity mean "
                          f"nothing here)")
    return value


def finite_fields(obj: Any, where: str = "") -> None:
    """Refuse a dataclass whose float fields hold NaN or infinity, naming the field as its option."""
    assert is_dataclass(obj)
    for f in fields(obj):
        require_finite("--" + f.name.replace("_", "-"), getattr(obj, f.name), where)


MAX_SEED = 2**32 - 1  # numpy's legacy seeding takes no more; torch and default_rng take it too


def check_seed(seed: int, option: str = "--seed") -> int:
    """A whole number from 0 to MAX_SEED: numpy refuses negative seeds, and larger ones overflow."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise OptionError(f"{option} {seed} must be a whole number from 0 to {MAX_SEED}")
    return seed


def check_batch_size(batch_size: int) -> None:
    """``--batch-size`` of the commands that only predict (evaluate, predict, retrieve): at least 1."""
    if batch_size < 1:
        raise OptionError(f"--batch-size {batch_size} must be at least 1")
