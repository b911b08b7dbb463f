"""``RUN/calibration.json``: the temperature(s) ``evaluate --calibrate`` fit on the val split.

``evaluate`` and ``predict`` divide the run's logits by them before the softmax (classify: one
temperature) or the sigmoids (multilabel: one per class). The file names the weights it was fit on
(the sha1 of ``model.safetensors``), so a run trained further is not silently given stale temperatures.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cvkit.errors import ManifestError
from cvkit.files.jsonio import from_json, read_json, write_json

CALIBRATION_JSON = "calibration.json"
METHODS = ("temperature", "per-class temperature")


def refit(run: str | os.PathLike) -> str:
    """What to do about a calibration.json that cannot be used."""
    return (f"run 'cvkit evaluate {run} --calibrate' to fit it again, or delete it (--no-calibration ignores it "
            f"for one command)")


def describe(temperature: list[float]) -> str:
    """The temperature(s) in a few characters, for messages and plot titles."""
    t = temperature
    return f"T={t[0]:.3f}" if len(t) == 1 else f"T={min(t):.3f}..{max(t):.3f} per class"


def weights_sha1(run: str | os.PathLike) -> str:
    """The sha1 of the run's model.safetensors: which weights a calibration belongs to."""
    digest = hashlib.sha1()
    with open(Path(run) / "model.safetensors", "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Calibration:
    """Temperature scaling fit on ``split`` (``count`` images) by minimizing the negative log-likelihood."""

    method: str  # one of METHODS
    temperature: list[float]  # one value (classify), or one per class (multilabel)
    split: str
    count: int
    tta: bool  # fit on the average of each image and its mirror (the run's flip TTA was on)
    nll_before: float  # on ``split``: mean negative log-likelihood with the raw logits, and after scaling
    nll_after: float
    ece_before: float
    ece_after: float
    weights_sha1: str
    tta_views: list[str] = field(default_factory=list)  # the test-time views averaged in the fit (tta: any)

    def fitted_views(self) -> tuple[str, ...]:
        """The views the temperature was fit on (a file without ``tta_views``: flip when ``tta``)."""
        return tuple(self.tta_views) if self.tta_views or not self.tta else ("flip",)

    def describe(self) -> str:
        return describe(self.temperature)

    def write(self, run: str | os.PathLike) -> None:
        write_json(Path(run) / CALIBRATION_JSON, asdict(self))

    @classmethod
    def read(cls, run: str | os.PathLike) -> "Calibration":
        path = Path(run) / CALIBRATION_JSON
        fix = refit(run)
        found = from_json(cls, read_json(path, fix), path, fix)
        if found.method not in METHODS:
            raise ManifestError(f"{path}: 'method' {found.method!r} is not one of {', '.join(METHODS)}; {fix}")
        if not found.temperature or not all(math.isfinite(t) and t > 0 for t in found.temperature):
            raise ManifestError(f"{path}: 'temperature' {found.temperature} must hold positive finite values; {fix}")
        return found

    @classmethod
    def read_if_present(cls, run: str | os.PathLike) -> "Calibration | None":
        return cls.read(run) if (Path(run) / CALIBRATION_JSON).exists() else None
