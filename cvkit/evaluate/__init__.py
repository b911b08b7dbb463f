"""Layer 5: ``evaluate`` and ``predict``, through the runtime; what they write comes from the run's task."""

from cvkit.evaluate.predict import PredictResult, predict
from cvkit.evaluate.run import EvalResult, evaluate

__all__ = ["EvalResult", "PredictResult", "evaluate", "predict"]
