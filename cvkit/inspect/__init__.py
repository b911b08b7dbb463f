"""``cvkit inspect``: a network measured layer by layer (output shapes, parameters, receptive fields,
activation memory, multiply-accumulates) and in total, for an architecture or a trained run.

``inspect_arch("vgg16")`` builds the net on the meta device (shapes only) and traces one forward
pass with a hook on every layer (:mod:`cvkit.inspect.trace`); :mod:`cvkit.inspect.table` turns the
calls into rows and totals by the conventions it states.
"""

from cvkit.inspect.subject import inspect_arch, inspect_model, inspect_run
from cvkit.inspect.table import CONVENTIONS, Inspection, Row
from cvkit.inspect.trace import Call, trace

__all__ = ["CONVENTIONS", "Call", "Inspection", "Row", "inspect_arch", "inspect_model", "inspect_run", "trace"]
