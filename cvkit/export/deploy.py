"""The exported graph: normalization, the network and the output probabilities in one module.

Input: float32 images N x C x H x W with values in [0, 1], at the run's size and channels (what
``model.json`` describes); output: the run's task's probabilities N x K in ``classes`` order (softmax
for classify, independent sigmoids for multilabel). A deployment then needs no cvkit: resize, scale to
[0, 1], run.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from cvkit.models.losses import as_probabilities


class Deployed(nn.Module):
    def __init__(self, model: nn.Module, mean: list[float], std: list[float],
                 probabilities: Callable[[torch.Tensor], torch.Tensor] | str,
                 mean_image: np.ndarray | None = None) -> None:
        """``probabilities``: the run's task's map from outputs to probabilities (a loss name: classify's)."""
        super().__init__()
        self.model = model
        self.probabilities = as_probabilities(probabilities)
        c = len(mean)
        center = (torch.tensor(mean, dtype=torch.float32).view(1, c, 1, 1) if mean_image is None else  # as Preprocess
                  torch.from_numpy(np.asarray(mean_image, np.float32)).permute(2, 0, 1)[None])
        self.register_buffer("mean", center)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, c, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        dtype = next(self.model.parameters()).dtype
        return self.probabilities(self.model(x.to(dtype)))
