"""``regress``: numeric targets per image (the manifest's ``--targets`` columns), one output per target.

The network learns standardized targets (the train split's mean and std, kept in model.json's
``task_state`` with the target names) through ``--loss mse|l1|smooth_l1``; ``probabilities`` gives
the values back in target units; the best epoch has the lowest val mean absolute error (``val_mae``).
With ``--keypoints`` the targets are x, y pairs in the network input's pixels: geometric augmentation
moves them (``--flip-pairs`` swap on mirrored images), predict --tta mirrors them back, and evaluate
adds PCK (:data:`~cvkit.tasks.regress_metrics.PCK_FRACTION` of the input's longer side).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cvkit.data.cache import SplitData
from cvkit.data.targets import apply_frames
from cvkit.errors import ManifestError, OptionError
from cvkit.files.atomic import write_csv
from cvkit.tasks.base import Task, TaskSpec
from cvkit.tasks.regress_metrics import PCK_FRACTION, regression_metrics
from cvkit.transforms.views import View

LOSSES = {"mse": F.mse_loss, "l1": F.l1_loss, "smooth_l1": F.smooth_l1_loss}  # on standardized targets
# What train's default ``--loss ce`` means here: on the keypoint canvases (tests/tasks/canvases.py)
# smooth_l1 gave a lower val MAE than mse for most seeds (it lets outliers pull less).
DEFAULT_LOSS = "smooth_l1"
STD_FLOOR = 1e-6  # relative: a constant target standardizes to 0 instead of dividing by 0
HIT_STDS = 0.5  # train_acc without keypoints: a target within this many train stds of the truth counts


class Regress(Task):
    name = "regress"
    metric = "mae"
    higher_is_better = False
    mixes = False
    outputs_are = "targets"
    summary_keys = ("mae", "rmse", "r2")
    headline = (("mae", "MAE"), ("rmse", "RMSE"), ("r2", "R²"), ("pck", "PCK@0.1"))

    def __init__(self, spec: TaskSpec) -> None:
        super().__init__(spec)
        if spec.loss == "bce":
            raise OptionError("--loss bce is for classes; --task regress takes mse, l1 or smooth_l1")
        if spec.loss not in ("ce", *LOSSES):
            raise OptionError(f"--loss {spec.loss} must be one of {', '.join(LOSSES)} for --task regress")
        if spec.label_smoothing:
            raise OptionError("--label-smoothing softens class targets; --task regress has none, so leave it at 0")
        self.loss_fn = LOSSES[DEFAULT_LOSS if spec.loss == "ce" else spec.loss]
        state = spec.state or {}
        # the names: what model.json's state keeps, else the dataset's (training), else the run's classes
        source = state if state.get("targets") else spec.options if spec.options is not None else {
            "targets": spec.classes}
        self.names: list[str] = [str(t) for t in source.get("targets") or []]
        if not self.names:
            where = "model.json's task_state" if spec.state is not None else "the dataset"
            raise ManifestError(f"{where} names no regress targets; prepare the source with 'cvkit prepare SRC "
                                f"--task regress --targets COL,...' (and retrain)")
        self.keypoints = bool(source.get("keypoints", False))
        self.moves = self.keypoints  # keypoints follow flips, shifts, zooms, rotations and perspective
        self.flip_pairs: list[list[str]] = [list(p) for p in source.get("flip_pairs") or []]
        t = len(self.names)
        self.mean = np.asarray(state.get("mean", np.zeros(t)), dtype=np.float64)
        self.std = np.asarray(state.get("std", np.ones(t)), dtype=np.float64)
        if self.mean.shape != (t,) or self.std.shape != (t,) or not (self.std > 0).all():
            raise ManifestError(f"task_state.mean and std need {t} values (std above 0); retrain the run")
        size = state.get("input_size")
        self.input_size: tuple[int, int] | None = (int(size[0]), int(size[1])) if size else None
        xs = self.names[0::2]
        self._swap = list(range(t // 2))  # each keypoint's partner on a mirrored image
        for left, right in self.flip_pairs:
            if left not in xs or right not in xs:
                raise ManifestError(f"flip pair {left}:{right} names no x column of the targets ({', '.join(xs)}); "
                                    f"prepare the source again")
            i, j = xs.index(left), xs.index(right)
            self._swap[i], self._swap[j] = j, i
        self._stats: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def classes(self) -> list[str]:
        """The target names: model.json's ``classes`` says what each output is."""
        return self.names

    @property
    def num_outputs(self) -> int:
        return len(self.names)

    def mismatch(self, split: SplitData) -> str | None:
        """The run's classes are its target names, not the dataset's labels: the split needs as many targets."""
        if split.values is None:
            return "it holds no numeric targets (prepare it with --task regress --targets ...)"
        if split.values.shape[1] != len(self.names):
            return f"it has {split.values.shape[1]} targets per image, the run predicts {len(self.names)} " \
                   f"({', '.join(self.names)})"
        return None

    def draw(self, images: np.ndarray, probs: np.ndarray, names: list[str], folder: Path) -> list[str]:
        """Keypoints only: one PNG per image, the network's input with the predicted points."""
        if not self.keypoints:
            return []
        from cvkit.plots.regress import draw_points_overlay

        folder.mkdir(parents=True, exist_ok=True)
        for image, row, name in zip(images, probs, names):
            draw_points_overlay(image, row.reshape(-1, 2), self.names[0::2], folder / f"{name}.png")
        return [f"{name}.png" for name in names]

    def targets(self, split: SplitData) -> np.ndarray:
        """N x T targets; keypoints in the split's pixels (whose size becomes the network input's)."""
        if split.values is None:
            raise ManifestError("the dataset holds no numeric targets; prepare the source with 'cvkit prepare SRC "
                                "--task regress --targets COL,...'")
        if split.values.ndim != 2 or split.values.shape[1] != len(self.names):
            raise ManifestError(f"the dataset has {split.values.shape[-1]} targets per image, the run "
                                f"{len(self.names)} ({', '.join(self.names)}); use a dataset prepared for this run")
        if self.keypoints:
            self.input_size = (int(split.images.shape[1]), int(split.images.shape[2]))
        return split.values

    def check_train(self, split: SplitData, where: str) -> None:
        if split.values is None:
            raise ManifestError(f"{where} has no numeric targets; prepare the source with 'cvkit prepare SRC --task "
                                f"regress --targets COL,...'")
        self.targets(split)

    def fit_targets(self, targets: np.ndarray) -> None:
        """The train split's mean and std of each target: the network learns standardized values."""
        values = np.asarray(targets, dtype=np.float64)
        self.mean = values.mean(0) if len(values) else np.zeros(len(self.names))
        std = values.std(0) if len(values) else np.ones(len(self.names))
        self.std = np.maximum(std, STD_FLOOR * np.maximum(np.abs(self.mean), 1.0))
        self._stats.clear()

    def state(self) -> dict[str, Any]:
        return {"targets": list(self.names), "mean": [float(v) for v in self.mean],
                "std": [float(v) for v in self.std], "keypoints": self.keypoints,
                "flip_pairs": [list(p) for p in self.flip_pairs],
                "input_size": list(self.input_size) if self.input_size else None}

    def _on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if device not in self._stats:
            self._stats[device] = (torch.tensor(self.mean, dtype=torch.float32, device=device),
                                   torch.tensor(self.std, dtype=torch.float32, device=device))
        return self._stats[device]

    def train_targets(self, labels: torch.Tensor) -> torch.Tensor:
        mean, std = self._on(labels.device)
        return (labels.float() - mean) / std

    def eval_targets(self, labels: torch.Tensor) -> torch.Tensor:
        return self.train_targets(labels)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(outputs.float(), targets)

    def probabilities(self, outputs: torch.Tensor) -> torch.Tensor:
        """The outputs in target units (keypoints: the network input's pixels)."""
        mean, std = self._on(outputs.device)
        return outputs.float() * std + mean

    def _radius(self) -> float:
        if self.input_size is None:
            raise ManifestError("the run does not record its input size (task_state.input_size); retrain it")
        return PCK_FRACTION * max(self.input_size)

    def hits(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Each image's share of right targets (train_acc): keypoints within PCK's radius; other targets
        within :data:`HIT_STDS` train standard deviations of the truth."""
        outputs = outputs.detach().float()
        if self.keypoints:
            diff = (self.probabilities(outputs) - labels.float()).reshape(len(labels), -1, 2)
            return (diff.norm(dim=-1) <= self._radius()).float().mean(1).sum()
        return ((outputs - self.eval_targets(labels)).abs() <= HIT_STDS).float().mean(1).sum()

    def score(self, probs: np.ndarray, labels: np.ndarray) -> float:
        """The mean absolute error over images and targets, in target units."""
        return float(np.abs(probs - labels).mean()) if len(labels) else 0.0

    # ------------------------------------------------------------------ keypoints and augmentation

    def move(self, labels: torch.Tensor, matrices: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Keypoints where the geometric augmentation took them; left and right trade places on mirrored images."""
        if not self.keypoints:
            return labels
        from cvkit.transforms.points import mirrored, move_points

        points = move_points(labels.float().reshape(len(labels), -1, 2), matrices, size)
        if self.flip_pairs:
            swapped = points[:, self._swap]
            points = torch.where(mirrored(matrices).to(points.device)[:, None, None], swapped, points)
        return points.reshape(len(labels), -1).to(labels.dtype)

    def flip_back(self, probs: torch.Tensor) -> torch.Tensor:
        """Keypoints of the mirrored image mirrored back (x -> W - x, pairs swapped); other targets stay."""
        if not self.keypoints:
            return probs
        self._radius()  # refuses a run that does not record its input size
        width = self.input_size[1]
        points = probs.reshape(len(probs), -1, 2).clone()
        points[..., 0] = width - points[..., 0]
        return points[:, self._swap].reshape(len(probs), -1)

    def view_back(self, probs: torch.Tensor, view: View) -> torch.Tensor:
        """Keypoints of a shifted view shifted back, of a zoomed one scaled back about the centre (in the
        network input's pixels, as ``flip_back``); other targets stay."""
        if view.kind == "flip" or not self.keypoints:
            return super().view_back(probs, view)
        h, w = view.size
        points = probs.reshape(len(probs), -1, 2)
        if view.kind == "shift":
            points = points - points.new_tensor([view.dx, view.dy])
        else:
            centre = points.new_tensor([w / 2, h / 2])
            points = (points - centre) / view.zoom + centre
        return points.reshape(len(probs), -1)

    # ------------------------------------------------------------------ evaluate and predict

    def metrics(self, probs: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
        """``mae``, ``rmse``, ``r2`` (means over the targets), ``pck`` (keypoints: the share of points
        within 0.1 x the network input's longer side), ``count`` and ``per_target``."""
        return regression_metrics(labels, probs, self.names, self._radius() if self.keypoints else None)

    def _to_pixels(self, values: np.ndarray, frames: np.ndarray | None) -> np.ndarray:
        """Keypoints from the network input's pixels into the frames' (see base.prediction_table)."""
        if not self.keypoints or frames is None:
            return values
        h, w = self.input_size or (1, 1)
        return apply_frames(np.asarray(values, dtype=np.float64) / np.tile([w, h], len(self.names) // 2), frames)

    def prediction_table(self, paths: list[str], probs: np.ndarray, labels: np.ndarray | None = None,
                         frames: np.ndarray | None = None) -> "pd.DataFrame":  # noqa: F821
        """predictions.csv: ``path``, then each target's prediction (``<name>``) and, when known, its
        true value (``true_<name>``); keypoints in the network input's pixels unless ``frames`` map them."""
        import pandas as pd

        predicted = self._to_pixels(probs, frames)
        true = None if labels is None else self._to_pixels(labels, frames)
        columns: dict[str, Any] = {"path": paths}
        for k, name in enumerate(self.names):
            columns[name] = predicted[:, k]
            if true is not None:
                columns[f"true_{name}"] = true[:, k]
        return pd.DataFrame(columns)

    def top(self, probs: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """Each image's first ``k`` targets with their predicted values, for predict's summary."""
        return [[(name, float(v)) for name, v in zip(self.names, row)][:k] for row in probs]

    def write_evaluation(self, stage: Path, probs: np.ndarray, split: SplitData, top_n: int) -> None:
        """predictions.csv (keypoints in the cache's pixels), per_target.csv and regression.png
        (predicted against true, per target)."""
        import pandas as pd

        from cvkit.plots.regress import plot_regression

        labels = self.targets(split)
        write_csv(stage / "predictions.csv", self.prediction_table(split.paths, probs, labels), "%.6g")
        write_csv(stage / "per_target.csv", pd.DataFrame(self.metrics(probs, labels)["per_target"]), "%.6g")
        plot_regression(self.names, labels, probs, stage / "regression.png")
