"""Datasets: import sources, splits and folds, image decoding, the packed uint8 cache."""

from cvkit.data.cache import SplitData, load_split
from cvkit.data.prepare import PrepareResult, prepare

__all__ = ["PrepareResult", "SplitData", "load_split", "prepare"]
