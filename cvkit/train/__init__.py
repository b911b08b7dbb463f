"""Training: the fit loop, optimizers and schedules, early stopping, checkpoints, resume."""

from cvkit.train.config import TrainConfig
from cvkit.train.fit import TrainResult, fit, load_config
from cvkit.train.lr_find import lr_find

__all__ = ["TrainConfig", "TrainResult", "fit", "load_config", "lr_find"]
