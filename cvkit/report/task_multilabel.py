"""A multilabel run's sections: mAP and the other headline figures, the per-class table (AP, precision,
recall, F1 at each class's threshold), the precision-recall curves, and the images of the highest loss
with their true and predicted label sets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cvkit.files.run import ModelInfo
from cvkit.report.context import ReportContext
from cvkit.report.html import Markup, el, figure, join, number, table
from cvkit.report.task_common import (
    Part,
    grid,
    headline,
    image_of,
    note,
    picture,
    read_table,
    split_for,
    table_rows,
    worst_part,
)

PER_CLASS = ("ap", "precision", "recall", "f1", "threshold", "support")
EPS = 1e-7  # keeps the loss of a probability written as 0 or 1 (predictions.csv's six digits) finite


def losses(truth: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Each image's binary cross-entropy, averaged over the classes: what the run was trained to lower."""
    p = np.clip(probs, EPS, 1 - EPS)
    return -(truth * np.log(p) + (1 - truth) * np.log(1 - p)).mean(1)


def _labels(classes: list[str], truth: np.ndarray, probs: np.ndarray, thresholds: np.ndarray) -> Markup:
    """The image's true and predicted labels, most probable first: right ones, missed ones, wrong ones."""
    predicted = probs >= thresholds
    shown = [k for k in np.argsort(-probs, kind="stable") if truth[k] or predicted[k]]
    items = []
    for k in shown:
        what, kind = (("right", "right") if truth[k] and predicted[k] else
                      ("missed", "wrong") if truth[k] else ("false alarm", "wrong"))
        items.append(el("li", join(el("span", classes[k], class_=kind), f" {number(float(probs[k]), 3)} ({what})")))
    if not items:
        return el("p", "no label, none predicted")
    return el("ul", *items, class_="labels")


def _worst(ctx: ReportContext, model: ModelInfo, evaluation: Path, metrics: dict[str, Any],
           thresholds: np.ndarray) -> Markup:
    classes = model.classes
    frame = read_table(evaluation, "predictions.csv", ("path",))
    probs = frame.iloc[:, -len(classes):].to_numpy(dtype=np.float64)  # prob_<class> columns, in class order
    split = split_for(model, metrics, frame)
    truth = np.asarray(split.multi_hot, dtype=np.float64)
    loss = losses(truth, probs)
    order = np.argsort(-loss, kind="stable")[:ctx.top]
    items = []
    for rank, i in enumerate(order, 1):
        caption = join(el("div", f"#{rank} · loss {number(float(loss[i]), 3)} · {Path(split.paths[i]).name}"),
                       _labels(classes, truth[i], probs[i], thresholds))
        items.append(figure(ctx.writer.image(image_of(split.images, i), f"worst-{rank}"), caption,
                            alt=f"worst image {rank}"))
    return join(note("The images of the highest loss (binary cross-entropy averaged over the classes), each with "
                     "its true labels and what the run predicted at each class's threshold, with its probability: ",
                     el("span", "right", class_="right"), ", ", el("span", "missed or false alarm", class_="wrong"), "."),
                grid(items))


def parts(run: Path, ctx: ReportContext, model: ModelInfo, evaluation: Path, metrics: dict[str, Any]) -> list[Part]:
    classes = model.classes
    per_class = read_table(evaluation, "per_class.csv", PER_CLASS, len(classes))
    thresholds = per_class["threshold"].to_numpy(dtype=np.float64)
    curves = picture(ctx, evaluation, "precision_recall.png", "Precision against recall of each class with a "
                                                             "positive in the split")
    body = join(headline(model.task, metrics),
                el("h3", "Per class"),
                table(["class", "AP", "precision", "recall", "F1", "threshold", "support"],
                      table_rows(classes, per_class, PER_CLASS)),
                note("Precision, recall and F1 at each class's threshold, chosen on val for the best F1; AP needs a "
                     "positive in the split."),
                curves)
    return [("metrics", f"Metrics on the {metrics.get('split', ctx.split)} split", body),
            worst_part("The worst images", lambda: _worst(ctx, model, evaluation, metrics, thresholds))]
