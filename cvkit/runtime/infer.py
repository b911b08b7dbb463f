"""Batched inference shared by train (validation), evaluate, predict and the explain commands."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from cvkit.device import autocast
from cvkit.tasks import Task
from cvkit.transforms.batch import Preprocess
from cvkit.transforms.views import make_views, parse_views


def mirror(model: nn.Module, x: torch.Tensor, task: Task) -> torch.Tensor:
    """The task's probabilities of the horizontally mirrored batch, said of the batch itself (flipped back)."""
    return task.flip_back(task.probabilities(model(x.flip(3))))


@torch.no_grad()
def predict_batches(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor | None]], pre: Preprocess,
                    task: Task, precision: str = "fp32", tta: bool | Sequence[str] = False,
                    mirrored: bool = False) -> tuple[np.ndarray, float | None]:
    """The task's probabilities (N x K, float64) for every batch, and the mean loss when labels are given.

    ``tta``: test-time views (names of :mod:`cvkit.transforms.views`; True: flip) whose probabilities,
    moved back by the task, are averaged with the image's own (no loss is returned then);
    ``mirrored``: the mirror's alone, flipped back (what flip TTA adds to probabilities already at hand).
    """
    names = parse_views(tta)
    was_training = model.training
    model.eval()
    probs, total, count = [], 0.0, 0
    try:
        for images, labels in batches:
            if names:
                probs.append(task.keep(_averaged(model, images, pre, task, precision, names)).cpu().numpy())
                continue
            x = pre(images)
            with autocast(pre.device, precision):
                out = None if mirrored else model(x)
                p = mirror(model, x, task) if mirrored else task.probabilities(out)
            if labels is not None and out is not None:
                total += float(task.loss(out, task.eval_targets(labels.to(out.device)))) * len(labels)
                count += len(labels)
            probs.append(task.keep(p).cpu().numpy())
    finally:
        model.train(was_training)
    result = np.concatenate(probs) if probs else np.zeros((0, len(task.classes)))
    return result, (total / count if count else None)


def _averaged(model: nn.Module, images: torch.Tensor, pre: Preprocess, task: Task, precision: str,
              names: Sequence[str]) -> torch.Tensor:
    """The mean probabilities of a uint8 batch and its views (``names``), each view's moved back by the
    task: every view of the batch in one forward pass (the caller sizes the batch for it)."""
    parts, views = _with_views(model, images, pre, precision, names, task.probabilities)
    moved = [parts[0], *(task.view_back(p, view) for p, view in zip(parts[1:], views))]
    return torch.stack(moved).mean(0)


def _with_views(model: nn.Module, images: torch.Tensor, pre: Preprocess, precision: str, names: Sequence[str],
                then: Callable[[torch.Tensor], torch.Tensor]) -> tuple[list[torch.Tensor], list]:
    """``then`` of the model's outputs for a uint8 batch and for each of its views, from one forward pass of
    them all, as a list (the batch's first); and the views."""
    unit = pre.to_unit(images)
    x = pre.normalize(unit)
    views = make_views(names, tuple(x.shape[2:]))
    batch = torch.cat([x, *(view(x) if not view.on_unit else pre.normalize(view(unit)) for view in views)])
    if pre.channels_last:
        batch = batch.contiguous(memory_format=torch.channels_last)
    with autocast(pre.device, precision):
        return list(then(model(batch)).split(len(x))), views


@torch.no_grad()
def view_logits(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor | None]], pre: Preprocess,
                precision: str = "fp32", tta: bool | Sequence[str] = False) -> list[np.ndarray]:
    """The model's outputs themselves (float32) for every batch: one N x outputs array for the images, then one
    per test-time view (``tta``, as :func:`predict_batches` takes it), for what is fit on them (temperature
    scaling). Only for outputs that a view leaves in place (class scores): nothing is moved back."""
    names = parse_views(tta)
    was_training = model.training
    model.eval()
    parts: list[list[np.ndarray]] = []
    try:
        for images, _ in batches:
            outputs, _ = _with_views(model, images, pre, precision, names, lambda out: out.float())
            parts.append([p.cpu().numpy() for p in outputs])
    finally:
        model.train(was_training)
    if not parts:
        return [np.zeros((0, 0), np.float32) for _ in range(len(names) + 1)]
    return [np.concatenate(view) for view in zip(*parts)]
