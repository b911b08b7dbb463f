"""Batched inference shared by train (validation), evaluate, predict and the explain commands."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from cvkit.device import autocast
from cvkit.models.losses import Criterion, outputs_to_probs, soft_targets
from cvkit.transforms.batch import Preprocess


@torch.no_grad()
def predict_batches(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor | None]], pre: Preprocess,
                    loss: str, precision: str = "fp32", tta: bool = False,
                    num_classes: int | None = None) -> tuple[np.ndarray, float | None]:
    """Class probabilities (N x K, float64) for every batch, and the mean loss when labels are given.

    ``tta`` averages the probabilities of each image and its horizontal mirror (no loss is returned then).
    """
    was_training = model.training
    model.eval()
    probs, total, count = [], 0.0, 0
    criterion = Criterion(loss)
    try:
        for images, labels in batches:
            x = pre(images)
            with autocast(pre.device, precision):
                out = model(x)
                p = outputs_to_probs(out, loss)
                if tta:
                    p = (p + outputs_to_probs(model(x.flip(3)), loss)) / 2
            if labels is not None and not tta:
                targets = soft_targets(labels.to(out.device), num_classes or p.shape[1])
                total += float(criterion(out, targets)) * len(labels)
                count += len(labels)
            probs.append(p.double().cpu().numpy())
    finally:
        model.train(was_training)
    result = np.concatenate(probs) if probs else np.zeros((0, num_classes or 0))
    return result, (total / count if count else None)
