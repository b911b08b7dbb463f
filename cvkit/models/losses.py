"""Losses and the matching output-to-probability maps.

``ce``: softmax cross-entropy. ``bce``: sigmoid outputs; with two classes a single output whose
sigmoid is the probability of the second class, otherwise one-vs-rest. ``mse``: squared error
between the softmax probabilities and the (smoothed) one-hot targets, as in early networks.
All take soft targets (N x K), so label smoothing, mixup and cutmix work with each.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from cvkit.errors import OptionError
from cvkit.files.config import LOSSES


def num_outputs(loss: str, num_classes: int) -> int:
    if loss not in LOSSES:
        raise OptionError(f"--loss {loss} must be one of {', '.join(LOSSES)}")
    return 1 if loss == "bce" and num_classes == 2 else num_classes


def soft_targets(labels: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    target = F.one_hot(labels, num_classes).float()
    return target * (1 - smoothing) + smoothing / num_classes if smoothing else target


def outputs_to_probs(outputs: torch.Tensor, loss: str) -> torch.Tensor:
    """Class probabilities (N x K, rows sum to 1) from the model's outputs."""
    outputs = outputs.float()
    if loss == "bce":
        p = torch.sigmoid(outputs)
        if p.shape[1] == 1:
            return torch.cat([1 - p, p], dim=1)
        return p / p.sum(dim=1, keepdim=True).clamp_min(1e-12)
    return torch.softmax(outputs, dim=1)


def as_probabilities(loss_or_map: "str | Callable[[torch.Tensor], torch.Tensor]") -> "Callable[[torch.Tensor], torch.Tensor]":
    """A map from outputs to probabilities: a task's own (``task.probabilities``), or a classify loss's by name."""
    if callable(loss_or_map):
        return loss_or_map
    return lambda outputs: outputs_to_probs(outputs, loss_or_map)


class Criterion:
    """``criterion(outputs, soft_targets) -> mean loss``, with optional per-class weights."""

    def __init__(self, loss: str, class_weights: torch.Tensor | None = None) -> None:
        self.loss = loss
        self.weights = class_weights

    def __call__(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        outputs = outputs.float()
        w = None if self.weights is None else (targets * self.weights).sum(dim=1)  # each sample's class weight
        if self.loss == "ce":
            per = -(targets * F.log_softmax(outputs, dim=1)).sum(dim=1)
        elif self.loss == "bce":
            t = targets[:, 1:] if outputs.shape[1] == 1 else targets
            per = F.binary_cross_entropy_with_logits(outputs, t, reduction="none").sum(dim=1)
        else:
            per = ((torch.softmax(outputs, dim=1) - targets) ** 2).sum(dim=1)
        if w is not None:
            return (per * w).sum() / w.sum()
        return per.mean()


def distillation(student: torch.Tensor, teacher: torch.Tensor, loss: str, temperature: float,
                 per_output: bool = False) -> torch.Tensor:
    """KL(teacher || student) of the outputs softened at ``temperature``, times its square (Hinton, Vinyals and
    Dean 2015: the soft targets' gradients then keep their size whatever the temperature).

    ``ce``/``mse``: the softmax distributions over the classes; ``bce``: each sigmoid output's two-way
    distribution, summed over the outputs (``per_output``: their mean, as the multi-label loss averages).
    """
    t, s = teacher.detach().float() / temperature, student.float() / temperature
    if loss == "bce":
        q = torch.sigmoid(t)
        # KL of Bernoulli(q) to Bernoulli(sigmoid(s)): the cross-entropy less the teacher's own entropy
        per = (F.binary_cross_entropy_with_logits(s, q, reduction="none")
               - F.binary_cross_entropy_with_logits(t, q, reduction="none"))
        per = per.mean(dim=1) if per_output else per.sum(dim=1)
    else:
        log_q = F.log_softmax(t, dim=1)
        per = (log_q.exp() * (log_q - F.log_softmax(s, dim=1))).sum(dim=1)
    return per.mean() * temperature**2
