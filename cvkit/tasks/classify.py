"""``classify``: one class per image (the manifest's ``label``), softmax or sigmoid outputs.

Targets are class indices; the loss compares the outputs with one-hot (smoothed, mixed) targets
through ``--loss ce|bce|mse`` (:mod:`cvkit.models.losses`); the best epoch has the highest val
accuracy; probabilities sum to 1 over the classes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cvkit.data.cache import SplitData, take
from cvkit.errors import ManifestError, OptionError
from cvkit.files.atomic import write_csv
from cvkit.models.losses import Criterion, distillation, num_outputs, outputs_to_probs, soft_targets
from cvkit.tasks.base import Task, TaskSpec
from cvkit.tasks.metrics import LOG_CLIP, classification_metrics, confusion_matrix, top_losses


class Classify(Task):
    name = "classify"
    metric = "acc"
    higher_is_better = True
    mixes = True
    distills = True
    one_class = True
    # Chosen on the Fashion-MNIST val split: it raised the default net's val accuracy, with the
    # default warm-up and a shorter one (bench/results/recipe_val.json).
    default_label_smoothing = 0.1

    def __init__(self, spec: TaskSpec) -> None:
        super().__init__(spec)
        if spec.loss in ("l1", "smooth_l1"):
            raise OptionError(f"--loss {spec.loss} is for numeric targets (--task regress); classes take ce, bce or mse")
        self._outputs = num_outputs(spec.loss, len(spec.classes))
        self.criterion = Criterion(spec.loss)

    @classmethod
    def trains_on(cls, dataset_task: str) -> bool:
        return dataset_task in (cls.name, "localize")  # a localize dataset's rows have one class each too

    def sampling_groups(self, targets: np.ndarray) -> np.ndarray:
        return np.asarray(targets)[:, None] == np.arange(len(self.classes))[None, :]

    def weigh_classes(self, labels: np.ndarray) -> None:
        """Inverse frequency: each class weighs as much in the loss as the others together."""
        counts = np.bincount(labels, minlength=len(self.classes)).astype(np.float64)
        weights = np.where(counts > 0, counts.sum() / (len(counts) * np.maximum(counts, 1)), 0.0)
        self.criterion.weights = torch.tensor(weights, dtype=torch.float32)

    @property
    def num_outputs(self) -> int:
        return self._outputs

    def targets(self, split: SplitData) -> np.ndarray:
        return split.labels

    def check_train(self, split: SplitData, where: str) -> None:
        present = np.unique(split.labels)
        if len(present) < 2:
            raise ManifestError(f"{where} has images of one class only ({split.classes[int(present[0])]}); a "
                                f"classifier needs at least two classes")

    def train_targets(self, labels: torch.Tensor) -> torch.Tensor:
        return soft_targets(labels, len(self.classes), self.spec.label_smoothing)

    def eval_targets(self, labels: torch.Tensor) -> torch.Tensor:
        return soft_targets(labels, len(self.classes))

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.criterion.weights is not None and self.criterion.weights.device != outputs.device:
            self.criterion.weights = self.criterion.weights.to(outputs.device)
        return self.criterion(outputs, targets)

    def distill(self, outputs: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
        return distillation(outputs, teacher, self.spec.loss, temperature)

    def hits(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return (self.probabilities(outputs.detach()).argmax(1) == labels).sum()

    def probabilities(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs_to_probs(outputs, self.spec.loss)

    # ------------------------------------------------------------------ temperature scaling (one T)

    scaling = "temperature"

    def tempered(self, views: list[torch.Tensor], temperature: torch.Tensor | None) -> torch.Tensor:
        logs = [self._log_probs(v.double()) for v in views]
        log_p = torch.logsumexp(torch.stack(logs), 0) - math.log(len(logs))  # the log of the views' mean
        return torch.softmax(log_p if temperature is None else log_p / temperature, 1)

    def _log_probs(self, outputs: torch.Tensor) -> torch.Tensor:
        """The log of ``probabilities``, without its rounding to 0 of a very sure output's other classes."""
        if self.spec.loss != "bce":
            return torch.log_softmax(outputs, 1)
        if outputs.shape[1] == 1:
            return torch.cat([F.logsigmoid(-outputs), F.logsigmoid(outputs)], 1)
        logs = F.logsigmoid(outputs)
        return logs - torch.logsumexp(logs, 1, keepdim=True)

    def nll(self, probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The log loss: evaluate's ``log_loss``, clipped the same way."""
        p_true = probs.gather(1, targets.long()[:, None]).squeeze(1)
        return -p_true.clamp(LOG_CLIP, 1.0).log().mean()

    def reliability(self, probs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The top class's probability, and whether it is the label (evaluate's ``ece`` bins these)."""
        return probs.max(1), (probs.argmax(1) == targets).astype(np.float64)

    def score(self, probs: np.ndarray, labels: np.ndarray) -> float:
        return float((probs.argmax(1) == labels).mean()) if len(labels) else 0.0

    # ------------------------------------------------------------------ evaluate and predict

    summary_keys = ("accuracy", "log_loss", "balanced_accuracy")
    headline = (("accuracy", "accuracy"), ("top5_accuracy", "top-5"), ("balanced_accuracy", "balanced acc"),
                ("macro_f1", "macro F1"), ("log_loss", "log loss"), ("ece", "ECE"))

    def metrics(self, probs: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
        """metrics.json's figures (``accuracy`` first; see docs/tasks.md)."""
        return classification_metrics(labels, probs, self.classes)

    def prediction_table(self, paths: list[str], probs: np.ndarray, labels: np.ndarray | None = None,
                         frames: np.ndarray | None = None) -> "pd.DataFrame":  # noqa: F821
        """predictions.csv: each image's class (and its label, when known) and every class's probability."""
        import pandas as pd

        table = pd.DataFrame({"path": paths})
        if labels is not None:
            table["label"] = [self.classes[i] for i in labels]
        predicted = probs.argmax(1) if len(probs) else np.zeros(0, np.int64)
        table["predicted"] = [self.classes[i] for i in predicted]
        if labels is None:
            table["probability"] = probs.max(1) if len(probs) else []
        for i, name in enumerate(self.classes):
            table[f"prob_{name}"] = probs[:, i]
        return table

    def top(self, probs: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """Each image's ``k`` most probable classes, for predict's summary."""
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return [[(self.classes[j], float(probs[i, j])) for j in row] for i, row in enumerate(order)]

    def confusion(self, probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
        return confusion_matrix(labels, probs.argmax(1), len(self.classes))

    def write_evaluation(self, stage: Path, probs: np.ndarray, split: SplitData, top_n: int) -> None:
        """predictions.csv, the confusion matrix (CSV and PNG) and the worst predictions (CSV and PNG)."""
        import pandas as pd

        from cvkit.plots import plot_confusion_matrix, plot_top_losses

        classes, labels = self.classes, split.labels
        predicted = probs.argmax(1)
        write_csv(stage / "predictions.csv", self.prediction_table(split.paths, probs, labels), "%.6g")
        matrix = self.confusion(probs, labels)
        counts = pd.DataFrame(matrix, columns=classes)
        counts.insert(0, "true", classes)  # rows: true class, columns: predicted class
        write_csv(stage / "confusion_matrix.csv", counts)
        plot_confusion_matrix(matrix, classes, stage / "confusion_matrix.png")
        worst = top_losses(labels, probs, min(top_n, len(labels)))
        p_true = probs[worst, labels[worst]]
        p_pred = probs[worst, predicted[worst]]
        write_csv(stage / "top_losses.csv", pd.DataFrame({
            "path": [split.paths[i] for i in worst], "label": [classes[labels[i]] for i in worst],
            "predicted": [classes[predicted[i]] for i in worst], "prob_predicted": p_pred, "prob_label": p_true,
            "loss": -np.log(np.clip(p_true, 1e-15, 1.0))}), "%.6g")
        if len(worst):
            plot_top_losses(take(split.images, worst), labels[worst], predicted[worst], p_true, p_pred, classes,
                            stage / "top_losses.png")
