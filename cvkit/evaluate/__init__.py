"""Layer 5: ``evaluate``, through the runtime; what it writes comes from the run's task."""

from cvkit.evaluate.command import EvalResult, evaluate

__all__ = ["EvalResult", "evaluate"]
