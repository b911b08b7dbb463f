"""``cvkit convolutionalize``: a run's classifier as a fully convolutional net, written as a run, and
its class score maps on images of any size at least the training size."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from cvkit.convolutionalize.dense import stitch, upsample
from cvkit.errors import OptionError, SourceError
from cvkit.files.dataset import DEFAULT_TASK, SEGMENT, write_rejected
from cvkit.files.images import BadImage, read_image_file
from cvkit.files.jsonio import write_json
from cvkit.files.lock import releasing
from cvkit.files.outputs import check_out, replacing
from cvkit.files.owned import CONVOLUTIONAL_JSON, own_converted
from cvkit.files.run import save_model_weights
from cvkit.models.convolutional import to_convolutional
from cvkit.models.receptive import ReceptiveField, receptive_field
from cvkit.runtime import collect_inputs, load_run

TOLERANCE = 1e-4  # largest |converted - original| logit allowed at the training size, float32


@dataclass
class ConvResult:
    out: Path
    max_difference: float
    rf: ReceptiveField
    maps: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)  # (image, shape of its score maps)
    names: list[str] = field(default_factory=list)  # each map's file name stem, in the order of ``maps``
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (image, why it was skipped)


@releasing  # the --out lock check_out takes is given up on return
def convolutionalize(run: str | os.PathLike, out: str | os.PathLike | None = None, images: list[str] | None = None,
                     dense_stitch: bool = False, dense_upsample: bool = False, top: int = 3,
                     force: bool = False, segmenter: str | None = None,
                     data: str | os.PathLike | None = None) -> ConvResult:
    """Convert RUN's head, check it on an input of the training size, write the converted run to ``out``
    (default RUN/convolutional), and score maps for ``images`` (image files, folders, CSV files with a
    ``path`` column, as ``predict`` takes them). Images that cannot be read or are smaller than the
    training size are skipped and listed in ``out/rejected.csv``; none usable is an error.

    ``segmenter`` ("upsample" or "stitch"): the converted run predicts a class per pixel (task segment),
    its score maps placed in the image's frame (:mod:`cvkit.models.scoremaps`), for evaluate and predict;
    ``data``: a segmentation dataset whose classes (the classifier's, by name) and order it takes."""
    from cvkit.plots.dense import plot_label_map, plot_score_maps

    loaded = load_run(run, torch.device("cpu"), precision="fp32")
    info = loaded.info
    if info.convolutional:
        raise OptionError(f"{run} is already convolutional; give the run it was converted from")
    if loaded.task.dense:
        raise OptionError(f"{run} predicts a class per pixel already (it is fully convolutional); convolutionalize "
                          f"a classification run")
    if data is not None and segmenter is None:
        raise OptionError("--data names the segmentation dataset whose classes a --segmenter takes; add --segmenter")
    classes, order = info.classes, None
    if segmenter is not None:
        check_segmenter(segmenter, loaded)
        if data is not None:
            classes, order = segmenter_classes(info.classes, data)
    if info.mean_image:
        raise OptionError(f"{run} was normalized with a per-pixel mean image (normalize --mode pixel), which has "
                          "the training size only; normalize per channel and retrain to make score maps")
    size = loaded.input_size
    paths = list(dict.fromkeys(collect_inputs(images))) if images else []  # a file given twice: maps once
    out = check_out(out or loaded.run / "convolutional", reads=[loaded.run, *(images or [])], own=own_converted,
                    force=force or out is None)
    x = torch.randn(4, info.in_chans, *size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        original = loaded.model(x)  # before the conversion, which moves the head's layers into the new net
    dense = to_convolutional(loaded.model, info.in_chans, size).eval()
    with torch.no_grad():
        difference = float((dense(x) - original).abs().max())
    if not difference < TOLERANCE:
        raise OptionError(f"the converted net's logits differ from {run}'s by {difference:.2e} (over {TOLERANCE}); "
                          "this head cannot be made convolutional exactly")
    rf = receptive_field(dense, f"head.{len(dense.head) - 1}", info.in_chans)
    result = ConvResult(out, difference, rf)
    with replacing(out) as stage:
        save_model_weights(stage, dense.state_dict(), info.epoch)
        converted = replace(info, convolutional=True)
        if segmenter is not None:
            converted = replace(converted, task=SEGMENT, task_state={}, classes=classes, score_maps={
                "mode": segmenter, "stride": list(rf.stride), "centre": list(rf.centre), "min_size": list(size),
                "order": order})
        converted.write(stage)
        write_json(stage / CONVOLUTIONAL_JSON, {
            "format": 1, "source_run": str(loaded.run), "output_stride": list(rf.stride),
            "receptive_field": list(rf.size), "cell_00_centre": list(rf.centre),
            "max_abs_difference": difference, "stitch": dense_stitch, "upsample": dense_upsample,
            "segmenter": segmenter})
        taken: set[str] = set()
        for path, image in _usable(paths, info.in_chans, size, result.rejected):
            name = unique_name(Path(path).stem, taken)
            with torch.no_grad():
                batch = loaded.pre(torch.from_numpy(np.array(image[None])))  # a writable copy
                maps = stitch(dense, batch, rf.stride) if dense_stitch else dense.score_maps(batch)[0]
            k, h, w = maps.shape
            probs = loaded.task.probabilities(maps.permute(1, 2, 0).reshape(h * w, k)).T.reshape(-1, h, w)
            scores = probs.double().numpy()[:loaded.task.class_outputs]  # class maps (not a localize box)
            if dense_upsample:  # stitched maps have a cell per input pixel: stride 1
                scores = upsample(scores, rf, image.shape[:2], (1.0, 1.0) if dense_stitch else None)
            np.save(stage / f"{name}_scores.npy", scores.astype(np.float32))
            plot_score_maps(image, scores, info.classes, top, stage / f"{name}_heatmap.png")
            plot_label_map(image, scores.argmax(0), info.classes, stage / f"{name}_labels.png")
            result.maps.append((path, tuple(scores.shape)))
            result.names.append(name)
        if paths:
            if not result.maps:
                first = result.rejected[0]
                raise SourceError(f"none of the {len(paths)} input image(s) can be used (first: {first[0]}: "
                                  f"{first[1]}); give readable images of at least {size[0]}x{size[1]} pixels")
            write_rejected(stage, result.rejected)
    return result


def check_segmenter(mode: str, loaded) -> None:
    """``--segmenter``: a known mode, and a classifier of one softmax output per class."""
    from cvkit.models.scoremaps import MODES

    if mode not in MODES:
        raise OptionError(f"--segmenter {mode} must be one of {', '.join(MODES)}")
    if loaded.task.name != DEFAULT_TASK or loaded.info.num_outputs != loaded.info.num_classes:
        raise OptionError(f"--segmenter labels each pixel with the best of the classifier's class scores; "
                          f"{loaded.run} is a {loaded.task.name} run with {loaded.info.num_outputs} output(s) for "
                          f"{loaded.info.num_classes} classes: convert a classify run trained with --loss ce")


def segmenter_classes(classes: list[str], data: str | os.PathLike) -> tuple[list[str], list[int]]:
    """The dataset's classes, and for each the classifier's output of the same name."""
    from cvkit.files.dataset import read_classes

    wanted = read_classes(data)
    missing = [c for c in wanted if c not in classes]
    if missing or len(wanted) != len(classes):
        what = f"lacks {', '.join(missing[:5])}" if missing else f"has {len(classes)} classes, the dataset {len(wanted)}"
        raise OptionError(f"--data {data}: the classifier's classes must be the dataset's, in any order; it {what}")
    return wanted, [classes.index(c) for c in wanted]


def _usable(paths: list[str], in_chans: int, size: tuple[int, int],
            rejected: list[tuple[str, str]]) -> Iterator[tuple[str, np.ndarray]]:
    """Each image of ``paths`` that can be used, at its own size and decoded as ``prepare`` decodes it, one
    at a time (photos can be large); the others go to ``rejected`` with the reason."""
    for path in paths:
        try:
            image = read_image_file(path, in_chans)[0].array
        except BadImage as e:
            rejected.append((path, str(e)))
            continue
        if image.shape[0] < size[0] or image.shape[1] < size[1]:
            rejected.append((path, f"too small: {image.shape[0]}x{image.shape[1]}, smaller than the training size "
                                   f"{size[0]}x{size[1]}"))
            continue
        yield path, image


def unique_name(stem: str, taken: set[str]) -> str:
    """``stem``, numbered when an earlier image took it (``a/x.png`` and ``b/x.png`` give ``x`` and ``x_2``)."""
    name, n = stem, 1
    while name in taken:
        n += 1
        name = f"{stem}_{n}"
    taken.add(name)
    return name
