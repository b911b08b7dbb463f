"""``train --sampler``: how often each training image is drawn, from the groups (classes, labels) it belongs to.

``balanced`` draws every group equally often: a group of c images weighs 1/c per image, so a class
with a tenth of the images is seen as often as the others (each of its images about ten times as
often). ``sqrt`` takes the middle road, 1/sqrt(c): rare groups come up more often than they occur,
but less than under ``balanced``, so the rare images repeat less (the square-root sampling of
Mahajan et al., 2018, and Mikolov et al.'s word2vec subsampling). An image in several groups
(multi-label) takes the weight of its rarest group, as LVIS's repeat-factor sampling does.
An epoch still draws as many images as the split holds, with replacement.
"""

from __future__ import annotations

import numpy as np

def sample_weights(groups: np.ndarray, mode: str) -> np.ndarray:
    """Per-image drawing weights (N, float64, summing to 1) from ``groups``: N x G booleans, image i
    in group g; every image must be in at least one group."""
    groups = np.asarray(groups, dtype=bool)
    counts = groups.sum(0).astype(np.float64)
    per_group = np.zeros_like(counts)
    present = counts > 0
    per_group[present] = 1 / (counts[present] if mode == "balanced" else np.sqrt(counts[present]))
    weights = np.where(groups, per_group[None, :], 0.0).max(1)
    return weights / weights.sum()


def group_counts(groups: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(images per group, expected draws per group in an epoch of len(weights) draws)."""
    groups = np.asarray(groups, dtype=bool)
    return groups.sum(0), (weights[:, None] * groups).sum(0) * len(weights)
