"""Each ``visualize`` picture: compute it, name it, draw it into the output folder being built.

Every function returns the names of the files it wrote; each picture's title says what it shows.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cvkit.explain.visual.common import safe_name
from cvkit.runtime import LoadedRun

if TYPE_CHECKING:
    from cvkit.data import SplitData

SEPARATOR = (70, 130, 180)  # between image crops, which may be white or black themselves


def curves(loaded: LoadedRun, stage: Path) -> list[str]:
    """Loss and accuracy per epoch from metrics.csv, the kept (best) epoch marked."""
    from cvkit.files.run import read_metrics
    from cvkit.plots import plot_curves

    metrics = read_metrics(loaded.run)
    column = loaded.task.monitor("val_acc")  # the task's val metric: val_acc, val_map, ...
    val = metrics[column].astype(float).to_numpy() if column in metrics else np.full(len(metrics), np.nan)
    epochs = metrics["epoch"].astype(int).tolist()
    best = loaded.info.epoch if loaded.info.epoch in epochs else None
    if best is None and not np.isnan(val).all():  # model.json without the epoch it kept: the best val accuracy
        best = epochs[int(np.nanargmax(val))]
    kept = "no best epoch recorded"
    if best is not None:
        acc = val[epochs.index(best)]
        kept = (f"best epoch {best}" + ("" if np.isnan(acc) else f" ({column.replace('_', ' ')} {acc:.4f})")
                + ", the weights the run kept")
    title = f"{loaded.run.name}: loss and accuracy per epoch, train (solid) against val (dashed); {kept}"
    plot_curves(metrics, stage / "curves.png", best, title)
    return ["curves.png"]


def filters(loaded: LoadedRun, stage: Path) -> list[str]:
    """The first convolution's kernels as a grid."""
    from cvkit.explain.visual.maps import filters as first_filters
    from cvkit.plots.visualize import mosaic, plot_grid

    found = first_filters(loaded)
    n, kh, kw = found.tiles.shape[:3]
    shown = f"{n} kernels" if n == found.total else f"the first {n} of {found.total} kernels"
    title = f"first convolution '{found.layer}': {shown}, {kh}x{kw} ({found.note}), each min-max scaled"
    plot_grid(mosaic(found.tiles, math.ceil(math.sqrt(n))), title, stage / "filters.png")
    return ["filters.png"]


def templates(loaded: LoadedRun, stage: Path) -> list[str]:
    """A linear layer's weights over the pixels as images: a perceptron's one template per class."""
    from cvkit.explain.visual.maps import templates as linear_templates
    from cvkit.plots.visualize import mosaic, plot_grid

    found = linear_templates(loaded)
    n = len(found.tiles)
    per_class = found.total == len(loaded.classes)
    cols = math.ceil(math.sqrt(n)) if not per_class else min(n, 10)
    h, w = found.tiles.shape[1:3]
    labels = loaded.classes[:n] if per_class and n <= cols else []  # one row: each class over its template
    order = ("one per class" if labels else ", ".join(loaded.classes[:n]) if per_class
             else f"{n} of {found.total} hidden units")
    title = (f"'{found.layer}' weights as images ({found.note}, each min-max scaled; bright: pixels that raise "
             f"the score): {order}")
    plot_grid(mosaic(found.tiles, cols), title, stage / "templates.png", col_labels=labels, tile=(h, w))
    return ["templates.png"]


def activations(loaded: LoadedRun, stage: Path, image: np.ndarray, path: str, layer: str) -> list[str]:
    """The feature maps of ``layer`` for one image, beside the image."""
    from cvkit.explain.visual.maps import MAX_CHANNELS
    from cvkit.explain.visual.maps import activations as layer_maps
    from cvkit.plots.visualize import mosaic, plot_grid, scale_each

    maps = layer_maps(loaded, image, layer)
    c, h, w = maps.shape
    n = min(c, MAX_CHANNELS)
    shown = f"all {c} channels" if n == c else f"channels 0-{n - 1} of {c}"
    title = f"feature maps of layer '{layer}' for {Path(path).name}: {shown}, {h}x{w}, each min-max scaled"
    name = f"activations_{safe_name(Path(path).stem)}_{safe_name(layer)}.png"
    plot_grid(mosaic(scale_each(maps[:n].numpy()), math.ceil(math.sqrt(n)), "viridis"), title, stage / name,
              beside=image[0], beside_title="input")
    return [name]


def max_patches(loaded: LoadedRun, stage: Path, data: SplitData, split: str, layer: str, units: int, top: int,
                batch_size: int) -> list[str]:
    """The top patches of each unit: a grid (rows: units) and a CSV."""
    import pandas as pd

    from cvkit.explain.visual.patches import max_patches as find
    from cvkit.files.atomic import write_csv
    from cvkit.plots.visualize import mosaic, plot_grid

    found = find(loaded, data.images, layer, units, top, batch_size)
    k, n = found.values.shape
    size, stride = found.field.size, found.field.stride
    base = f"max_patches_{safe_name(layer)}_{split}"
    table = pd.DataFrame({
        "unit": np.repeat(found.units, n), "rank": np.tile(np.arange(1, n + 1), k),
        "activation": found.values.ravel(), "index": found.index.ravel(),
        "path": [data.paths[i] for i in found.index.ravel()], "y": found.y.ravel(), "x": found.x.ravel(),
        "y0": found.y0.ravel(), "x0": found.x0.ravel(), "height": size[0], "width": size[1]})
    write_csv(stage / f"{base}.csv", table, "%.6g")
    crops = found.crops.reshape(k * n, *found.crops.shape[2:]).astype(np.float64) / 255
    tiles = crops[..., 0] if crops.shape[-1] == 1 else crops
    title = (f"layer '{layer}', {split} split: for each of the {k} units with the largest mean activation (rows), "
             f"the {n} images that activate it most, cropped to its receptive field ({size[0]}x{size[1]} px, "
             f"stride {stride[0]}; zeros outside the image)")
    plot_grid(mosaic(tiles, n, gap=SEPARATOR), title, stage / f"{base}.png", row_labels=[f"unit {u}" for u in found.units],
              col_labels=[f"#{i + 1}" for i in range(n)], tile=size)
    return [f"{base}.png", f"{base}.csv"]


def maximize(loaded: LoadedRun, stage: Path, layer: str | None, unit: int | None, target: int | None,
             steps: int, seed: int) -> list[str]:
    """The synthesized input of a unit or a class."""
    from cvkit.explain.visual.maximize import maximize as ascend
    from cvkit.plots.visualize import plot_images

    found = ascend(loaded, layer=layer, unit=unit, target=target, steps=steps, seed=seed)
    if unit is not None:
        what, name = f"the mean activation of unit {unit} of layer '{layer}'", f"maximize_{safe_name(layer)}_unit{unit}.png"
    else:
        cls = loaded.classes[target]
        what, name = f"the score of class '{cls}'", f"maximize_class_{safe_name(cls)}.png"
    title = (f"the input that maximizes {what}\n{steps} steps of gradient ascent from random noise (seed {seed}), "
             f"jitter, blur and L2: {found.start:.3g} -> {found.final:.3g}")
    plot_images([(found.image, f"{found.image.shape[0]}x{found.image.shape[1]} px")], title, stage / name)
    return [name]


def saliency(loaded: LoadedRun, stage: Path, image: np.ndarray, path: str, target: int | None, smooth: int,
             seed: int) -> list[str]:
    """The gradient saliency (and SmoothGrad) of one image, beside it."""
    from cvkit.explain.visual.saliency import NOISE
    from cvkit.explain.visual.saliency import saliency as compute
    from cvkit.plots.visualize import plot_images

    found = compute(loaded, image, target, smooth, seed)
    cls = loaded.classes[found.target]
    panels = [(image[0], "input"), (found.gradient, "gradient |d score / d pixel|, max over channels")]
    if found.smooth is not None:
        panels.append((found.smooth, f"SmoothGrad: {smooth} noisy copies, sigma {NOISE:.0%} of the range"))
    which = "predicted class" if target is None else "class"
    title = f"saliency of the {which} '{cls}' (probability {found.prob:.2f}) for {Path(path).name}"
    name = f"saliency_{safe_name(Path(path).stem)}" + ("" if target is None else f"_{safe_name(cls)}") + ".png"
    plot_images(panels, title, stage / name)
    return [name]


def embedding(loaded: LoadedRun, stage: Path, data: SplitData, split: str, projection: str, points: int, seed: int,
              batch_size: int) -> list[str]:
    """The penultimate features of a split in 2-D, coloured by class, and the points as a CSV."""
    import pandas as pd

    from cvkit.explain.visual.splits import embedding as embed
    from cvkit.files.atomic import write_csv
    from cvkit.plots.visualize import plot_embedding

    found = embed(loaded, data.images, data.labels, projection, points, seed, batch_size)
    n = len(found.rows)
    sample = f"all {n} images" if n == found.total else f"{n} of {found.total} images (a sample, seed {seed})"
    title = (f"penultimate features of the {split} split in 2-D by {projection.upper() if projection != 'tsne' else 't-SNE'}"
             f" ({found.note}), coloured by true class; {sample}")
    base = f"embedding_{split}_{projection}"
    classes = data.classes or [""]  # the dataset's classes (a regress run's are its target names)
    plot_embedding(found.points, found.labels, classes, title, stage / f"{base}.png")
    write_csv(stage / f"{base}.csv", pd.DataFrame({
        "index": found.rows, "path": [data.paths[i] for i in found.rows],
        "label": [classes[i] for i in found.labels], "x": found.points[:, 0], "y": found.points[:, 1]}), "%.6g")
    return [f"{base}.png", f"{base}.csv"]


def confusion(loaded: LoadedRun, stage: Path, data: SplitData, split: str, batch_size: int) -> list[str]:
    """The confusion matrix of a split, drawn as ``evaluate`` draws it."""
    from cvkit.explain.visual.splits import confusion as count
    from cvkit.plots import plot_confusion_matrix

    name = f"confusion_{split}.png"
    plot_confusion_matrix(count(loaded, data.images, data.labels, batch_size), loaded.classes, stage / name,
                          title=f"confusion matrix of the {split} split, {loaded.run}")
    return [name]


def adversarial(loaded: LoadedRun, stage: Path, image: np.ndarray, path: str, eps: float, steps: int,
                target: int | None) -> tuple[list[str], str]:
    """An adversarial example of one image: the perturbed image and the amplified perturbation as PNGs at
    the model's input size, the top classes before and after (CSV), and one figure of all of them; and
    the summary line (the top class before and after)."""
    import pandas as pd

    from cvkit.explain.visual.adversarial import amplified, attack, top_classes
    from cvkit.files.atomic import write_csv
    from cvkit.files.images import write_png
    from cvkit.plots.visualize import plot_images_and_bars

    found = attack(loaded, image, eps, steps, target)
    before, after, cls = found.before[0], found.after[0], int(found.classes[0])
    names = loaded.classes
    ranked_before, ranked_after = top_classes(before), top_classes(after)
    base = f"adversarial_{safe_name(Path(path).stem)}" + ("" if target is None else f"_to_{safe_name(names[target])}")
    delta = found.delta[0]
    write_png(stage / f"{base}_image.png", found.images[0])
    write_png(stage / f"{base}_perturbation.png", amplified(delta))
    write_csv(stage / f"{base}.csv", pd.DataFrame({
        "rank": np.arange(1, len(ranked_before) + 1),
        "class_before": [names[i] for i in ranked_before], "probability_before": before[ranked_before],
        "class_after": [names[i] for i in ranked_after], "probability_after": after[ranked_after]}), "%.6g")
    method = "FGSM" if steps == 1 else f"PGD, {steps} steps of {found.step * 255:.3g}/255"
    goal = (f"towards class '{names[target]}'" if target is not None
            else f"away from the predicted class '{names[cls]}'")
    linf = float(np.abs(delta).max()) * 255
    title = (f"adversarial example of {Path(path).name} ({method}, eps {eps * 255:.3g}/255 per pixel, {goal}): "
             f"'{names[cls]}' {before[cls]:.3f} -> {after[cls]:.3f}; largest pixel change {linf:.0f}/255")
    panels = [(image[0], f"input: {names[ranked_before[0]]} {before[ranked_before[0]]:.3f}"),
              (amplified(delta), f"perturbation x{127.5 / max(linf, 1):.0f} (gray: none)"),
              (found.images[0], f"perturbed: {names[ranked_after[0]]} {after[ranked_after[0]]:.3f}")]
    bars = [([(names[i], before[i]) for i in ranked_before], "top classes before"),
            ([(names[i], after[i]) for i in ranked_after], "top classes after")]
    plot_images_and_bars(panels, bars, title, stage / f"{base}.png")
    summary = (f"{Path(path).name}: {names[ranked_before[0]]} {before[ranked_before[0]]:.3f} before, "
               f"{names[ranked_after[0]]} {after[ranked_after[0]]:.3f} after ({method}, eps {eps:.4g}; "
               f"'{names[cls]}' {before[cls]:.3f} -> {after[cls]:.3f})")
    return [f"{base}.png", f"{base}_image.png", f"{base}_perturbation.png", f"{base}.csv"], summary


def invert(loaded: LoadedRun, stage: Path, image: np.ndarray, path: str, layer: str, steps: int,
           seed: int) -> tuple[list[str], str]:
    """The image rebuilt from ``layer``'s features, beside the image and its saliency map ("what" next
    to "where"), and alone as a PNG at the model's input size; and the summary line."""
    from cvkit.explain.visual.invert import invert as rebuild
    from cvkit.explain.visual.saliency import saliency as compute
    from cvkit.files.images import write_png
    from cvkit.plots.visualize import plot_images

    found = rebuild(loaded, image, layer, steps, seed)
    where = compute(loaded, image)
    base = f"invert_{safe_name(Path(path).stem)}_{safe_name(layer)}"
    write_png(stage / f"{base}_image.png", found.image)
    cls = loaded.classes[where.target]
    panels = [(image[0], "input"), (found.image, f"rebuilt from layer '{layer}' (what it keeps)"),
              (where.gradient, f"saliency of '{cls}' (where the class looks)")]
    title = (f"{Path(path).name} inverted from layer '{layer}': {steps} Adam steps from noise (seed {seed}) with "
             f"total-variation and L-alpha priors; relative feature error {found.error_start:.3g} -> "
             f"{found.error_final:.3g}")
    plot_images(panels, title, stage / f"{base}.png")
    summary = (f"{Path(path).name}, layer {layer}: relative feature error {found.error_start:.3g} -> "
               f"{found.error_final:.3g} in {steps} steps")
    return [f"{base}.png", f"{base}_image.png"], summary
