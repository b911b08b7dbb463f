"""``cvkit cam``: class activation maps for images, boxes from the maps, and how good they are.

Images are read in chunks (as ``prepare`` decodes them, at the model's input size) and explained in
batches on the device; each map is written as ``<stem>_<method>.npy`` (at the model's input size)
and an overlay PNG, and one row per map goes to ``cams.csv`` with the box in the original image's
pixels. ``--boxes`` adds localization figures, ``--metrics`` deletion/insertion faithfulness.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cvkit.data.decode import check_workers
from cvkit.errors import OptionError, SourceError
from cvkit.explain.boxes import box_from_map, box_to_original, check_threshold, localization_metrics, peak
from cvkit.explain.methods import METHODS, class_maps, check_method
from cvkit.files.cams import CAM_FILES, read_true_boxes, write_cams_csv, write_faithfulness, write_localization
from cvkit.files.dataset import write_rejected
from cvkit.files.images import image_size
from cvkit.files.lock import releasing
from cvkit.files.outputs import check_out, holds_only, replacing, unique_stems
from cvkit.plots.explain import write_cam_overlay
from cvkit.progress import progress_bar
from cvkit.runtime import LoadedRun, collect_inputs, read_images
from cvkit.runtime.features import check_layer, default_layer

CHUNK = 512  # images decoded at a time: memory stays bounded on folders of any size
# What --force may replace: cam's own files, the maps named after a method (never any PNG of the user's).
OWN = (*(f for f in CAM_FILES if "*" not in f),
       *(f"*_{m}{end}" for m in METHODS for end in (".png", ".npy", "_top*.png", "_top*.npy")), "shard-*-of-*")


@dataclass
class CamOptions:
    methods: list[str] = field(default_factory=lambda: ["gradcam"])
    class_name: str | None = None
    topk: int = 1
    layer: str | None = None
    box_threshold: float = 0.2
    boxes: str | None = None  # CSV of true boxes: path,x0,y0,x1,y1[,label]
    metrics: bool = False
    batch_size: int = 32
    workers: int | None = None


@dataclass
class CamSummary:
    out: Path
    layer: str
    methods: list[str]
    images: int
    maps: int
    rejected: list[tuple[str, str]]
    seconds: dict[str, float]  # per method: seconds spent computing its maps
    localization: dict[str, dict] | None = None
    faithfulness: dict[str, dict] | None = None


def check_options(subject: LoadedRun, options: CamOptions) -> list[int] | None:
    """Check the options against the model; returns the --class index (as a list) or None."""
    for method in options.methods:
        check_method(method)
    if len(set(options.methods)) != len(options.methods):
        raise OptionError("--method names a method twice; give each once")
    check_threshold(options.box_threshold)
    if options.topk < 1 or options.topk > len(subject.classes):
        raise OptionError(f"--topk {options.topk} must lie between 1 and the number of classes ({len(subject.classes)})")
    if options.batch_size < 1:
        raise OptionError(f"--batch-size {options.batch_size} must be at least 1")
    check_workers(options.workers)
    if options.class_name is None:
        return None
    if options.topk > 1:
        raise OptionError("--class and --topk choose the target class two ways; give one of them")
    if options.class_name not in subject.classes:
        import difflib

        close = difflib.get_close_matches(options.class_name, subject.classes, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else f"the classes are {', '.join(subject.classes[:10])}" + (
            ", ..." if len(subject.classes) > 10 else "")
        raise OptionError(f"--class {options.class_name} is not a class of the model; {hint}")
    return [subject.classes.index(options.class_name)]


@releasing  # the --out lock check_out takes is given up on return
def cam(subject: LoadedRun, inputs: list[str], out: str | os.PathLike | None, options: CamOptions,
        force: bool = False, shard: tuple[int, int] | None = None) -> CamSummary:
    """Maps for every readable image of ``inputs``, written to ``out`` (default ``RUN/cam``).

    ``shard=(I, N)``: share I of the sorted inputs only, into ``out/shard-I-of-N``: each shard folder is
    complete on its own (its maps, cams.csv, rejected.csv), and file names are those of an unsharded run."""
    forced = check_options(subject, options)
    size, chans = subject.input_size, subject.in_chans
    layer = check_layer(subject.model, options.layer, chans, size) if options.layer else default_layer(
        subject.model, chans, size)
    paths = collect_inputs(inputs)
    stems = dict(zip(paths, unique_stems(paths)))  # over all inputs: a shard names files as a whole run does
    if shard is not None:
        from cvkit.data.selection import shard_range

        rows = shard_range(len(paths), *shard)
        paths = paths[rows.start:rows.stop]
    truth = read_true_boxes(options.boxes) if options.boxes else None
    reads = [*inputs] + ([subject.run] if subject.run.is_dir() else [])
    default_out = subject.run / "cam" if subject.run.is_dir() else Path("cam")
    target = Path(out or default_out)
    if shard is not None:
        target = target / f"shard-{shard[0]}-of-{shard[1]}"
    out = check_out(target, reads=reads, own=holds_only(OWN, {"shard-*-of-*": holds_only(OWN)}), force=force or out is None)
    rows: list[dict] = []
    found_paths: list[str] = []
    rejected: list[tuple[str, str]] = []
    seconds: dict[str, float] = defaultdict(float)
    per_method: dict[str, dict[str, list]] = {m: defaultdict(list) for m in options.methods}
    with replacing(out) as stage, progress_bar("CAM", len(paths), unit="img") as bar:
        for start in range(0, len(paths), CHUNK):
            found = read_images(paths[start:start + CHUNK], size, chans, subject.info.resize, options.workers)
            rejected += found.rejected
            found_paths += found.paths
            for b in range(0, len(found.paths), options.batch_size):
                images = found.images[b:b + options.batch_size]
                batch_paths = found.paths[b:b + options.batch_size]
                _explain_batch(subject, images, batch_paths, stems, layer, options, forced, truth, stage, rows,
                               seconds, per_method)
                bar.advance(len(batch_paths))
            bar.advance(len(found.rejected))
        if not found_paths:
            first = rejected[0]
            raise SourceError(f"none of the {len(paths)} input image(s) could be read (first: {first[0]}: "
                              f"{first[1]}); give readable images")
        write_cams_csv(stage, rows)
        write_rejected(stage, rejected)
        localization = faithful = None
        if truth is not None:
            localization = {m: localization_metrics(**_stack(v))
                            for m, v in per_method.items() if v["true"]}
            if not localization:
                raise SourceError(f"--boxes {options.boxes} names none of the images explained; its paths are "
                                  "relative to the CSV's folder")
            write_localization(stage, {"box_threshold": options.box_threshold, "layer": layer, "methods": localization,
                                       "images_with_boxes": len(next(iter(per_method.values()))["true"])})
        if options.metrics:
            faithful = {m: {k: float(np.mean(v[k])) for k in ("deletion_auc", "insertion_auc", "average_drop",
                                                              "increase_in_confidence")} for m, v in per_method.items()}
            write_faithfulness(stage, {"layer": layer, "images": len(found_paths), "methods": faithful})
    return CamSummary(out, layer, options.methods, len(found_paths), len(rows), rejected, dict(seconds),
                      localization, faithful)


def _stack(values: dict[str, list]) -> dict[str, np.ndarray]:
    return {"pred_boxes": np.asarray(values["pred"]), "true_boxes": np.asarray(values["true"]),
            "peaks": np.asarray(values["peak"]), "correct": np.asarray(values["correct"], dtype=bool)}


def _explain_batch(subject: LoadedRun, images: np.ndarray, paths: list[str], stems: dict[str, str], layer: str,
                   options: CamOptions, forced: list[int] | None, truth: dict | None, stage: Path, rows: list[dict],
                   seconds: dict[str, float], per_method: dict[str, dict[str, list]]) -> None:
    from cvkit.explain.faithfulness import faithfulness

    n, model, loss = len(paths), subject.model, subject.task.probabilities  # what the run's outputs mean
    classes = subject.task.class_outputs  # the outputs that score classes, when others follow (a box)
    x = subject.pre(torch.from_numpy(images))
    if forced is not None:
        ranked = torch.tensor(forced * n, device=x.device).view(n, 1)
    elif options.topk > 1 or classes is not None:
        with torch.no_grad():
            ranked = model(x).float()[:, :classes].topk(options.topk, dim=1).indices
    else:
        ranked = None  # the predicted class, from the maps' own forward pass
    sizes = [image_size(p) for p in paths]
    for method in options.methods:
        for rank in range(options.topk):
            started = time.perf_counter()
            result = class_maps(model, x, layer, None if ranked is None else ranked[:, rank], method,
                                precision=subject.precision)
            maps = result.maps.float().cpu().numpy()
            seconds[method] += time.perf_counter() - started
            probs = loss(result.logits.float()).cpu().numpy()
            targets = result.targets.cpu().numpy()
            predicted = probs[:, :classes].argmax(1)
            for i, path in enumerate(paths):
                name = f"{stems[path]}_{method}" + (f"_top{rank + 1}" if options.topk > 1 else "")
                target, score = int(targets[i]), float(probs[i, targets[i]])
                box = box_from_map(maps[i], options.box_threshold)
                original = box_to_original(box, subject.input_size, sizes[i], subject.info.resize)
                np.save(stage / f"{name}.npy", maps[i].astype(np.float32))
                write_cam_overlay(images[i], maps[i], box, f"{subject.classes[target]} {score:.3f} ({method})",
                                  stage / f"{name}.png")
                rows.append({"path": path, "class": subject.classes[target], "score": score,
                             "x0": original[0], "y0": original[1], "x1": original[2], "y1": original[3],
                             "method": method, "rank": rank + 1, "map": f"{name}.npy"})
                known = truth.get(path) if truth is not None and rank == 0 else None
                if known is not None:
                    true_box, label = known
                    label = label or Path(path).parent.name
                    px, py = peak(maps[i])
                    spot = box_to_original((px, py, px + 1, py + 1), subject.input_size, sizes[i], subject.info.resize)
                    found = per_method[method]
                    found["pred"].append(original)
                    found["true"].append(true_box)
                    found["peak"].append(((spot[0] + spot[2]) / 2, (spot[1] + spot[3]) / 2))
                    found["correct"].append(subject.classes[int(predicted[i])] == label)
            if rank == 0 and options.metrics:
                scores = faithfulness(model, x, result.maps, result.targets, loss, batch_size=options.batch_size * 4)
                for key, values in scores.per_image().items():
                    per_method[method][key].extend(values.tolist())
