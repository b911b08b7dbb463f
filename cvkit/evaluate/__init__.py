"""Layer 5: ``evaluate`` (metrics, confusion matrix, worst predictions) and ``predict``, through the runtime."""

from cvkit.evaluate.metrics import classification_metrics, confusion_matrix, expected_calibration_error, top_losses
from cvkit.evaluate.predict import PredictResult, predict
from cvkit.evaluate.run import EvalResult, evaluate

__all__ = ["EvalResult", "PredictResult", "classification_metrics", "confusion_matrix", "evaluate",
           "expected_calibration_error", "predict", "top_losses"]
