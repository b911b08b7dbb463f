"""A segment run's sections: mIoU, pixel accuracy and the other headline figures, IoU and Dice per class,
the pixel confusion matrix, and the images of the lowest mIoU as triples: the image, its true mask and
the predicted one. evaluate keeps no predicted masks, so those of the shown images are predicted again,
through the runtime and with the evaluation's test-time views."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cvkit.files.dataset import IGNORE_INDEX
from cvkit.files.run import ModelInfo
from cvkit.report.context import ReportContext
from cvkit.report.html import Markup, el, figure, join, number, table
from cvkit.report.task_common import (
    Part,
    headline,
    legend,
    note,
    picture,
    read_table,
    split_for,
    table_rows,
    worst_part,
)

PER_CLASS = ("iou", "accuracy", "dice", "true_pixels", "predicted_pixels")


def ranking(miou: np.ndarray) -> np.ndarray:
    """The images from the lowest mIoU, as evaluate's worst.png (an image whose pixels are all ignored last)."""
    return np.argsort(np.nan_to_num(miou, nan=2.0), kind="stable")


def predicted_masks(run: Path, ctx: ReportContext, images: np.ndarray, views: list[str]) -> np.ndarray:
    """N x H x W class indices the run predicts for ``images``, as evaluate predicted them (the same views)."""
    from cvkit.device import resolve_device
    from cvkit.runtime import load_run
    from cvkit.tasks.segment_metrics import label_maps

    loaded = load_run(run, resolve_device(ctx.device))
    probs, _ = loaded.predict(images, None, ctx.batch_size, tuple(views))
    return label_maps(probs)


def _colours(classes: list[str]) -> Markup:
    from cvkit.plots.segment import palette

    colours = palette()
    pairs = [(f"rgb({r}, {g}, {b})", name) for (r, g, b), name in zip(colours[:len(classes)].tolist(), classes)]
    r, g, b = colours[IGNORE_INDEX].tolist()
    return legend(*pairs, (f"rgb({r}, {g}, {b})", "ignored"))


def _worst(run: Path, ctx: ReportContext, model: ModelInfo, evaluation: Path, metrics: dict[str, Any]) -> Markup:
    from cvkit.data.cache import take
    from cvkit.plots.report_tasks import enlarge, mask_picture

    frame = read_table(evaluation, "predictions.csv", ("path", "pixel_accuracy", "miou"))
    miou = frame["miou"].to_numpy(dtype=np.float64)
    accuracy = frame["pixel_accuracy"].to_numpy(dtype=np.float64)
    split = split_for(model, metrics, frame)
    worst = ranking(miou)[:ctx.top]
    if not len(worst):
        return note("The split has no image.")
    images = take(split.images, worst)
    views = [str(v) for v in metrics.get("tta_views") or []]
    predicted = predicted_masks(run, ctx, images, views)
    ctx.note(f"predicted the masks of the {len(worst)} worst {metrics.get('split', ctx.split)} images of {run} "
             f"again (evaluate keeps no predicted masks)")
    items = []
    for rank, (i, image, mask) in enumerate(zip(worst, images, predicted), 1):
        pictures = [(enlarge(image)[0], "image"), (mask_picture(split.masks[i]), "true mask"),
                    (mask_picture(mask), "predicted mask")]
        shown = [figure(ctx.writer.image(p, f"worst-{rank}-{what.split()[0]}"), what, alt=f"worst {rank}: {what}")
                 for p, what in pictures]
        items.append(el("div", el("h3", f"#{rank} · mIoU {number(float(miou[i]), 3)} · pixel accuracy "
                                        f"{number(float(accuracy[i]), 3)} · {Path(split.paths[i]).name}"),
                        el("div", *shown, class_="row"), class_="triple"))
    return join(note("The images of the lowest mIoU (over the classes the image or its prediction holds), beside "
                     "their true and predicted masks."), _colours(model.classes), *items)


def parts(run: Path, ctx: ReportContext, model: ModelInfo, evaluation: Path, metrics: dict[str, Any]) -> list[Part]:
    per_class = read_table(evaluation, "per_class.csv", PER_CLASS, len(model.classes))
    body = join(headline(model.task, metrics),
                el("h3", "Per class"),
                table(["class", "IoU", "accuracy", "Dice", "true pixels", "predicted pixels"],
                      table_rows(model.classes, per_class, PER_CLASS)),
                note("A class neither in the masks nor in the predictions has no IoU and is left out of the means."),
                picture(ctx, evaluation, "confusion_matrix.png", "Pixels of each true class (rows) predicted as each "
                                                                 "class (columns)"))
    return [("metrics", f"Metrics on the {metrics.get('split', ctx.split)} split", body),
            worst_part("The worst images", lambda: _worst(run, ctx, model, evaluation, metrics))]
