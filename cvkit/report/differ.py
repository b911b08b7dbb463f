"""Where several runs disagree: the images of the split on which their predicted classes (or label sets)
differ, from each evaluation's predictions, shown with the true label and every run's answer."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from cvkit.errors import CvkitError, ManifestError
from cvkit.files.run import ModelInfo
from cvkit.report.context import ReportContext
from cvkit.report.html import Markup, el, join, note, table

PREDICTIONS = "predictions.csv"  # evaluate's per-image file (cvkit/tasks' write_evaluation)
TRUTH = ("label", "labels")  # the true class (classify, localize) or label set (multilabel) in predictions.csv
TEXT = ("path", "predicted", *TRUTH)
AGAIN = "rerun 'cvkit evaluate' on the run"


def read_predictions(folder: Path) -> "pd.DataFrame":  # noqa: F821
    """An evaluation's predictions.csv, its names kept as written (a class named ``NA`` stays ``NA``)."""
    import pandas as pd

    path = folder / PREDICTIONS
    if not path.is_file():
        raise ManifestError(f"{path} is missing; {AGAIN}")
    try:
        frame = pd.read_csv(path, dtype={c: str for c in TEXT}, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as e:
        raise ManifestError(f"{path} cannot be parsed ({str(e).splitlines()[0][:120]}); {AGAIN}") from None
    if "path" not in frame.columns:
        raise ManifestError(f"{path} lacks the column path; {AGAIN}")
    return frame


def _probability(row: Any, predicted: str) -> float | None:
    """The probability the run gave its answer: its class's column, or the row's score."""
    for column in (f"prob_{predicted}", "score", "probability"):
        if column in row.index:
            try:
                value = float(row[column])
            except (TypeError, ValueError):
                return None
            return value if math.isfinite(value) else None
    return None


def _split_images(ctx: ReportContext, data: str, info: ModelInfo) -> tuple[dict[str, int], np.ndarray]:
    """The split's images as the cache holds them at the run's input size (path -> position, images)."""
    from cvkit.data import load_split

    size = None if info.score_maps else (int(info.input_size[0]), int(info.input_size[1]))
    split = load_split(data, ctx.split, size)
    return {p: i for i, p in enumerate(split.paths)}, split.images


def _tile(ctx: ReportContext, image: np.ndarray, k: int, path: str, truth: str | None, answers: list[Markup]) -> Markup:
    from PIL import Image

    picture = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)
    src = ctx.writer.image(picture, f"differ-{k}")
    caption = join(el("div", "true: ", el("b", truth)) if truth is not None else None, *answers,
                   el("div", path, class_="note"))
    return el("figure", el("img", src=src, alt=path, loading="lazy"), el("figcaption", caption))


def differ_section(runs: list[Path], names: list[str], infos: list[ModelInfo], evaluations: list[Path],
                   scores: list[dict[str, Any]], ctx: ReportContext) -> Markup:
    """The count of images the runs disagree on, how often each run was right on them, and a grid of up to
    ``ctx.top`` of them (first those that some runs get right and others wrong)."""
    frames = [read_predictions(folder) for folder in evaluations]
    if not all("predicted" in f.columns for f in frames):
        return note(f"A {infos[0].task} run predicts no single class or label set per image: compare these runs "
                     f"through their metrics above.")
    datasets = {str(Path(s.get("data", "")).absolute()) for s in scores}
    paths = frames[0]["path"].tolist()
    if len(datasets) > 1 or any(f["path"].tolist() != paths for f in frames[1:]):
        return note("The runs were scored on different images (their own datasets); give --data DATASET to score "
                     "them on the same split.")
    predicted = np.array([f["predicted"].to_numpy(str) for f in frames])
    truth_column = next((c for c in TRUTH if c in frames[0].columns), None)
    truth = frames[0][truth_column].to_numpy(str) if truth_column else None
    disagree = np.flatnonzero((predicted != predicted[0]).any(axis=0))
    total = len(paths)
    share = f" ({len(disagree) / total:.1%})" if total else ""
    parts: list[Markup | None] = [el("p", el("b", f"{len(disagree):,}"), f" of the {total:,} images of the {ctx.split} "
                                     f"split get different answers from the runs{share}.", class_="count",
                                     data_count=len(disagree))]
    if not len(disagree):
        return join(*parts)
    right = predicted == truth[None, :] if truth is not None else None
    if right is not None:
        rows = [[name, int(right[i, disagree].sum()), int((~right[i, disagree]).sum())] for i, name in enumerate(names)]
        parts.append(table(["run", "right on them", "wrong on them"], rows))
        split_right = right[:, disagree].sum(axis=0)
        # an image some runs get right and others wrong tells most about them; then the split's order
        order = sorted(range(len(disagree)), key=lambda j: (not 0 < split_right[j] < len(runs), j))
        disagree = disagree[order]
    shown = disagree[:ctx.top]
    if not len(shown):
        return join(*parts)
    try:
        position, images = _split_images(ctx, str(ctx.data or scores[0].get("data", "")), infos[0])
    except CvkitError as e:  # the dataset moved since the evaluation: the count stands, the pictures cannot be shown
        parts.append(note(f"The images cannot be shown: {e}"))
        return join(*parts)
    tiles = []
    for k, i in enumerate(shown):
        if paths[i] not in position:
            continue
        answers = []
        for r, name in enumerate(names):
            guess = predicted[r, i]
            p = _probability(frames[r].iloc[i], guess)
            ok = None if right is None else bool(right[r, i])
            mark = "" if ok is None else ("✓ " if ok else "✗ ")
            answers.append(el("div", f"{mark}{name}: ", el("b", guess), f" ({p:.2f})" if p is not None else "",
                              class_=None if ok is None else ("right" if ok else "wrong")))
        tiles.append(_tile(ctx, np.asarray(images[position[paths[i]]]), k, paths[i],
                           None if truth is None else truth[i], answers))
    parts.append(el("h3", f"{len(tiles)} of them" if len(tiles) < len(disagree) else "All of them"))
    parts.append(el("div", *tiles, class_="grid"))
    return join(*parts)
