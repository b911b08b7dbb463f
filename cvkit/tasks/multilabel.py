"""``multilabel``: any number of labels per image (the manifest's ``labels``), one sigmoid output per class.

Targets are multi-hot rows; the loss is binary cross-entropy on the logits (``--pos-weight auto``
weighs rare labels up; mixup and cutmix blend the rows); the best epoch has the highest val mAP. Each
class gets its own decision threshold, the one that maximizes its F1 on val at the best epoch, kept in
model.json (``task_state.thresholds``); ``--threshold`` sets one for all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cvkit.data.cache import SplitData
from cvkit.errors import ManifestError, OptionError
from cvkit.files.atomic import write_csv
from cvkit.files.dataset import LABELS_COLUMN, split_labels
from cvkit.models.losses import distillation
from cvkit.tasks.base import Task, TaskSpec
from cvkit.tasks.multilabel_metrics import best_f1_threshold, multilabel_metrics, precision_recall_curve

MAX_POS_WEIGHT = 100.0  # --pos-weight auto: a label seen once in 10,000 images would otherwise swamp the loss
PREDICTED_JOIN = " "  # predicted and true labels in predictions.csv, as the CSV sources give them


class Multilabel(Task):
    name = "multilabel"
    metric = "map"
    higher_is_better = True
    mixes = True
    distills = True
    summary_keys = ("map", "micro_f1", "macro_f1", "exact_match")
    headline = (("map", "mAP"), ("micro_f1", "micro F1"), ("macro_f1", "macro F1"), ("exact_match", "exact match"),
                ("hamming_loss", "Hamming loss"))

    def __init__(self, spec: TaskSpec) -> None:
        super().__init__(spec)
        if spec.loss not in ("ce", "bce"):  # ce is train's default: for this task it means the sigmoid loss
            raise OptionError(f"--loss {spec.loss}: multi-label outputs are independent sigmoids trained with bce")
        self.pos_weight: torch.Tensor | None = None
        saved = (spec.state or {}).get("thresholds")
        self.thresholds = np.asarray(saved if saved is not None else [0.5] * len(spec.classes), dtype=np.float64)
        if len(self.thresholds) != len(spec.classes):
            raise ManifestError(f"task_state.thresholds has {len(self.thresholds)} values for {len(spec.classes)} "
                                f"classes; retrain the run")

    @classmethod
    def label_sets(cls, frame: "pd.DataFrame") -> list[list[str]]:  # noqa: F821
        return [split_labels(cell) for cell in frame[LABELS_COLUMN].fillna("").astype(str)]

    @property
    def num_outputs(self) -> int:
        return len(self.classes)

    def targets(self, split: SplitData) -> np.ndarray:
        if split.multi_hot is None:
            raise ManifestError("the dataset's manifest has no 'labels' column: it holds one class per image; "
                                "prepare a multi-label source with 'cvkit prepare SRC --task multilabel'")
        return split.multi_hot

    def check_train(self, split: SplitData, where: str) -> None:
        if not self.targets(split).any():
            raise ManifestError(f"{where} has no label at all: every image is a negative for every class")

    def sampling_groups(self, targets: np.ndarray) -> np.ndarray:
        """Each label's positives, and one more group for the images with no label at all."""
        positive = np.asarray(targets) > 0.5
        return np.concatenate([positive, ~positive.any(1, keepdims=True)], 1)

    def weigh_positives(self, targets: np.ndarray) -> None:
        positives = targets.sum(0)
        ratio = np.where(positives > 0, (len(targets) - positives) / np.maximum(positives, 1), 1.0)
        self.pos_weight = torch.tensor(np.clip(ratio, 1.0, MAX_POS_WEIGHT), dtype=torch.float32)

    def train_targets(self, labels: torch.Tensor) -> torch.Tensor:
        smoothing = self.spec.label_smoothing
        targets = labels.float()
        return targets * (1 - smoothing) + smoothing / 2 if smoothing else targets

    def eval_targets(self, labels: torch.Tensor) -> torch.Tensor:
        return labels.float()

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        weight = None if self.pos_weight is None else self.pos_weight.to(outputs.device)
        return F.binary_cross_entropy_with_logits(outputs.float(), targets, pos_weight=weight)

    def distill(self, outputs: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
        return distillation(outputs, teacher, "bce", temperature, per_output=True)

    def hits(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Each image's share of labels decided right at 0.5 (train_acc: the label-wise accuracy)."""
        return ((outputs.detach() > 0) == (labels > 0.5)).float().mean(1).sum()

    def probabilities(self, outputs: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(outputs.float())

    # ------------------------------------------------------------------ temperature scaling (one T per class)

    scaling = "per-class temperature"

    def tempered(self, views: list[torch.Tensor], temperature: torch.Tensor | None) -> torch.Tensor:
        views = [v.double() for v in views]
        if len(views) == 1:
            log_odds = views[0]
        else:  # the log-odds of the views' mean sigmoid: log(mean p) - log(mean (1 - p)), kept exact far from 0.5
            log_odds = (torch.logsumexp(torch.stack([F.logsigmoid(v) for v in views]), 0)
                        - torch.logsumexp(torch.stack([F.logsigmoid(-v) for v in views]), 0))
        return torch.sigmoid(log_odds if temperature is None else log_odds / temperature)

    def nll(self, probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The binary cross-entropy over every (image, class), on the probabilities clipped away from 0 and 1."""
        p = probs.clamp(1e-15, 1 - 1e-15)
        t = targets.to(p.dtype)
        return -(t * p.log() + (1 - t) * (1 - p).log()).mean()

    def reliability(self, probs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every (image, class) probability, and whether the label is there: a probability of 0.3 should be
        right three times in ten."""
        return probs.ravel(), (np.asarray(targets) > 0.5).ravel().astype(np.float64)

    def set_temperature(self, temperature: np.ndarray | list[float] | None) -> None:
        """Also move each class's threshold so that the same labels stay above it: sigmoid(logit(t) / T)."""
        old = np.ones(len(self.classes)) if self.temperature is None else self.temperature
        super().set_temperature(temperature)
        new = np.ones(len(self.classes)) if self.temperature is None else self.temperature
        t = np.clip(self.thresholds, 1e-12, 1 - 1e-12)
        logits = np.log(t / (1 - t)) * old  # the raw logit each threshold stands for
        self.thresholds = 1 / (1 + np.exp(-logits / new))

    def score(self, probs: np.ndarray, labels: np.ndarray) -> float:
        return float(multilabel_metrics(labels, probs, self.thresholds, self.classes)["map"]) if len(labels) else 0.0

    def calibrate(self, probs: np.ndarray, targets: np.ndarray) -> dict[str, Any]:
        self.thresholds = np.array([best_f1_threshold(targets[:, k] > 0.5, probs[:, k])
                                    for k in range(len(self.classes))])
        return {"thresholds": [round(float(t), 6) for t in self.thresholds]}

    def set_threshold(self, threshold: float) -> None:
        if not 0 < threshold < 1:
            raise OptionError(f"--threshold {threshold} must be a probability between 0 and 1")
        self.thresholds = np.full(len(self.classes), float(threshold))

    # ------------------------------------------------------------------ evaluate and predict

    def metrics(self, probs: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
        return multilabel_metrics(labels, probs, self.thresholds, self.classes)

    def _names(self, rows: np.ndarray) -> list[str]:
        return [PREDICTED_JOIN.join(self.classes[k] for k in np.flatnonzero(row)) for row in rows]

    def prediction_table(self, paths: list[str], probs: np.ndarray, labels: np.ndarray | None = None,
                         frames: np.ndarray | None = None) -> "pd.DataFrame":  # noqa: F821
        import pandas as pd

        table = pd.DataFrame({"path": paths})
        if labels is not None:
            table["labels"] = self._names(labels > 0.5)
        table["predicted"] = self._names(probs >= self.thresholds[None, :]) if len(probs) else []
        for i, name in enumerate(self.classes):
            table[f"prob_{name}"] = probs[:, i]
        return table

    def top(self, probs: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """The labels above their thresholds, most probable first (at least the most probable one)."""
        result = []
        for row in probs:
            order = np.argsort(-row, kind="stable")
            chosen = [j for j in order if row[j] >= self.thresholds[j]][:k] or list(order[:1])
            result.append([(self.classes[j], float(row[j])) for j in chosen])
        return result

    def write_evaluation(self, stage: Path, probs: np.ndarray, split: SplitData, top_n: int) -> None:
        """predictions.csv, the per-class table (per_class.csv) and the precision-recall curves (PNG)."""
        import pandas as pd

        from cvkit.plots import plot_precision_recall

        labels = self.targets(split)
        write_csv(stage / "predictions.csv", self.prediction_table(split.paths, probs, labels), "%.6g")
        table = pd.DataFrame(self.metrics(probs, labels)["per_class"])
        write_csv(stage / "per_class.csv", table, "%.6g")
        curves = {name: precision_recall_curve(labels[:, k] > 0.5, probs[:, k])[:2]
                  for k, name in enumerate(self.classes) if (labels[:, k] > 0.5).any()}
        plot_precision_recall(curves, stage / "precision_recall.png")
