"""Metrics, confusion matrices and the pictures ``cvkit evaluate`` writes.

Importing this package does not import matplotlib; the plot functions load it when called.
"""

from cvkit.evaluate.metrics import classification_metrics, confusion_matrix, expected_calibration_error, top_losses
from cvkit.evaluate.plots import plot_confusion_matrix, plot_curves, plot_lr_find, plot_top_losses

__all__ = [
    "classification_metrics",
    "confusion_matrix",
    "expected_calibration_error",
    "plot_confusion_matrix",
    "plot_curves",
    "plot_lr_find",
    "plot_top_losses",
    "top_losses",
]
