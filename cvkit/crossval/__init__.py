"""Layer 5: cross-validation. ``crossval(base, out, folds=..., grid=...)`` trains every configuration of a grid
on every fold of train+val through ``cvkit.train.fit``, ranks them and refits the best; ``summarize`` merges
fold runs trained separately (``--fold``)."""

from cvkit.crossval.folds import DEFAULT_FOLDS
from cvkit.files.crossval import DEFAULT_LOO_LIMIT
from cvkit.crossval.grid import parse_grid
from cvkit.crossval.command import CrossvalResult, crossval, summarize

__all__ = ["DEFAULT_FOLDS", "DEFAULT_LOO_LIMIT", "CrossvalResult", "crossval", "parse_grid", "summarize"]
