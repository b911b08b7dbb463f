"""The report ``evaluate`` writes from probabilities: metrics, predictions, confusion matrix, worst
predictions (one writer for a whole run and for merged shards)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cvkit.data.cache import take
from cvkit.evaluate.metrics import classification_metrics, confusion_matrix, top_losses
from cvkit.files.atomic import write_csv
from cvkit.files.jsonio import write_json
from cvkit.files.outputs import replacing



def write_report(out: Path, probs: np.ndarray, split_data, extra: dict[str, Any], top_n: int,
                 keep: tuple[str, ...] = ()) -> dict[str, Any]:
    """metrics.json, predictions.csv, the confusion matrix and the worst predictions of ``probs`` on
    ``split_data``, written into ``out`` whole (``keep``: entries of ``out`` carried over); the metrics."""
    import shutil

    import pandas as pd

    from cvkit.plots import plot_confusion_matrix, plot_top_losses

    classes, labels = split_data.classes, split_data.labels
    metrics = classification_metrics(labels, probs, classes)
    metrics.update(extra)
    predicted = probs.argmax(1)
    with replacing(out) as stage:
        for name in keep:
            shutil.copytree(out / name, stage / name)
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
    return metrics
