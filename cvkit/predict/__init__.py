"""Layer 5: ``predict``, the run's task's predictions for new images, through the runtime."""

from cvkit.predict.command import PredictResult, predict

__all__ = ["PredictResult", "predict"]
