"""``evaluate --calibrate``: temperature scaling fit on the val split and kept in ``RUN/calibration.json``;
and what a calibrated run's report adds: NLL and ECE before and after on the evaluated split, and
``reliability.png``.

The fit reads the val split only (the test split is for the reported figure); evaluate and predict
apply the file from then on (``LoadedRun.uses_calibration``).
"""

from __future__ import annotations

from collections.abc import Sequence

from pathlib import Path
from typing import Any

import numpy as np
import torch

from cvkit.errors import OptionError
from cvkit.files.calibration import Calibration, weights_sha1
from cvkit.runtime import LoadedRun
from cvkit.tasks import Task
from cvkit.tasks.calibration import calibration_error, fit_temperature, reliability_bins
from cvkit.transforms.views import parse_views

FIT_SPLIT = "val"


def check_calibrate(runs: list[Any], shard: tuple[int, int] | None, calibration: bool) -> None:
    """Refuse --calibrate where it cannot fit one run's temperature on a whole val split."""
    if not calibration:
        raise OptionError("--calibrate fits a calibration and applies it; drop --no-calibration")
    if len(runs) > 1:
        raise OptionError("--calibrate fits one run's temperature; calibrate each RUN on its own, then evaluate the "
                          "ensemble (each member's calibration.json applies)")
    if shard is not None:
        raise OptionError("--calibrate fits on the whole val split in one process; calibrate first, then evaluate "
                          "with --shard (the calibration applies to every share)")


def check_scalable(loaded: LoadedRun) -> None:
    if loaded.task.scaling is None:
        raise OptionError(f"--calibrate: {loaded.run} predicts {loaded.task.name}, whose outputs are not class "
                          f"scores (temperature scaling is for classify and multilabel runs); leave --calibrate out")


def figures(task: Task, views: list[torch.Tensor], targets: np.ndarray,
            temperature: np.ndarray | None) -> tuple[np.ndarray, float, float]:
    """The probabilities of the logits ``views`` at ``temperature`` (None: raw), their NLL and their ECE."""
    with torch.no_grad():
        t = None if temperature is None else torch.as_tensor(temperature, dtype=torch.float64)
        probs = task.tempered(views, t)
        nll = float(task.nll(probs, torch.as_tensor(np.asarray(targets))))
    probs = probs.numpy()
    return probs, nll, calibration_error(*task.reliability(probs, targets))


def fit_calibration(loaded: LoadedRun, data: Path, batch_size: int, tta: bool | Sequence[str]) -> Calibration:
    """Temperature scaling of ``loaded`` fit on the val split of ``data`` (the file is not written here)."""
    from cvkit.data import load_split
    from cvkit.files.dataset import read_manifest

    task = loaded.task
    check_scalable(loaded)
    if not (read_manifest(data)["split"] == FIT_SPLIT).any():
        raise OptionError(f"--calibrate fits on the {FIT_SPLIT} split, and {data} has no {FIT_SPLIT} images; prepare "
                          f"the dataset with a {FIT_SPLIT} split (cvkit prepare SRC --val 0.1)")
    val = load_split(data, FIT_SPLIT, loaded.data_size)
    targets = task.targets(val)
    views = [torch.from_numpy(v) for v in loaded.logits(val.images, batch_size, tta)]
    temperature = fit_temperature(task, views, torch.as_tensor(np.asarray(targets)), task.temperature_size())
    _, nll_before, ece_before = figures(task, views, targets, None)
    _, nll_after, ece_after = figures(task, views, targets, temperature)
    views_used = list(parse_views(tta))
    return Calibration(str(task.scaling), [round(float(t), 6) for t in temperature], FIT_SPLIT, len(targets),
                       bool(views_used), nll_before, nll_after, ece_before, ece_after, weights_sha1(loaded.run),
                       views_used)


def before_after(loaded: LoadedRun, images: np.ndarray, targets: np.ndarray, batch_size: int,
                 tta: bool | Sequence[str], calibration: Calibration) -> tuple[np.ndarray, dict[str, Any], Any]:
    """The calibrated probabilities of a split, metrics.json's ``calibration`` block (NLL and ECE before and
    after on this split, and the fit's own on val), and what draws reliability.png into a folder."""
    task = loaded.task
    views = [torch.from_numpy(v) for v in loaded.logits(images, batch_size, tta)]
    raw, nll_before, ece_before = figures(task, views, targets, None)
    probs, nll_after, ece_after = figures(task, views, targets, task.temperature)
    block = {"method": calibration.method, "temperature": calibration.temperature, "nll_before": nll_before,
             "nll_after": nll_after, "ece_before": ece_before, "ece_after": ece_after,
             "fit": {"split": calibration.split, "count": calibration.count, "nll_before": calibration.nll_before,
                     "nll_after": calibration.nll_after, "ece_before": calibration.ece_before,
                     "ece_after": calibration.ece_after}}

    def draw(folder: Path) -> None:
        from cvkit.plots.calibration import plot_reliability

        panels = {f"before (raw logits), ECE {ece_before:.4f}": reliability_bins(*task.reliability(raw, targets)),
                  f"after ({calibration.describe()}), ECE {ece_after:.4f}": reliability_bins(
                      *task.reliability(probs, targets))}
        plot_reliability(panels, folder / "reliability.png",
                         "confidence" if task.temperature_size() == 1 else "predicted probability")

    return probs, block, draw
