"""Batched inference shared by train (validation), evaluate, predict and the explain commands."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from cvkit.device import autocast
from cvkit.tasks import Task
from cvkit.transforms.batch import Preprocess


def mirror(model: nn.Module, x: torch.Tensor, task: Task) -> torch.Tensor:
    """The task's probabilities of the horizontally mirrored batch, said of the batch itself (flipped back)."""
    return task.flip_back(task.probabilities(model(x.flip(3))))


@torch.no_grad()
def predict_batches(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor | None]], pre: Preprocess,
                    task: Task, precision: str = "fp32", tta: bool = False,
                    mirrored: bool = False, logits: bool = False) -> tuple[np.ndarray, float | None]:
    """The task's probabilities (N x K, float64) for every batch, and the mean loss when labels are given.

    ``tta`` averages the probabilities of each image and its horizontal mirror (no loss is returned then);
    ``mirrored``: the mirror's alone, flipped back (what ``tta`` adds to probabilities already at hand).
    ``logits``: the model's outputs themselves (float32), of the image or (``mirrored``) of its mirror, for
    what is fit on them (temperature scaling); ``tta`` does not apply then.
    """
    was_training = model.training
    model.eval()
    probs, total, count = [], 0.0, 0
    try:
        for images, labels in batches:
            x = pre(images)
            with autocast(pre.device, precision):
                out = None if mirrored else model(x)
                if logits:
                    p = model(x.flip(3)) if mirrored else out
                else:
                    p = mirror(model, x, task) if mirrored else task.probabilities(out)
                if tta and not logits:
                    p = (p + mirror(model, x, task)) / 2
            if labels is not None and out is not None and not tta:
                total += float(task.loss(out, task.eval_targets(labels.to(out.device)))) * len(labels)
                count += len(labels)
            probs.append(p.float().cpu().numpy() if logits else task.keep(p).cpu().numpy())
    finally:
        model.train(was_training)
    result = np.concatenate(probs) if probs else np.zeros((0, len(task.classes)))
    return result, (total / count if count else None)
