"""The worst images of a classify run: the highest losses on the split, each with its true and predicted
class, their probabilities, its class activation map and, with a retrieval index or ``--neighbours K``, its
nearest training images.

The order is evaluate's ``top_losses.csv``; the maps are ``cvkit cam``'s (RUN/cam when it explained exactly
these images with the predicted class, else :func:`cvkit.explain.cam.cam` on just them); the neighbours come
from the run's retrieval index or from the train split's penultimate features, computed once.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cvkit.errors import OptionError, SourceError
from cvkit.files.cams import read_cams_csv
from cvkit.files.dataset import image_files
from cvkit.files.run import ModelInfo
from cvkit.plots.report import tile
from cvkit.report.html import Markup, definitions, el, figure, join, number
from cvkit.report.run_data import RunData

DEFAULT_NEIGHBOURS = 5  # shown when the run has a retrieval index and --neighbours is not given
NEIGHBOUR_TILE = 80
SHOWN = 140  # pixels the image and its CAM overlay take in the page


@dataclass
class Neighbour:
    index: int  # in the train split
    score: float  # cosine similarity


def worst_order(data: RunData) -> list[int]:
    """Positions in the split of the ``--top`` worst images, worst first: top_losses.csv's order (the
    evaluation's own ranking of the probabilities when it lists fewer images than asked)."""
    split = data.split()
    n = min(data.ctx.top, len(split.paths))
    position: dict[str, int] = {}
    for i, path in enumerate(split.paths):
        position.setdefault(path, i)
    listed = [position.get(path) for path in data.table("top_losses.csv", ("path",))["path"]]
    if len(listed) >= n and None not in listed[:n]:
        return [int(i) for i in listed[:n]]
    from cvkit.tasks.metrics import top_losses

    return [int(i) for i in top_losses(split.labels, data.probabilities, n)]


def cam_overlays(data: RunData, files: list[str], predicted: list[str]) -> tuple[dict[str, Path], str]:
    """The CAM overlay PNG of each image file (by absolute path) and where they come from: RUN/cam when its
    cams.csv explains exactly these images with their predicted class (and is newer than the weights), else
    ``cvkit cam``'s library function on just these images, into the report's computed/cam."""
    wanted = {os.path.abspath(f): name for f, name in zip(files, predicted)}
    saved = data.run / "cam"
    found = _saved_overlays(data.run, saved, wanted)
    if found is not None:
        return found, f"come from {saved}"
    from cvkit.explain.cam import CamOptions, cam

    out = data.ctx.writer.computed / "cam"
    result = cam(data.loaded, files, out, CamOptions(batch_size=min(32, max(1, len(files)))), force=True)
    data.ctx.note(f"computed the Grad-CAM maps of the {len(files)} worst images with cvkit cam's library function "
                  f"({saved} does not hold exactly these images)")
    rows = read_cams_csv(result.out)
    return {os.path.abspath(p): result.out / str(m).replace(".npy", ".png")
            for p, m in zip(rows["path"], rows["map"])}, f"were computed for this report ({', '.join(result.methods)})"


def _saved_overlays(run: Path, folder: Path, wanted: dict[str, str]) -> dict[str, Path] | None:
    if not (folder / "cams.csv").is_file() or (folder / "cams.csv").stat().st_mtime < ModelInfo.written_at(run):
        return None
    rows = read_cams_csv(folder)
    if "rank" in rows.columns:
        rows = rows[rows["rank"] == 1]
    if "method" in rows.columns and len(rows):
        rows = rows[rows["method"] == rows["method"].iloc[0]]
    paths = [os.path.abspath(p) for p in rows["path"]]
    if sorted(paths) != sorted(wanted) or "map" not in rows.columns:
        return None
    found = {}
    for path, name, map_file in zip(paths, rows["class"], rows["map"]):
        png = folder / str(map_file).replace(".npy", ".png")
        if name != wanted[path] or not png.is_file():
            return None
        found[path] = png
    return found


def find_index(run: Path) -> Path | None:
    """A retrieval index of this run inside it ('cvkit retrieve index RUN DATA --out RUN/index'): a folder of
    the run whose meta.json names the run."""
    from cvkit.files.retrieve import IndexMeta, is_index

    for folder in sorted(p for p in run.iterdir() if p.is_dir()):
        if is_index(folder) and os.path.realpath(IndexMeta.read(folder).run) == os.path.realpath(run):
            return folder
    return None


def neighbours(data: RunData, worst: list[int], k: int) -> tuple[list[list[Neighbour]], str]:
    """The ``k`` nearest train images of each worst image by cosine similarity of the run's features, and
    where the train features come from (the run's retrieval index, or computed once here)."""
    import torch

    from cvkit.data.cache import take
    from cvkit.retrieve import Rows, embed, load_index, search

    train, split = data.split("train"), data.split()
    queries_images = take(split.images, np.asarray(worst, dtype=np.int64))
    folder = find_index(data.run)
    if folder is not None:
        meta, vectors, items = load_index(folder)
        dataset = data.dataset
        at = {os.path.abspath(p if os.path.isabs(p) else dataset / p): i for i, p in enumerate(train.paths)}
        rows = [r for r, (p, s) in enumerate(zip(items["path"], items["split"])) if s == "train" and p in at]
        positions = np.asarray([at[items["path"][r]] for r in rows], dtype=np.int64)
        index = Rows.of(np.asarray(vectors[rows], dtype=np.float32))
        layer, where = meta.layer, f"the run's retrieval index {folder} ({len(rows):,} train images)"
    else:
        features, layer = embed(data.loaded, train.images, None, data.ctx.batch_size, "Train features")
        positions = np.arange(len(train.paths), dtype=np.int64)
        index = Rows.of(features)
        data.ctx.note(f"computed the {layer} features of the {len(train.paths):,} train images of {data.run} once, "
                      f"for the nearest neighbours of the worst images")
        where = f"the {layer} features of the train split, computed for this report"
    queries, _ = embed(data.loaded, queries_images, layer, data.ctx.batch_size, "Worst images")
    exclude = None
    if data.ctx.split == "train":  # an image of the train split is not its own neighbour
        own = {int(p): r for r, p in enumerate(positions)}
        exclude = torch.tensor([own.get(int(i), -1) for i in worst], dtype=torch.int64)
    scores, found = search(queries, index, k, exclude)
    result = [[Neighbour(int(positions[j]), float(s)) for s, j in zip(srow.tolist(), frow.tolist())
               if j >= 0 and math.isfinite(s)] for srow, frow in zip(scores, found)]
    return result, where


def worst_section(data: RunData) -> Markup:
    split = data.split()
    classes = data.model.classes
    if data.ctx.top == 0:
        return el("p", "None shown (--top 0).", class_="note")
    worst = worst_order(data)
    probs = data.probabilities
    writer = data.ctx.writer
    predicted = [int(np.argmax(probs[i])) for i in worst]
    files = image_files(data.dataset, [split.paths[i] for i in worst], [split.rows[i] for i in worst])
    try:
        overlays, cams_from = cam_overlays(data, files, [classes[p] for p in predicted])
    except (OptionError, SourceError) as e:  # a net without feature maps, or images that cannot be read again
        overlays, cams_from = {}, f"are missing ({e})"
    k = data.ctx.neighbours or (DEFAULT_NEIGHBOURS if find_index(data.run) is not None else 0)
    near, near_from = neighbours(data, worst, k) if k else ([[] for _ in worst], "")
    train = data.split("train") if k else None
    items = []
    for rank, (i, p, file) in enumerate(zip(worst, predicted, files), start=1):
        true = int(split.labels[i])
        p_true, p_pred = float(probs[i, true]), float(probs[i, p])
        verdict = "right" if p == true else "wrong"
        pictures = [figure(writer.image(tile(split.images[i], SHOWN), f"worst-{rank}"), "the image", width=SHOWN)]
        overlay = overlays.get(os.path.abspath(file))
        if overlay is not None:
            pictures.append(figure(writer.image(overlay, f"worst-{rank}-cam"), f"CAM of {classes[p]}", width=SHOWN))
        facts = definitions([
            ("true", classes[true]), ("predicted", el("span", classes[p], class_=verdict)),
            ("p(predicted)", number(p_pred)), ("p(true)", number(p_true)),
            ("loss", number(-math.log(max(p_true, 1e-15)))), ("file", split.paths[i])])
        block = [el("h3", f"{rank}. {classes[true]} taken for {classes[p]}" if p != true else
                    f"{rank}. {classes[true]}, right but unsure"), el("div", *pictures, facts, class_="row")]
        if near[rank - 1]:
            block.append(el("p", "Its nearest train images (label · cosine similarity):", class_="note"))
            block.append(el("div", *(figure(writer.image(tile(train.images[n.index], NEIGHBOUR_TILE),
                                                         f"worst-{rank}-near-{j}"),
                                            f"{classes[int(train.labels[n.index])]} · {n.score:.3f}")
                                     for j, n in enumerate(near[rank - 1], start=1)), class_="row"))
        items.append(el("div", *block, class_="worst"))
    said = [f"The {len(worst)} images of the {data.ctx.split} split with the highest loss (-log p(true)), worst "
            f"first, from {data.shown(data.evaluation)}; their class activation maps {cams_from}."]
    if k:
        said.append(f" Under each, its {k} nearest train images (label · cosine similarity) by {near_from}.")
    return join(el("p", *said, class_="note"), *items)
