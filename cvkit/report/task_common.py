"""What the task sections of the run page share (:mod:`cvkit.report.task_sections`): the evaluation's
files read with a one-line error, the headline figures, table cells from a CSV, the split whose images
the predictions are of, and the grid of worst images."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cvkit.errors import ManifestError, SourceError
from cvkit.files.atomic import read_csv_checked
from cvkit.files.jsonio import read_json
from cvkit.files.run import ModelInfo
from cvkit.report.context import ReportContext
from cvkit.report.html import Markup, definitions, el, figure, join, note, number
from cvkit.tasks import TASKS

Part = tuple[str, str, Markup]  # (anchor, title, body)
RERUN = "rerun 'cvkit evaluate' (or delete the folder so that the report evaluates again)"
MISSING = "—"  # a figure a class does not have (AP of a class with no positive, IoU of an absent class)


# ---------------------------------------------------------------------------------------------- reading


def read_metrics(evaluation: Path) -> dict[str, Any]:
    metrics = read_json(evaluation / "metrics.json", RERUN)
    if not isinstance(metrics, dict):
        raise ManifestError(f"{evaluation / 'metrics.json'} does not hold an object; {RERUN}")
    return metrics


def read_table(evaluation: Path, name: str, columns: Sequence[str], rows: int | None = None) -> "pd.DataFrame":  # noqa: F821
    """``evaluation/name`` with ``columns`` (and ``rows`` rows: one per class or target)."""
    frame = read_csv_checked(evaluation / name, tuple(columns), RERUN, dtype={"path": str})
    if rows is not None and len(frame) != rows:
        raise ManifestError(f"{evaluation / name} has {len(frame)} rows and the run {rows} classes or targets; {RERUN}")
    return frame


def cell(value: Any) -> Any:
    """A table cell from a CSV or JSON value: numbers as Python numbers (sortable), a missing one as a dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, np.generic):
        return cell(value.item())
    if isinstance(value, (bool, str)):
        return str(value)
    return value


def table_rows(names: Sequence[str], frame: "pd.DataFrame", columns: Sequence[str]) -> list[list[Any]]:  # noqa: F821
    """One row per class or target: its name (the run's, not the CSV's text) then ``columns``' cells."""
    return [[name, *(cell(frame[c].iloc[i]) for c in columns)] for i, name in enumerate(names)]


# ---------------------------------------------------------------------------------------------- showing


def headline(task: str, metrics: dict[str, Any]) -> Markup:
    """The task's headline figures (the ones ``cvkit evaluate`` prints) and the number of images."""
    pairs = [(title, number(metrics[key])) for key, title in TASKS[task].headline
             if isinstance(metrics.get(key), (int, float))]
    if isinstance(metrics.get("count"), int):
        pairs.append(("images", number(metrics["count"])))
    views = metrics.get("tta_views") or []
    if views:
        pairs.append(("test-time views", ", ".join(str(v) for v in views)))
    return el("div", definitions(pairs), class_="headline")


def picture(ctx: ReportContext, evaluation: Path, name: str, caption: str) -> Markup | None:
    """A picture evaluate wrote, copied into the page; None when the evaluation has none."""
    path = evaluation / name
    return figure(ctx.writer.image(path, Path(name).stem), caption) if path.is_file() else None


def image_of(images: np.ndarray, i: int) -> Image.Image:
    """Image ``i`` of a split's cache (H x W x 1 or 3 uint8) as a picture."""
    image = np.asarray(images[i])
    return Image.fromarray(np.ascontiguousarray(image[:, :, 0] if image.shape[2] == 1 else image))


def grid(items: Sequence[Markup]) -> Markup:
    return el("div", *items, class_="grid") if items else note("No image to show (--top 0, or an empty split).")


def legend(*pairs: tuple[str, str]) -> Markup:
    """A line naming what the colours of the pictures mean: (colour, meaning) pairs."""
    return note(*(join(el("span", "■", style=f"color: {colour}; text-shadow: 0 0 1px #555"), " ", meaning, "  ") for colour, meaning in pairs))


def split_for(model: ModelInfo, metrics: dict[str, Any], frame: "pd.DataFrame",  # noqa: F821
              size: tuple[int, int] | None = None) -> Any:
    """The split evaluate scored (metrics.json's dataset and split, at the run's input size), whose images
    are predictions.csv's rows in order; a :class:`ManifestError` when that is not so any more."""
    from cvkit.data import load_split

    data, split = metrics.get("data"), metrics.get("split")
    if not isinstance(data, str) or not isinstance(split, str):
        raise ManifestError(f"metrics.json names no dataset and split; {RERUN}")
    if size is None and not model.score_maps:
        size = (int(model.input_size[0]), int(model.input_size[1]))
    loaded = load_split(data, split, size)
    if [str(p) for p in loaded.paths] != frame["path"].astype(str).tolist():
        raise ManifestError(f"the {split} split of {data} holds other images than the evaluation's predictions.csv "
                            f"(the dataset changed since); {RERUN}")
    return loaded


def worst_part(title: str, build: Callable[[], Markup]) -> Part:
    """The ``worst`` part; when its images cannot be shown (the dataset moved or changed since evaluate),
    a line that says why instead of no page at all."""
    try:
        body = build()
    except (ManifestError, SourceError) as e:
        body = note(f"The worst images cannot be shown: {e}")
    return "worst", title, body
