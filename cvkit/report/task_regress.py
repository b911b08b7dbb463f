"""A regress run's sections: MAE, RMSE, R² (and PCK for keypoints), the same per target, the scatter of
predicted against true values, and the images of the largest errors (keypoints: true and predicted
points drawn on the image; other targets: their true and predicted values)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cvkit.errors import ManifestError
from cvkit.files.run import ModelInfo
from cvkit.plots.boxes import MISS_COLOUR, TRUE_COLOUR
from cvkit.report.context import ReportContext
from cvkit.report.html import Markup, el, figure, join, number, table
from cvkit.report.task_common import (
    RERUN,
    Part,
    grid,
    headline,
    image_of,
    legend,
    note,
    picture,
    read_table,
    split_for,
    table_rows,
    worst_part,
)
from cvkit.tasks.regress_metrics import point_distances

PER_TARGET = ("mae", "rmse", "r2")


def errors(true: np.ndarray, predicted: np.ndarray, keypoints: bool, std: np.ndarray) -> np.ndarray:
    """Each image's error: keypoints, the mean distance between true and predicted points (pixels); other
    targets, the mean absolute error in train standard deviations (targets of other units weigh alike)."""
    if keypoints:
        return point_distances(predicted, true).mean(1)
    return (np.abs(predicted - true) / std).mean(1)


def _values(names: list[str], true: np.ndarray, predicted: np.ndarray, keypoints: bool) -> Markup:
    """Each target's true value and prediction (keypoints: each point's, named by its x column)."""
    if keypoints:
        rows = [(name, f"({number(float(tx), 3)}, {number(float(ty), 3)})", f"({number(float(px), 3)}, "
                                                                              f"{number(float(py), 3)})")
                for name, tx, ty, px, py in zip(names[0::2], true[0::2], true[1::2], predicted[0::2], predicted[1::2])]
    else:
        rows = [(name, number(float(t), 4), number(float(p), 4)) for name, t, p in zip(names, true, predicted)]
    return el("ul", *(el("li", name, ": true ", t, ", predicted ", p) for name, t, p in rows), class_="values")


def _worst(ctx: ReportContext, model: ModelInfo, evaluation: Path, metrics: dict[str, Any]) -> Markup:
    from cvkit.plots.report_tasks import points_picture

    names, state = model.classes, model.task_state or {}
    t = len(names)
    frame = read_table(evaluation, "predictions.csv", ("path",))
    if frame.shape[1] != 1 + 2 * t:
        raise ManifestError(f"{evaluation / 'predictions.csv'} has {frame.shape[1]} columns, not path then each of "
                            f"the {t} targets' predicted and true values; {RERUN}")
    predicted = frame.iloc[:, 1::2].to_numpy(dtype=np.float64)  # <name>, true_<name> for each target, in order
    true = frame.iloc[:, 2::2].to_numpy(dtype=np.float64)
    keypoints = bool(state.get("keypoints"))
    std = np.asarray(state.get("std") or [1.0] * t, dtype=np.float64)
    error = errors(true, predicted, keypoints, std)
    split = split_for(model, metrics, frame)
    items = []
    for rank, i in enumerate(np.argsort(-error, kind="stable")[:ctx.top], 1):
        what = f"mean distance {number(float(error[i]), 3)} px" if keypoints else \
            f"mean error {number(float(error[i]), 3)} std"
        head = el("div", f"#{rank} · {what} · {Path(split.paths[i]).name}")
        if keypoints:
            image = points_picture(split.images[i], true[i].reshape(-1, 2), predicted[i].reshape(-1, 2))
        else:
            image = image_of(split.images, i)
        items.append(figure(ctx.writer.image(image, f"worst-{rank}"), join(head, _values(names, true[i], predicted[i], keypoints)),
                            alt=f"worst image {rank}"))
    if keypoints:
        intro = join(note("The images whose keypoints are furthest from the truth on average."),
                     legend((TRUE_COLOUR, "true point"), (MISS_COLOUR, "predicted point (a line joins the two)")))
    else:
        intro = note("The images of the largest errors, in the train split's standard deviations of each target.")
    return join(intro, grid(items))


def parts(run: Path, ctx: ReportContext, model: ModelInfo, evaluation: Path, metrics: dict[str, Any]) -> list[Part]:
    per_target = read_table(evaluation, "per_target.csv", PER_TARGET, len(model.classes))
    scatter = picture(ctx, evaluation, "regression.png", "Predicted against true values of each target; the "
                                                        "dotted diagonal is a perfect prediction")
    body = join(headline(model.task, metrics),
                el("h3", "Per target"),
                table(["target", "MAE", "RMSE", "R²"], table_rows(model.classes, per_target, PER_TARGET)),
                scatter)
    return [("metrics", f"Metrics on the {metrics.get('split', ctx.split)} split", body),
            worst_part("The worst images", lambda: _worst(ctx, model, evaluation, metrics))]
