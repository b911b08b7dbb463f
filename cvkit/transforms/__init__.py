"""Normalization statistics and (later) the augmentation policy and its batched on-device ops."""

from cvkit.transforms.stats import compute_stats, stats_from_arch

__all__ = ["compute_stats", "stats_from_arch"]
