"""Layer 5: training. ``fit(cfg, train=..., val=...)`` trains on any data selection; ``resume``
finishes an interrupted run; ``lr_find`` runs the learning-rate range test."""

from cvkit.files.config import TrainConfig
from cvkit.train.fit import TrainResult, fit, resume
from cvkit.train.range_test import LrFindResult, lr_find

__all__ = ["LrFindResult", "TrainConfig", "TrainResult", "fit", "lr_find", "resume"]
