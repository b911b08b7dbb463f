"""``segment``: a class for every pixel (semantic segmentation), from masks of class indices.

Targets are uint8 planes per image, N x P x H x W: the mask (255: ignored), and with
``--border-weight w0,sigma`` U-Net's border term (:mod:`cvkit.tasks.borders`, computed once per mask and
stored in the cache beside the masks).
Geometric augmentation moves them with the image by nearest neighbour (``augment_planes``); cutmix
pastes the mask with the image; mixup is refused. The model maps N x C x H x W to N x K x H x W
logits (``--arch unet``, ``--arch fcn``). The loss is the per-pixel cross-entropy, weighted per pixel
by ``w_c`` (``--class-weights auto``: inverse pixel frequency) plus the border term, averaged over the
weights of the pixels that count, plus ``--dice`` times a soft Dice loss. The best epoch has the highest
val mIoU (:mod:`cvkit.tasks.segment_metrics`). Probabilities are N x K x H x W softmax maps, kept
as float16.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cvkit.data.cache import SplitData, mask_planes, take
from cvkit.errors import ManifestError, OptionError
from cvkit.files.atomic import write_csv
from cvkit.files.config import parse_border_weight
from cvkit.files.dataset import IGNORE_INDEX, SEGMENT, label_sets
from cvkit.tasks.base import Task, TaskSpec
from cvkit.tasks.segment_metrics import (
    confusion,
    image_scores,
    label_maps,
    mean_iou,
    per_image_confusions,
    segmentation_metrics,
)

DICE_EPS = 1.0  # the soft Dice's smoothing, in pixels


class Segment(Task):
    name = SEGMENT
    metric = "miou"
    higher_is_better = True
    mixes = False  # a blend of two masks is no mask
    pastes = True  # cutmix pastes a box of the image and of its mask
    dense = True
    own_options = ("border_weight", "dice")
    summary_keys = ("miou", "pixel_accuracy", "fw_iou")
    headline = (("miou", "mIoU"), ("pixel_accuracy", "pixel acc"), ("mean_accuracy", "mean acc"),
                ("fw_iou", "fw IoU"), ("mean_dice", "Dice"))

    def __init__(self, spec: TaskSpec) -> None:
        super().__init__(spec)
        if spec.loss != "ce":
            raise OptionError(f"--loss {spec.loss}: --task segment trains with per-pixel cross-entropy (ce), plus "
                              f"--dice and --border-weight; leave --loss out")
        saved, given = spec.state or {}, spec.options or {}
        border = given.get("border_weight", saved.get("border_weight"))
        self.border = parse_border_weight(border) if isinstance(border, str) else (tuple(border) if border else None)
        self.dice = float(given.get("dice") or saved.get("dice") or 0.0)
        self.class_weights: torch.Tensor | None = None
        if saved.get("class_weights") is not None:
            self.class_weights = torch.tensor(saved["class_weights"], dtype=torch.float32)
        self._planes: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def num_outputs(self) -> int:
        return len(self.classes)

    @property
    def fill(self) -> list[float]:
        """Each plane's value where augmentation leaves the image: the mask ignores, the border weighs 0."""
        return [IGNORE_INDEX, 0] if self.border else [IGNORE_INDEX]

    def state(self) -> dict[str, Any]:
        """The loss's options, so that a loaded run's val and test losses are the training ones."""
        return {"border_weight": list(self.border) if self.border else None, "dice": self.dice,
                "class_weights": None if self.class_weights is None else self.class_weights.tolist()}

    # ------------------------------------------------------------------ targets

    def targets(self, split: SplitData) -> np.ndarray:
        """N x P x H x W uint8: the mask, then (with --border-weight) the border term (0..255 for 0..1)."""
        masks = getattr(split, "masks", None)
        if masks is None:
            raise ManifestError("the dataset holds no masks for its images; prepare it with 'cvkit prepare IMAGES "
                                "--masks MASKS' (or a CSV 'path,mask' with --task segment)")
        key = id(masks)
        if key not in self._planes or self._planes[key][0] is not masks:
            # once per split (the masks are kept with their planes, so another array can never take
            # their id); the border term, a distance transform per object, is stored in the cache
            planes = [np.asarray(masks)]
            if self.border:
                from cvkit.tasks.borders import border_planes

                sigma = self.border[1]
                planes.append(mask_planes(masks, f"border{sigma:g}", lambda m: border_planes(m, sigma)))
            self._planes[key] = (masks, np.stack(planes, 1))
        return self._planes[key][1]

    def check_train(self, split: SplitData, where: str) -> None:
        masks = self.targets(split)[:, 0]
        present = np.unique(masks)
        present = present[present != IGNORE_INDEX]
        if len(present) < 2:
            raise ManifestError(f"{where}: every mask pixel is one class or ignored; segmentation needs at least two "
                                f"classes in the training masks")
        if present.max() >= len(self.classes):
            raise ManifestError(f"{where}: a mask holds class {int(present.max())}, beyond the {len(self.classes)} "
                                f"classes of classes.json; rerun 'cvkit prepare'")

    def weigh_classes(self, targets: np.ndarray) -> None:
        """Inverse pixel frequency: each class's pixels weigh as much in the loss as the others' together."""
        counts = np.zeros(len(self.classes), dtype=np.float64)
        for i in range(0, len(targets), 256):  # bounded memory on a large split
            values = targets[i:i + 256, 0].reshape(-1)
            counts += np.bincount(values[values != IGNORE_INDEX], minlength=len(self.classes))[:len(self.classes)]
        weights = np.where(counts > 0, counts.sum() / (len(counts) * np.maximum(counts, 1)), 0.0)
        self.class_weights = torch.tensor(weights, dtype=torch.float32)

    def check_policy(self, policy: Any) -> None:
        super().check_policy(policy)  # mixup refused; elastic, rotation, perspective are fine: masks follow

    def train_targets(self, labels: torch.Tensor) -> torch.Tensor:
        return labels

    def eval_targets(self, labels: torch.Tensor) -> torch.Tensor:
        return labels

    # ------------------------------------------------------------------ outputs and loss

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        outputs = outputs.float()
        if outputs.shape[-2:] != targets.shape[-2:]:
            raise ValueError(f"the model's outputs are {tuple(outputs.shape[-2:])} pixels and the masks "
                             f"{tuple(targets.shape[-2:])}; a segment model's output must be its input's size")
        mask = targets[:, 0].long()
        valid = mask != IGNORE_INDEX
        per = F.cross_entropy(outputs, mask, ignore_index=IGNORE_INDEX, reduction="none",
                              label_smoothing=self.spec.label_smoothing)
        weight = valid.float()
        if self.class_weights is not None:
            weights = self.class_weights.to(outputs.device)
            weight = weight * weights[mask.clamp(max=len(self.classes) - 1)]
        if self.border:
            weight = weight + self.border[0] * targets[:, 1].float() / 255 * valid
        loss = (per * weight).sum() / weight.sum().clamp_min(1e-6)
        if self.dice:
            loss = loss + self.dice * self._dice_loss(outputs, mask, valid)
        return loss

    def _dice_loss(self, outputs: torch.Tensor, mask: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """1 - the soft Dice of each class present in the batch's labels or predictions, averaged."""
        k = outputs.shape[1]
        p = torch.softmax(outputs, 1) * valid[:, None]
        t = F.one_hot(mask.clamp(max=k - 1), k).permute(0, 3, 1, 2).float() * valid[:, None]
        inter, sizes = (p * t).sum((0, 2, 3)), p.sum((0, 2, 3)) + t.sum((0, 2, 3))
        dice = (2 * inter + DICE_EPS) / (sizes + DICE_EPS)
        present = t.sum((0, 2, 3)) > 0
        return 1 - (dice[present].mean() if bool(present.any()) else dice.mean())

    def hits(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Each image's share of its counted pixels predicted right, summed (train_acc: pixel accuracy)."""
        mask = labels[:, 0].long()
        valid = mask != IGNORE_INDEX
        right = ((outputs.detach().argmax(1) == mask) & valid).sum((1, 2)).double()
        return (right / valid.sum((1, 2)).clamp_min(1)).sum()

    def probabilities(self, outputs: torch.Tensor) -> torch.Tensor:
        return torch.softmax(outputs.float(), 1)

    def keep(self, probs: torch.Tensor) -> torch.Tensor:
        return probs.half()

    def flip_back(self, probs: torch.Tensor) -> torch.Tensor:
        return probs.flip(3)

    def undoes(self, kind: str) -> bool:
        """A mirrored map is mirrored back; a shifted or zoomed one would leave pixels without a view."""
        return kind == "flip"

    def check_model(self, arch: str, model: torch.nn.Module) -> None:
        if not getattr(model, "dense", False):
            raise OptionError(f"--arch {arch} predicts one answer per image, and --task segment a class per pixel; "
                              f"use --arch unet, or --arch fcn --encoder {arch} to make it the encoder of a "
                              f"fully convolutional net")

    @classmethod
    def label_sets(cls, frame: Any) -> list[list[str]]:
        """The classes each image's mask holds (manifest ``labels``): splits and folds are stratified on them."""
        return label_sets(frame)

    # ------------------------------------------------------------------ figures

    def _confusion(self, probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
        return confusion(labels[:, 0], label_maps(probs), len(self.classes))

    def confusion(self, probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Of pixels (the ignored ones left out)."""
        return self._confusion(probs, labels)

    def score(self, probs: np.ndarray, labels: np.ndarray) -> float:
        return mean_iou(self._confusion(probs, labels)) if len(labels) else 0.0

    def score_parts(self, probs: np.ndarray, labels: np.ndarray) -> list[float]:
        """The pixel confusion matrix: shares of a distributed val add up to the whole's mIoU."""
        return [float(v) for v in self._confusion(probs, labels).reshape(-1)]

    def score_total(self, parts: list[float]) -> float:
        k = len(self.classes)
        return mean_iou(np.asarray(parts, dtype=np.float64).reshape(k, k))

    def metrics(self, probs: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
        """metrics.json (:func:`~cvkit.tasks.segment_metrics.segmentation_metrics`)."""
        if not len(labels):
            raise ValueError("no images to evaluate: labels and probs are empty")
        return segmentation_metrics(self._confusion(probs, labels), self.classes, len(labels))

    def mismatch(self, split: Any) -> str | None:
        if split.classes != self.classes:
            return "its classes.json differs from the run's classes"
        if getattr(split, "masks", None) is None:
            return "it holds no masks"
        return None

    def prediction_table(self, paths: list[str], probs: np.ndarray, labels: np.ndarray | None = None,
                         frames: np.ndarray | None = None) -> "pd.DataFrame":  # noqa: F821
        """predictions.csv: per image, its pixel accuracy and mIoU (with labels), and its pixels predicted
        as each class."""
        import pandas as pd

        k = len(self.classes)
        maps = label_maps(probs)
        table = pd.DataFrame({"path": paths})
        if labels is not None:
            table["pixel_accuracy"], table["miou"] = image_scores(per_image_confusions(labels[:, 0], maps, k))
        counts = np.stack([np.bincount(m.reshape(-1), minlength=k)[:k] for m in maps]) if len(maps) else np.zeros((0, k))
        for c, name in enumerate(self.classes):
            table[f"pixels_{name}"] = counts[:, c].astype(np.int64)
        return table

    def write_prediction(self, stage: Path, name: str, image: np.ndarray, probs: np.ndarray,
                         keep_probs: bool = False) -> dict[str, Any]:
        """predict's files for one image (H x W x C uint8) and its K x H x W probabilities: ``masks/NAME.png``
        (the label map as a palette PNG of class indices), ``overlays/NAME.png`` and, with ``keep_probs``,
        ``probs/NAME.npy`` (float16); returns its predictions.csv row (size and pixels per class)."""
        from cvkit.files.atomic import write_npy
        from cvkit.files.owned import MASKS, OVERLAYS, PROBS
        from cvkit.plots.segment import write_label_map, write_overlay

        labels = probs.argmax(0).astype(np.uint8)
        for folder in (MASKS, OVERLAYS, *((PROBS,) if keep_probs else ())):
            (stage / folder).mkdir(exist_ok=True)
        write_label_map(labels, stage / MASKS / f"{name}.png")
        write_overlay(image, labels, stage / OVERLAYS / f"{name}.png")
        if keep_probs:
            write_npy(stage / PROBS / f"{name}.npy", probs.astype(np.float16))
        counts = np.bincount(labels.reshape(-1), minlength=len(self.classes))
        return {"width": int(labels.shape[1]), "height": int(labels.shape[0]), "mask": f"{MASKS}/{name}.png",
                **{f"pixels_{c}": int(counts[i]) for i, c in enumerate(self.classes)}}

    def top(self, probs: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """Each image's ``k`` classes of the largest predicted area, with their share of the pixels
        (``probs``: N x K x H x W probabilities, or already N x K shares, as predict has them)."""
        if probs.ndim == 4:
            size = int(np.prod(probs.shape[2:]))
            probs = np.stack([np.bincount(m.reshape(-1), minlength=len(self.classes))[:len(self.classes)] / size
                              for m in label_maps(probs)]) if len(probs) else np.zeros((0, len(self.classes)))
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return [[(self.classes[j], float(probs[i, j])) for j in row] for i, row in enumerate(order)]

    def write_evaluation(self, stage: Path, probs: np.ndarray, split: SplitData, top_n: int) -> None:
        """predictions.csv (per image), per_class.csv, the pixel confusion matrix (CSV and PNG), and
        worst.png: the ``top_n`` images of the lowest mIoU beside their true and predicted masks."""
        import pandas as pd

        from cvkit.plots import plot_confusion_matrix
        from cvkit.plots.segment import plot_worst

        labels, classes = self.targets(split), self.classes
        table = self.prediction_table(split.paths, probs, labels)
        write_csv(stage / "predictions.csv", table, "%.6g")
        matrix = self._confusion(probs, labels)
        write_csv(stage / "per_class.csv", pd.DataFrame(segmentation_metrics(matrix, classes, len(labels))["per_class"]),
                  "%.6g")
        counts = pd.DataFrame(matrix, columns=classes)
        counts.insert(0, "true", classes)  # rows: true class, columns: predicted class (pixels)
        write_csv(stage / "confusion_matrix.csv", counts)
        plot_confusion_matrix(matrix, classes, stage / "confusion_matrix.png", title="pixels")
        worst = np.argsort(np.nan_to_num(table["miou"].to_numpy(), nan=2.0), kind="stable")[:min(top_n, len(labels))]
        if len(worst):
            plot_worst(take(split.images, worst), labels[worst, 0], label_maps(probs[worst]), classes,
                       [f"{Path(split.paths[i]).name}  mIoU {table['miou'][i]:.2f}" for i in worst],
                       stage / "worst.png")
