"""``cvkit predict``: class probabilities for new images (files, folders, or a CSV of paths)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cvkit.errors import OptionError, SourceError
from cvkit.data.decode import check_workers
from cvkit.data.targets import image_frames
from cvkit.checks import check_batch_size
from cvkit.files.atomic import write_csv
from cvkit.files.dataset import write_rejected
from cvkit.files.lock import releasing
from cvkit.files.outputs import check_out, replacing, unique_stems
from cvkit.files.owned import OVERLAYS, own_predict
from cvkit.tasks import Task


@dataclass
class PredictResult:
    out: Path
    paths: list[str]
    probs: np.ndarray  # N x K
    classes: list[str]
    rejected: list[tuple[str, str]]
    task: Task

    def top_k(self, k: int) -> list[list[tuple[str, float]]]:
        return self.task.top(self.probs, k)


@releasing  # the --out lock check_out takes is given up on return
def predict(run: str | os.PathLike, inputs: list[str], out: str | os.PathLike | None = None,
            tta: bool | str | Sequence[str] | None = None, device: str = "auto", batch_size: int = 256,
            workers: int | None = None, threshold: float | None = None, probs: bool = False,
            fit: bool = False, calibration: bool = True) -> PredictResult:
    """Predict every readable image of ``inputs``; unreadable ones are reported and skipped.

    A segment run predicts each image at its own size (``fit``: squashed to the run's input size and
    back), writing a label map and an overlay per image (``probs``: the probabilities too). ``tta``:
    test-time views averaged with each image (``"flip,shift"``, :mod:`cvkit.transforms.views`; True: flip);
    None: flip where training chose it on val (model.json's ``tta``). ``calibration``: apply
    RUN/calibration.json (``evaluate --calibrate``) where there is one."""
    from cvkit.device import resolve_device
    from cvkit.runtime import collect_inputs, load_run, read_images

    check_batch_size(batch_size)
    check_workers(workers)
    loaded = load_run(run, resolve_device(device))
    loaded.uses_calibration(calibration)  # before --threshold, which is a threshold on the calibrated probabilities
    if threshold is not None:
        loaded.task.set_threshold(threshold)
    if (probs or fit) and not loaded.task.dense:
        raise OptionError(f"--{'probs' if probs else 'fit'} is for runs that predict a class per pixel (--task "
                          f"segment); {loaded.run} predicts {loaded.task.name}")
    views = loaded.tta_views(tta)
    paths = collect_inputs(inputs)
    out = check_out(out or loaded.run / "predict", reads=[loaded.run, *inputs], own=own_predict, force=True)
    if loaded.task.dense:  # a dense task undoes flips only (Task.undoes)
        return _predict_dense(loaded, paths, out, bool(views), batch_size, probs, fit)
    found = read_images(paths, loaded.input_size, loaded.in_chans, loaded.info.resize, workers)
    if not found.paths:
        first = found.rejected[0]
        raise SourceError(f"none of the {len(paths)} input image(s) could be read (first: {first[0]}: {first[1]}); "
                          f"give readable images")
    probs, _ = loaded.predict(found.images, batch_size=batch_size, tta=views)
    frames = image_frames(loaded.input_size, loaded.info.resize, found.sizes)  # positions in each file's pixels
    with replacing(out) as stage:
        write_csv(stage / "predictions.csv", loaded.task.prediction_table(found.paths, probs, frames=frames), "%.6g")
        write_rejected(stage, found.rejected)
        loaded.task.draw(found.images, probs, unique_stems(found.paths), stage / OVERLAYS)
    return PredictResult(out, found.paths, probs, loaded.classes, found.rejected, loaded.task)


def _predict_dense(loaded, paths: list[str], out: Path, tta: bool, batch_size: int, probs: bool,
                   fit: bool) -> PredictResult:
    from cvkit.predict.dense import predict_dense

    with replacing(out) as stage:
        table, rejected, shares = predict_dense(loaded, paths, unique_stems(paths), stage, tta, min(batch_size, 64),
                                                probs, fit)
        if not len(table):
            first = rejected[0]
            raise SourceError(f"none of the {len(paths)} input image(s) could be read (first: {first[0]}: {first[1]}); "
                              f"give readable images")
        write_csv(stage / "predictions.csv", table, "%.6g")
        write_rejected(stage, rejected)
    return PredictResult(out, table["path"].tolist(), shares, loaded.classes, rejected, loaded.task)
