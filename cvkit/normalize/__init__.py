"""Layer 5: ``normalize``, the dataset's normalization statistics (``stats.json``)."""

from cvkit.normalize.command import compute_stats, normalize, stats_from_arch

__all__ = ["compute_stats", "normalize", "stats_from_arch"]
