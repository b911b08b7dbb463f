"""``cvkit evaluate``: score one run, or an ensemble of runs, on a dataset split and write the report."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cvkit.errors import ManifestError, OptionError
from cvkit.evaluate.metrics import classification_metrics, confusion_matrix, top_losses
from cvkit.io import SPLITS, write_csv, write_json


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
    import torch

    from cvkit.data import load_split
    from cvkit.device import resolve_device
    from cvkit.evaluate.plots import plot_confusion_matrix, plot_top_losses
    from cvkit.infer import predict_batches
    from cvkit.runs import load_run
    from cvkit.train.loader import Batches

    if not runs:
        raise OptionError("give at least one RUN directory")
    if split not in SPLITS:
        raise OptionError(f"--split {split} must be one of {', '.join(SPLITS)}")
    dev = resolve_device(device)
    loaded = [load_run(r, dev) for r in runs]
    classes = loaded[0].classes
    for member in loaded[1:]:
        if member.classes != classes:
            raise OptionError(f"{member.run} was trained on other classes than {loaded[0].run}; "
                              f"an ensemble needs the same classes in the same order")
    data = Path(data or loaded[0].data or "")
    if not (data / "manifest.csv").is_file():
        raise OptionError(f"--data {data or '?'} is not a dataset directory; pass --data DIR")
    members, all_probs, split_data = [], [], None
    for member in loaded:
        split_data = load_split(data, split, member.input_size)
        if split_data.classes != classes:
            raise ManifestError(f"{data}/classes.json differs from the classes of {member.run}; evaluate on the "
                                f"dataset the run was trained on")
        if split_data.images.shape[3] != int(member.info["in_chans"]):
            raise ManifestError(f"{data} has {split_data.images.shape[3]} channel(s), {member.run} takes "
                                f"{member.info['in_chans']}; prepare the dataset with --channels "
                                f"{member.info['in_chans']}")
        batches = Batches(split_data.images, split_data.labels, batch_size, dev, shuffle=False)
        with torch.inference_mode():
            probs, _ = predict_batches(member.model, batches.epoch(), member.pre, member.info["loss"],
                                       member.precision, tta=tta, num_classes=len(classes))
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

    default = loaded[0].run / (f"eval_{split}" if len(loaded) == 1 else f"ensemble_eval_{split}")
    out = Path(out) if out else default
    out.mkdir(parents=True, exist_ok=True)
    predicted = probs.argmax(1)
    table = pd.DataFrame({"path": split_data.paths, "label": [classes[i] for i in labels],
                          "predicted": [classes[i] for i in predicted]})
    for i, name in enumerate(classes):
        table[f"prob_{name}"] = probs[:, i]
    write_csv(out / "predictions.csv", table, "%.6g")
    matrix = confusion_matrix(labels, predicted, len(classes))
    counts = pd.DataFrame(matrix, columns=classes)
    counts.insert(0, "true", classes)  # rows: true class, columns: predicted class
    write_csv(out / "confusion_matrix.csv", counts)
    plot_confusion_matrix(matrix, classes, out / "confusion_matrix.png")
    worst = top_losses(labels, probs, min(top_n, len(labels)))
    p_true = probs[worst, labels[worst]]
    p_pred = probs[worst, predicted[worst]]
    write_csv(out / "top_losses.csv", pd.DataFrame({
        "path": [split_data.paths[i] for i in worst], "label": [classes[labels[i]] for i in worst],
        "predicted": [classes[predicted[i]] for i in worst], "prob_predicted": p_pred, "prob_label": p_true,
        "loss": -np.log(np.clip(p_true, 1e-15, 1.0))}), "%.6g")
    plot_top_losses(np.asarray(split_data.images[worst]), labels[worst],
                    predicted[worst], p_true, p_pred, classes, out / "top_losses.png")
    write_json(out / "metrics.json", metrics)
    return EvalResult(out, metrics, members)
