"""A localize run's sections: the class accuracy, the boxes' IoU and both together (loc accuracy), the
same per true class, and the worst images with the predicted box drawn against the true one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cvkit.files.dataset import BOX_COLUMNS
from cvkit.files.run import ModelInfo
from cvkit.plots.boxes import HIT_COLOUR, MISS_COLOUR, TRUE_COLOUR
from cvkit.report.context import ReportContext
from cvkit.report.html import Markup, el, figure, join, number, table
from cvkit.report.task_common import (
    Part,
    grid,
    headline,
    legend,
    note,
    read_table,
    split_for,
    table_rows,
    worst_part,
)
from cvkit.tasks.boxes import IOU_HIT

PER_CLASS = ("count", "accuracy", "mean_iou", "iou50", "loc_accuracy")


def ranking(right: np.ndarray, iou: np.ndarray) -> np.ndarray:
    """The images from the worst: the class wrong first, then the lowest IoU."""
    return np.lexsort((iou, right.astype(np.int8)))


def _worst(ctx: ReportContext, model: ModelInfo, evaluation: Path, metrics: dict[str, Any]) -> Markup:
    from cvkit.plots.report_tasks import boxes_picture

    classes = model.classes
    frame = read_table(evaluation, "predictions.csv", ("path", *BOX_COLUMNS, "iou"))
    probs = frame.iloc[:, -len(classes):].to_numpy(dtype=np.float64)  # prob_<class> columns, in class order
    predicted = probs.argmax(1)
    boxes = frame[list(BOX_COLUMNS)].to_numpy(dtype=np.float64)  # the cache's pixels
    iou = frame["iou"].to_numpy(dtype=np.float64)
    split = split_for(model, metrics, frame)
    true, true_boxes = split.labels.astype(np.int64), np.asarray(split.values, dtype=np.float64)
    right = predicted == true
    items = []
    for rank, i in enumerate(ranking(right, iou)[:ctx.top], 1):
        hit = bool(iou[i] >= IOU_HIT)
        src = ctx.writer.image(boxes_picture(split.images[i], true_boxes[i], boxes[i], hit), f"worst-{rank}")
        caption = join(el("div", f"#{rank} · IoU {number(float(iou[i]), 3)} · {Path(split.paths[i]).name}"),
                       el("div", "true: ", classes[true[i]]),
                       el("div", "predicted: ", el("span", classes[predicted[i]], class_="right" if right[i] else "wrong"),
                          f" {number(float(probs[i, predicted[i]]), 3)}"))
        items.append(figure(src, caption, alt=f"worst image {rank}"))
    return join(note("The images whose class is wrong first, then those of the lowest IoU between the predicted "
                     "and the true box."),
                legend((TRUE_COLOUR, "true box"), (HIT_COLOUR, "predicted box, IoU >= 0.5"),
                       (MISS_COLOUR, "predicted box, IoU < 0.5")),
                grid(items))


def parts(run: Path, ctx: ReportContext, model: ModelInfo, evaluation: Path, metrics: dict[str, Any]) -> list[Part]:
    per_class = read_table(evaluation, "per_class.csv", PER_CLASS, len(model.classes))
    body = join(headline(model.task, metrics),
                el("h3", "Per true class"),
                table(["class", "images", "accuracy", "mean IoU", "IoU >= 0.5", "loc accuracy"],
                      table_rows(model.classes, per_class, PER_CLASS)),
                note("Accuracy: the class right; IoU >= 0.5: the box found, whatever the class; loc accuracy: both."))
    return [("metrics", f"Metrics on the {metrics.get('split', ctx.split)} split", body),
            worst_part("The worst images", lambda: _worst(ctx, model, evaluation, metrics))]
