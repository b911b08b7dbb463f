"""``train --log``: each epoch's figures sent to a tracker (cvkit/files/logs.py) besides metrics.csv.

Per epoch, at the epoch as step: every column of its metrics.csv row as a scalar of the same name;
a grid of the epoch's first training batch as the net was given it, after the augmentation on the
device and before normalization (so the pictures look like images); and the task's val confusion
matrix as a picture (classify and segment; tasks without one skip it). Under torchrun rank 0 alone
writes, and every process adds its share of val to the confusion counts. With ``--log none`` the
training step is left as it is: nothing is kept of the batches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from cvkit.files.logs import LOGS, RunLog, open_log
from cvkit.plots.tracker import batch_grid, confusion_pixels
from cvkit.progress import info
from cvkit.train.trainer import Trainer

GRID_IMAGES, GRID_COLUMNS = 64, 8  # of the epoch's first batch: up to 8 rows of 8
BATCH_TAG, CONFUSION_TAG = "train/augmented_batch", "val/confusion_matrix"


class EpochLog:
    """What ``--log`` records of each epoch of ``trainer`` into ``run``, from ``first_epoch`` on."""

    def __init__(self, trainer: Trainer, run: Path, first_epoch: int) -> None:
        self.trainer = trainer
        self.on = trainer.cfg.log != "none"
        self.writes = self.on and trainer.world.main
        self.tracker = open_log(trainer.cfg.log, run, first_epoch) if self.writes else RunLog(run, first_epoch)
        self.batch: torch.Tensor | None = None
        folder = LOGS[trainer.cfg.log].folder
        if self.writes and folder:  # named as the run will be, not as its --force staging folder
            info(f"--log {trainer.cfg.log}: the epochs' figures go to {Path(trainer.cfg.out) / folder}")

    def start_epoch(self) -> None:
        """Keep the first batch that the coming epoch trains on."""
        if self.writes:
            self.trainer.peek = self._keep

    def _keep(self, x: torch.Tensor) -> None:
        self.batch = x[:GRID_IMAGES].detach().float().cpu()
        self.trainer.peek = None  # the other steps of the epoch run as without --log

    def end_epoch(self, epoch: int, row: dict[str, Any], val_probs: np.ndarray | None) -> None:
        """The epoch's row, its first batch and its val confusion matrix (every process calls this)."""
        if not self.on:
            return
        matrix = self._confusion(val_probs)
        if not self.writes:
            return
        self.tracker.scalars(epoch, {k: float(v) for k, v in row.items() if k != "epoch"})
        if self.batch is not None:
            self.tracker.picture(BATCH_TAG, epoch, batch_grid(self.batch.numpy(), GRID_COLUMNS))
            self.batch = None
        if matrix is not None:
            self.tracker.picture(CONFUSION_TAG, epoch, confusion_pixels(matrix, self.trainer.task.classes,
                                                                        title=f"val, epoch {epoch}"))

    def _confusion(self, probs: np.ndarray | None) -> np.ndarray | None:
        if probs is None:
            return None
        mine = self.trainer.task.confusion(probs, self.trainer.val_targets())
        if mine is None or not self.trainer.world.distributed:
            return mine
        summed = self.trainer.world.sum(*mine.reshape(-1).tolist())
        return np.asarray(summed).round().astype(np.int64).reshape(mine.shape)

    def close(self) -> None:
        self.tracker.close()

