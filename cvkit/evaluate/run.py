"""``cvkit evaluate``: score one run, or an ensemble of runs, on a dataset split and write the report."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cvkit.data.cache import take
from cvkit.errors import ManifestError, OptionError
from cvkit.evaluate.metrics import classification_metrics, confusion_matrix, top_losses
from cvkit.files.atomic import write_csv
from cvkit.files.dataset import SPLITS, is_dataset
from cvkit.files.jsonio import write_json
from cvkit.files.outputs import check_out, holds_only, replacing

EVALUATE_FILES = ("metrics.json", "predictions.csv", "confusion_matrix.csv", "confusion_matrix.png",
                  "top_losses.csv", "top_losses.png")


@dataclass
class EvalResult:
    out: Path
    metrics: dict[str, Any]
    members: list[dict[str, Any]]


def evaluate(runs: list[str | os.PathLike], data: str | os.PathLike | None = None, split: str = "test",
             out: str | os.PathLike | None = None, tta: bool = False, top_n: int = 16, device: str = "auto",
             batch_size: int = 512) -> EvalResult:
    """Probabilities of every run on ``split`` (an ensemble averages them), metrics and pictures in ``out``."""
    import pandas as pd

    from cvkit.data import load_split
    from cvkit.device import resolve_device
    from cvkit.plots import plot_confusion_matrix, plot_top_losses
    from cvkit.runtime import load_run

    if not runs:
        raise OptionError("give at least one RUN directory")
    if split not in SPLITS:
        raise OptionError(f"--split {split} must be one of {', '.join(SPLITS)}")
    if top_n < 0:
        raise OptionError(f"--top {top_n} must be 0 or more (the number of worst predictions to show)")
    check_batch_size(batch_size)
    dev = resolve_device(device)
    loaded = [load_run(r, dev) for r in runs]
    classes = loaded[0].classes
    for member in loaded[1:]:
        if member.classes != classes:
            raise OptionError(f"{member.run} was trained on other classes than {loaded[0].run}; "
                              f"an ensemble needs the same classes in the same order")
    data = Path(data or loaded[0].data or "")
    if not is_dataset(data):
        raise OptionError(f"--data {data or '?'} is not a dataset directory; pass --data DIR")
    default = loaded[0].run / (f"eval_{split}" if len(loaded) == 1 else f"ensemble_eval_{split}")
    out = check_out(out or default, reads=[*(m.run for m in loaded), data], own=holds_only(EVALUATE_FILES), force=True)
    members, all_probs, split_data = [], [], None
    for member in loaded:
        split_data = load_split(data, split, member.input_size)
        if split_data.classes != classes:
            raise ManifestError(f"{data}/classes.json differs from the classes of {member.run}; evaluate on the "
                                f"dataset the run was trained on")
        if split_data.images.shape[3] != member.in_chans:
            raise ManifestError(f"{data} has {split_data.images.shape[3]} channel(s), {member.run} takes "
                                f"{member.in_chans}; prepare the dataset with --channels {member.in_chans}")
        probs, _ = member.predict(split_data.images, split_data.labels, batch_size, tta)
        all_probs.append(probs)
        scores = classification_metrics(split_data.labels, probs, classes)
        members.append({"run": str(member.run), "accuracy": scores["accuracy"], "log_loss": scores["log_loss"],
                        "balanced_accuracy": scores["balanced_accuracy"]})
    probs = np.mean(all_probs, axis=0)
    labels = split_data.labels
    metrics = classification_metrics(labels, probs, classes)
    metrics.update({"split": split, "data": str(data), "runs": [str(m.run) for m in loaded], "tta": tta})
    if len(loaded) > 1:
        metrics["members"] = members

    predicted = probs.argmax(1)
    with replacing(out) as stage:
        table = pd.DataFrame({"path": split_data.paths, "label": [classes[i] for i in labels],
                              "predicted": [classes[i] for i in predicted]})
        for i, name in enumerate(classes):
            table[f"prob_{name}"] = probs[:, i]
        write_csv(stage / "predictions.csv", table, "%.6g")
        matrix = confusion_matrix(labels, predicted, len(classes))
        counts = pd.DataFrame(matrix, columns=classes)
        counts.insert(0, "true", classes)  # rows: true class, columns: predicted class
        write_csv(stage / "confusion_matrix.csv", counts)
        plot_confusion_matrix(matrix, classes, stage / "confusion_matrix.png")
        worst = top_losses(labels, probs, min(top_n, len(labels)))
        p_true = probs[worst, labels[worst]]
        p_pred = probs[worst, predicted[worst]]
        write_csv(stage / "top_losses.csv", pd.DataFrame({
            "path": [split_data.paths[i] for i in worst], "label": [classes[labels[i]] for i in worst],
            "predicted": [classes[predicted[i]] for i in worst], "prob_predicted": p_pred, "prob_label": p_true,
            "loss": -np.log(np.clip(p_true, 1e-15, 1.0))}), "%.6g")
        if len(worst):
            plot_top_losses(take(split_data.images, worst), labels[worst], predicted[worst], p_true, p_pred, classes, stage / "top_losses.png")
        write_json(stage / "metrics.json", metrics)
    return EvalResult(out, metrics, members)


def check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise OptionError(f"--batch-size {batch_size} must be at least 1")
