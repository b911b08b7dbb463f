"""Temperature scaling (Guo et al., 2017) and the figures that judge it: NLL, ECE, reliability bins.

The temperature divides the logits before the task's softmax or sigmoids (under flip TTA, the
log-odds of the averaged probabilities): it changes how sure the probabilities are, never which
class ranks first (nor, for multilabel, which side of its threshold a label falls once the threshold
is scaled the same way). It is fit on val by minimizing the task's
negative log-likelihood with L-BFGS over log T, kept within [MIN_T, MAX_T].
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from cvkit.tasks.base import Task

# Outside these a fit has met logits it cannot scale sensibly (all right, or all wrong): clamped there.
MIN_T, MAX_T = 0.05, 20.0
ECE_BINS = 15  # as evaluate's ``ece`` (tasks/metrics.py)


def calibrated(task: "Task", views: list[np.ndarray]) -> np.ndarray:
    """What inference returns for a calibrated run: the probabilities of the logits ``views`` at the task's
    temperature, as numpy float64."""
    with torch.no_grad():
        t = None if task.temperature is None else torch.as_tensor(task.temperature, dtype=torch.float64)
        return task.tempered([torch.from_numpy(np.asarray(v)) for v in views], t).numpy()


def fit_temperature(task: "Task", views: list[torch.Tensor], targets: torch.Tensor, size: int) -> np.ndarray:
    """The ``size`` temperature(s) that minimize ``task.nll`` of the tempered probabilities on ``targets``."""
    views = [v.double() for v in views]
    log_t = torch.zeros(size, dtype=torch.float64, requires_grad=True)
    bounds = (math.log(MIN_T), math.log(MAX_T))
    optimizer = torch.optim.LBFGS([log_t], lr=1.0, max_iter=200, tolerance_grad=1e-9, tolerance_change=1e-12,
                                  line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = task.nll(task.tempered(views, log_t.clamp(*bounds).exp()), targets)
        loss.backward()
        return loss

    optimizer.step(closure)
    fitted = log_t.detach().clamp(*bounds).exp()
    with torch.no_grad():
        ones = torch.ones(size, dtype=torch.float64)
        if not task.nll(task.tempered(views, fitted), targets) < task.nll(task.tempered(views, ones),
                                                                                   targets):
            return ones.numpy()  # nothing to gain (or a failed fit): the raw logits stay
    return fitted.numpy()


def reliability_bins(confidence: np.ndarray, outcome: np.ndarray,
                     n_bins: int = ECE_BINS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width bin (lo, hi] of ``confidence``: the mean confidence, the rate of ``outcome`` (1 when the
    prediction was right) and the count; empty bins hold NaN and 0."""
    confidence = np.asarray(confidence, dtype=np.float64)
    outcome = np.asarray(outcome, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(bins, confidence, n_bins) / count
        rate = np.bincount(bins, outcome, n_bins) / count
    return mean_conf, rate, count


def calibration_error(confidence: np.ndarray, outcome: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Expected calibration error: mean |rate - confidence| over the bins, weighted by their counts."""
    mean_conf, rate, count = reliability_bins(confidence, outcome, n_bins)
    used = count > 0
    return float((np.abs(rate[used] - mean_conf[used]) * count[used]).sum() / max(1, count.sum()))
