"""``cvkit evaluate``: score one run, or an ensemble of runs, on a dataset split and write the report."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.markup import escape

from cvkit.checks import check_batch_size
from cvkit.errors import ManifestError, OptionError
from cvkit.evaluate.calibrate import before_after, check_calibrate, check_scalable, fit_calibration
from cvkit.evaluate.report import write_report
from cvkit.files.dataset import SPLITS, DatasetInfo, is_dataset
from cvkit.files.lock import releasing
from cvkit.files.outputs import check_out
from cvkit.files.owned import own_evaluate
from cvkit.progress import info
from cvkit.transforms.views import VIEW_NAMES


@dataclass
class EvalResult:
    out: Path
    metrics: dict[str, Any]
    members: list[dict[str, Any]]


@releasing  # the --out lock check_out takes is given up on return
def evaluate(runs: list[str | os.PathLike], data: str | os.PathLike | None = None, split: str = "test",
             out: str | os.PathLike | None = None, tta: bool | str | Sequence[str] | None = None, top_n: int = 16,
             device: str = "auto", batch_size: int = 512, shard: tuple[int, int] | None = None,
             threshold: float | None = None, calibrate: bool = False, calibration: bool = True) -> EvalResult:
    """Probabilities of every run on ``split`` (an ensemble averages them), metrics and pictures in ``out``.

    ``tta``: test-time views averaged with each image (``"flip,shift"``, :mod:`cvkit.transforms.views`; True:
    flip, False: none); None: flip where training chose it on val (model.json's ``tta``).
    ``calibrate``: first fit temperature scaling on the val split and write it to RUN/calibration.json;
    ``calibration``: apply a run's calibration.json (the report then adds NLL and ECE before and after).
    ``shard=(I, N)``: only share I of the split's images, into ``out/shard-I-of-N`` (probabilities and
    predictions), for :func:`cvkit.evaluate.shards.merge_shards` to put together."""
    from cvkit.data import load_split
    from cvkit.device import resolve_device
    from cvkit.runtime import load_run

    if not runs:
        raise OptionError("give at least one RUN directory")
    if split not in SPLITS:
        raise OptionError(f"--split {split} must be one of {', '.join(SPLITS)}")
    if top_n < 0:
        raise OptionError(f"--top {top_n} must be 0 or more (the number of worst predictions to show)")
    check_batch_size(batch_size)
    if calibrate:
        check_calibrate(runs, shard, calibration)
    dev = resolve_device(device)
    loaded = [load_run(r, dev) for r in runs]
    if tta is not None:  # a bad --tta fails here, before any work
        for member in loaded:
            member.tta_views(tta)
    classes, task = loaded[0].classes, loaded[0].task
    if calibrate:
        check_scalable(loaded[0])
    fitted = [member.uses_calibration(calibration and not calibrate) for member in loaded]
    for member in loaded[1:]:
        if member.classes != classes or member.task.name != task.name:
            raise OptionError(f"{member.run} was trained on other classes or for another task than {loaded[0].run}; "
                              f"an ensemble needs the same task and classes in the same order")
    data = Path(data or loaded[0].data or "")
    if not is_dataset(data):
        raise OptionError(f"--data {data or '?'} is not a dataset directory; pass --data DIR")
    prepared = DatasetInfo.read(data).task
    if not type(task).trains_on(prepared):
        raise OptionError(f"{loaded[0].run} predicts {task.name} and {data} was prepared for {prepared}: its targets "
                          f"cannot score that run; evaluate on a dataset of the run's task")
    used = [member.tta_views(tta) for member in loaded]
    if fitted[0] is not None and not calibrate and fitted[0].fitted_views() != tuple(used[0]):
        info(f"{escape(str(loaded[0].run))}: its temperature was fit with --tta {','.join(fitted[0].fitted_views()) or 'none'}"
             f" and this evaluation uses --tta {','.join(used[0]) or 'none'}; to calibrate for these views, run "
             f"'cvkit evaluate {escape(str(loaded[0].run))} --calibrate' with them")
    if calibrate:  # before any output is written: a refusal leaves nothing behind
        fitted = [fit_calibration(loaded[0], data, batch_size, used[0])]
        task.set_temperature(fitted[0].temperature)
    if threshold is not None:  # --threshold: one for every class, over the ones chosen on val (scaled with them)
        task.set_threshold(threshold)
    default = loaded[0].run / (f"eval_{split}" if len(loaded) == 1 else f"ensemble_eval_{split}")
    if shard is not None:
        from cvkit.evaluate.shards import shard_folder

        out = shard_folder(Path(out or default), shard)
    out = check_out(out or default, reads=[*(m.run for m in loaded), data], own=own_evaluate, force=True)
    members, all_probs, split_data, block, draw = [], [], None, None, None
    for member in loaded:
        split_data = load_split(data, split, member.data_size)
        total = len(split_data.labels)
        if shard is not None:
            from cvkit.data.selection import take_shard

            split_data = take_shard(split_data, shard)
        why = member.task.mismatch(split_data)
        if why is not None:
            raise ManifestError(f"{data} does not fit {member.run}: {why}; evaluate on the dataset the run was "
                                f"trained on")
        if split_data.images.shape[3] != member.in_chans:
            raise ManifestError(f"{data} has {split_data.images.shape[3]} channel(s), {member.run} takes "
                                f"{member.in_chans}; prepare the dataset with --channels {member.in_chans}")
        targets = member.task.targets(split_data)
        if fitted[0] is not None and len(loaded) == 1 and shard is None:  # one pass gives before and after
            probs, block, draw = before_after(member, split_data.images, targets, batch_size, used[0], fitted[0])
        else:
            probs, _ = member.predict(split_data.images, targets, batch_size, used[len(all_probs)])
        all_probs.append(probs)
        scores = task.metrics(probs, targets)
        members.append({"run": str(member.run), **{key: scores[key] for key in task.summary_keys},
                        "tta_views": list(used[len(all_probs) - 1])})
    probs = np.mean(all_probs, axis=0)
    extra: dict[str, Any] = {"task": task.name, "split": split, "data": str(data), "runs": [str(m.run) for m in loaded],
                             "tta": any(used), "tta_views": [v for v in VIEW_NAMES if any(v in u for u in used)]}
    if fitted[0] is not None:  # (a shard's merge scales the thresholds of a multilabel run the same way)
        extra["calibration"] = block or {"method": fitted[0].method, "temperature": fitted[0].temperature}
    if len(loaded) > 1:
        extra["members"] = members
    if shard is not None:
        from cvkit.evaluate.shards import write_shard

        extra.pop("members", None)  # the merge scores the ensemble as a whole
        return EvalResult(out, write_shard(out, task, probs, split_data, shard, {**extra, "total": total}), members)
    result = EvalResult(out, write_report(out, task, probs, split_data, extra, top_n, draw=draw), members)
    if calibrate:
        fitted[0].write(loaded[0].run)
    return result
