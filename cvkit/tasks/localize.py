"""``localize``: one object per image, its class and its box (manifest ``label`` and ``x0,y0,x1,y1``).

The head is one linear layer of K + 4 outputs, two heads sharing the features: K class logits, then
the box as a sigmoid (cx, cy, w, h) normalized to 0..1 across the image, so every architecture,
``cam``, ``convolutionalize`` and ``export`` take it unchanged. The loss is
``alpha * CE + (1 - alpha) * box loss``: ``--box-loss giou`` (1 - generalized IoU of the corners) or
``smooth_l1`` (on the normalized centre and size), ``--alpha`` the class loss's weight (both kept in
model.json's task_state). Targets are rows ``[class, x0/W, y0/H, x1/W, y1/H]``; flips, shifts, zooms
and crops move the box with the image, and a crop that cuts the object off (less than
``MIN_VISIBLE`` of its box left in the image) trains that image's class only. Rotation and
perspective are refused: the box around a turned object is not its box. Probabilities are the
softmax class scores then the box's corners (x0, y0, x1, y1, normalized); the best epoch has the
highest val ``loc_accuracy``: the class right and IoU >= 0.5 (:mod:`cvkit.tasks.boxes`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cvkit.data.cache import SplitData, take
from cvkit.errors import ManifestError, OptionError
from cvkit.files.atomic import write_csv
from cvkit.files.config import BOX_LOSSES
from cvkit.data.targets import apply_frames, cache_frames
from cvkit.files.dataset import BOX_COLUMNS, LOCALIZE
from cvkit.models.losses import Criterion, soft_targets
from cvkit.tasks.base import Task, TaskSpec
from cvkit.tasks.boxes import IOU_HIT, centres, corners, giou_loss, ious, visible_share
from cvkit.transforms.points import move_boxes
from cvkit.transforms.views import View

# Defaults of --alpha and --box-loss: the best val loc_accuracy of alpha 0.1/0.25/0.5 x smooth_l1/giou on
# the Fashion-MNIST canvases over two seeds (bench/results/localize_choose.json; the test split unread).
DEFAULT_ALPHA = 0.25
DEFAULT_BOX_LOSS = "smooth_l1"
# Below this share of its box left in the image after a crop, shift or zoom, an image trains its class only.
MIN_VISIBLE = 0.25
# Normalized coordinates differ by less than 1, where smooth L1's default beta (1) would leave a weak
# squared error; 1/9 is Fast R-CNN's, linear beyond a ninth of the image.
SMOOTH_L1_BETA = 1 / 9
SHOWN = 16  # test images drawn in boxes.png


class Localize(Task):
    name = LOCALIZE
    metric = "loc_accuracy"
    higher_is_better = True
    mixes = False  # a blend of two images has two objects and no one box
    moves = True
    own_options = ("alpha", "box_loss")
    summary_keys = ("accuracy", "mean_iou", "iou50", "loc_accuracy")
    headline = (("accuracy", "accuracy"), ("mean_iou", "mean IoU"), ("iou50", "IoU >= 0.5"),
                ("loc_accuracy", "loc accuracy"))

    def __init__(self, spec: TaskSpec) -> None:
        super().__init__(spec)
        if spec.loss != "ce":
            raise OptionError(f"--loss {spec.loss}: --task localize trains its classes with ce and its box with "
                              f"--box-loss; leave --loss out")
        saved, given = spec.state or {}, spec.options or {}
        alpha = given.get("alpha", saved.get("alpha"))
        box_loss = given.get("box_loss", saved.get("box_loss"))
        self.alpha = float(DEFAULT_ALPHA if alpha is None else alpha)
        self.box_loss = str(DEFAULT_BOX_LOSS if box_loss is None else box_loss)
        if not 0 <= self.alpha <= 1:
            raise OptionError(f"--alpha {self.alpha} must be a weight from 0 to 1")
        if self.box_loss not in BOX_LOSSES:
            raise OptionError(f"--box-loss {self.box_loss} must be one of {', '.join(BOX_LOSSES)}")
        self.criterion = Criterion("ce")

    @property
    def num_outputs(self) -> int:
        return len(self.classes) + 4

    def state(self) -> dict[str, Any]:
        """The loss's options, so that a loaded run's val and test losses are the training ones."""
        return {"alpha": self.alpha, "box_loss": self.box_loss}

    # ------------------------------------------------------------------ targets

    def targets(self, split: SplitData) -> np.ndarray:
        """N x 5 float32: the class index, then the box normalized by the cache's width and height."""
        if split.values is None or split.values.shape[1:] != (4,):
            raise ManifestError("the dataset holds no boxes (x0, y0, x1, y1) for its images; prepare a CSV "
                                "'path,label,x0,y0,x1,y1' with 'cvkit prepare SRC --task localize'")
        h, w = split.images.shape[1:3]
        scale = np.array([w, h, w, h], dtype=np.float32)
        return np.concatenate([split.labels[:, None].astype(np.float32), split.values / scale], 1)

    def check_train(self, split: SplitData, where: str) -> None:
        boxes = self.targets(split)[:, 1:]
        if not ((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).any():
            raise ManifestError(f"{where} has no box with an area: every box is empty or outside its image")

    def check_policy(self, policy: Any) -> None:
        super().check_policy(policy)
        for option in ("rotate", "perspective"):
            if getattr(policy, option):
                raise OptionError(f"--{option} turns the object, and the box around a turned object is not its box; "
                                  f"--task localize takes flips, shifts, zooms and crops (cvkit augment DATASET "
                                  f"--{option} 0)")

    def move(self, labels: torch.Tensor, matrices: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """The boxes after augmentation (N x 6: class, box, then the box's weight: 0 when less than
        ``MIN_VISIBLE`` of it is left in the image)."""
        h, w = size
        scale = torch.tensor([w, h, w, h], dtype=torch.float64, device=labels.device)
        before = labels[:, 1:5].double() * scale
        after = move_boxes(before, matrices.to(labels.device), size)
        magnified = 1 / torch.linalg.det(matrices[:, :2, :2]).abs().to(labels.device)  # output area per source area
        weight = (visible_share(before, after, magnified) >= MIN_VISIBLE).double()
        return torch.cat([labels[:, :1].double(), after / scale, weight[:, None]], 1).to(labels.dtype)

    def sampling_groups(self, targets: np.ndarray) -> np.ndarray:
        """The object's class (column 0 of the targets), as classify."""
        return targets[:, 0].astype(np.int64)[:, None] == np.arange(len(self.classes))[None, :]

    def weigh_classes(self, targets: np.ndarray) -> None:
        """Inverse frequency, as classify: each class weighs as much in the class loss as the others together."""
        counts = np.bincount(targets[:, 0].astype(np.int64), minlength=len(self.classes)).astype(np.float64)
        weights = np.where(counts > 0, counts.sum() / (len(counts) * np.maximum(counts, 1)), 0.0)
        self.criterion.weights = torch.tensor(weights, dtype=torch.float32)

    def _targets(self, labels: torch.Tensor, smoothing: float) -> torch.Tensor:
        weight = labels[:, 5:6] if labels.shape[1] > 5 else torch.ones_like(labels[:, :1])
        classes = soft_targets(labels[:, 0].long(), len(self.classes), smoothing)
        return torch.cat([classes, labels[:, 1:5].float(), weight.float()], 1)

    def train_targets(self, labels: torch.Tensor) -> torch.Tensor:
        """N x (K + 5): soft class targets (smoothed), the normalized box, the box's weight."""
        return self._targets(labels, self.spec.label_smoothing)

    def eval_targets(self, labels: torch.Tensor) -> torch.Tensor:
        return self._targets(labels, 0.0)

    # ------------------------------------------------------------------ outputs and loss

    def _split(self, outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits, and the box as normalized (cx, cy, w, h)."""
        k = len(self.classes)
        return outputs[:, :k].float(), torch.sigmoid(outputs[:, k:k + 4].float())

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        k = len(self.classes)
        logits, box = self._split(outputs)
        true, weight = targets[:, k:k + 4], targets[:, k + 4]
        if self.criterion.weights is not None and self.criterion.weights.device != outputs.device:
            self.criterion.weights = self.criterion.weights.to(outputs.device)
        classes = self.criterion(logits, targets[:, :k])
        if self.box_loss == "giou":
            per = giou_loss(corners(box), true)
        else:
            per = F.smooth_l1_loss(box, centres(true), beta=SMOOTH_L1_BETA, reduction="none").sum(1)
        return self.alpha * classes + (1 - self.alpha) * (per * weight).mean()

    def hits(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Images whose class is right (train_acc stays the classification accuracy)."""
        return (outputs.detach()[:, :len(self.classes)].argmax(1) == labels[:, 0].long()).sum()

    def probabilities(self, outputs: torch.Tensor) -> torch.Tensor:
        logits, box = self._split(outputs)
        return torch.cat([torch.softmax(logits, 1), corners(box).clamp(0, 1)], 1)

    @property
    def class_outputs(self) -> int:
        return len(self.classes)

    def draw(self, images: np.ndarray, probs: np.ndarray, names: list[str], folder: Path) -> list[str]:
        """One PNG per image: the network's input with the predicted box, class and score."""
        from cvkit.plots.boxes import draw_box_overlay

        k, (h, w) = len(self.classes), images.shape[1:3]
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for image, row, name in zip(images, probs, names):
            c = int(row[:k].argmax())
            box = row[k:k + 4] * np.array([w, h, w, h])
            draw_box_overlay(image, box, f"{self.classes[c]} {row[c]:.2f}", folder / f"{name}.png")
            written.append(f"{name}.png")
        return written

    def flip_back(self, probs: torch.Tensor) -> torch.Tensor:
        k = len(self.classes)
        x0, y0, x1, y1 = probs[:, k:k + 4].unbind(1)
        return torch.cat([probs[:, :k], torch.stack([1 - x1, y0, 1 - x0, y1], 1)], 1)

    def view_back(self, probs: torch.Tensor, view: View) -> torch.Tensor:
        """The box of a shifted or zoomed view moved back (normalized corners: a shift by dx pixels moves
        them by dx / W, a zoom scales them about the centre); class scores stay."""
        if view.kind == "flip":
            return self.flip_back(probs)
        k, (h, w) = len(self.classes), view.size
        box = probs[:, k:k + 4]
        if view.kind == "shift":
            box = box - box.new_tensor([view.dx / w, view.dy / h, view.dx / w, view.dy / h])
        else:
            box = (box - 0.5) / view.zoom + 0.5
        return torch.cat([probs[:, :k], box, probs[:, k + 4:]], 1)

    # ------------------------------------------------------------------ figures

    def _figures(self, probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each image's true class, whether its class is right, and its IoU."""
        k = len(self.classes)
        true = labels[:, 0].astype(np.int64)
        return true, probs[:, :k].argmax(1) == true, ious(probs[:, k:k + 4], labels[:, 1:5])

    def score(self, probs: np.ndarray, labels: np.ndarray) -> float:
        if not len(labels):
            return 0.0
        _, right, overlap = self._figures(probs, labels)
        return float((right & (overlap >= IOU_HIT)).mean())

    def metrics(self, probs: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
        """metrics.json: ``count``, ``accuracy`` (the class), ``mean_iou``, ``iou50`` (IoU >= 0.5, whatever
        the class), ``loc_accuracy`` (both), and the same per true class under ``per_class``."""
        if not len(labels):
            raise ValueError("no images to evaluate: labels and probs are empty")
        true, right, overlap = self._figures(probs, labels)

        def figures(mask: np.ndarray) -> dict[str, Any]:
            n = int(mask.sum())
            if not n:
                return {"count": 0, "accuracy": None, "mean_iou": None, "iou50": None, "loc_accuracy": None}
            hit = overlap[mask] >= IOU_HIT
            return {"count": n, "accuracy": float(right[mask].mean()), "mean_iou": float(overlap[mask].mean()),
                    "iou50": float(hit.mean()), "loc_accuracy": float((hit & right[mask]).mean())}

        return {**figures(np.ones(len(true), bool)),
                "per_class": [{"class": name, **figures(true == c)} for c, name in enumerate(self.classes)]}

    def prediction_table(self, paths: list[str], probs: np.ndarray, labels: np.ndarray | None = None,
                         frames: np.ndarray | None = None) -> "pd.DataFrame":  # noqa: F821
        """predictions.csv: each image's class (and its label), the class's probability, the box (in
        pixels through ``frames``), its IoU with the true box, and every class's probability."""
        import pandas as pd

        k = len(self.classes)
        table = pd.DataFrame({"path": paths})
        if labels is not None:
            table["label"] = [self.classes[int(i)] for i in labels[:, 0]]
        predicted = probs[:, :k].argmax(1) if len(probs) else np.zeros(0, np.int64)
        table["predicted"] = [self.classes[i] for i in predicted]
        table["score"] = probs[np.arange(len(probs)), predicted]
        box = probs[:, k:k + 4] if frames is None else apply_frames(probs[:, k:k + 4], frames)
        for j, column in enumerate(BOX_COLUMNS):
            table[column] = box[:, j]
        if labels is not None:
            table["iou"] = ious(probs[:, k:k + 4], labels[:, 1:5])
        for i, name in enumerate(self.classes):
            table[f"prob_{name}"] = probs[:, i]
        return table

    def top(self, probs: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """Each image's ``k`` most probable classes."""
        scores = probs[:, :len(self.classes)]
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return [[(self.classes[j], float(scores[i, j])) for j in row] for i, row in enumerate(order)]

    def write_evaluation(self, stage: Path, probs: np.ndarray, split: SplitData, top_n: int) -> None:
        """predictions.csv (boxes in the cache's pixels), per_class.csv, and boxes.png: the first test
        images with their true box (green) and the predicted one (red when IoU < 0.5)."""
        import pandas as pd

        from cvkit.plots.boxes import plot_boxes

        labels, k = self.targets(split), len(self.classes)
        h, w = split.images.shape[1:3]
        table = self.prediction_table(split.paths, probs, labels, cache_frames(len(labels), (h, w)))
        write_csv(stage / "predictions.csv", table, "%.6g")
        write_csv(stage / "per_class.csv", pd.DataFrame(self.metrics(probs, labels)["per_class"]), "%.6g")
        shown = np.arange(min(SHOWN, len(labels)))
        scale = np.array([w, h, w, h])
        plot_boxes(take(split.images, shown), labels[shown, 1:5] * scale, probs[shown, k:k + 4] * scale,
                   [f"{table['label'][i]} / {table['predicted'][i]}\nIoU {table['iou'][i]:.2f}" for i in shown],
                   table["iou"].to_numpy()[shown] >= IOU_HIT, stage / "boxes.png")
