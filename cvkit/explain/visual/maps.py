"""What the first layer looks for (its kernels) and what a layer sees in one image (its feature maps)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cvkit.errors import OptionError
from cvkit.runtime import LoadedRun

MAX_FILTERS = 256  # kernels shown of the first conv (stems have 16-96)
MAX_CHANNELS = 64  # feature maps shown of a layer: the first 64 channels


@dataclass
class Filters:
    """A layer's weights as tiles: (n, kh, kw, 3) for RGB inputs, else (n, kh, kw), each min-max scaled
    over all its values; ``total`` kernels (or units) in the layer."""

    layer: str
    tiles: np.ndarray
    note: str
    total: int


def filters(loaded: LoadedRun) -> Filters:
    """The kernels of the model's first Conv2d (the stem), ready to draw."""
    from cvkit.models.inspection import first_conv

    found = first_conv(loaded.model)
    if found is None:
        raise OptionError("--filters: the model has no convolution (it flattens the image first), so it has no "
                          "filters to show; train a convolutional --arch such as smallcnn")
    name, conv = found
    return Filters(name, *_tiles(conv.weight.detach().float().cpu()[:MAX_FILTERS]), int(conv.weight.shape[0]))


def _tiles(weight: torch.Tensor) -> tuple[np.ndarray, str]:
    """(n, c, h, w) weights as min-max scaled tiles: RGB for 3 channels, gray for 1, else the channels' mean."""
    from cvkit.plots.visualize import scale_each

    if weight.shape[1] == 3:
        return scale_each(weight.permute(0, 2, 3, 1).numpy()), "RGB"
    if weight.shape[1] == 1:
        return scale_each(weight[:, 0].numpy()), "gray"
    return scale_each(weight.mean(1).numpy()), f"mean of {weight.shape[1]} input channels"


def templates(loaded: LoadedRun) -> Filters:
    """The weights of the first linear layer that reads the pixels (a perceptron's classifier: one
    template per class; an MLP's first layer: one per hidden unit) as images of the input's shape."""

    c, (h, w) = loaded.in_chans, loaded.input_size
    found = next(((name, m) for name, m in loaded.model.named_modules()
                  if isinstance(m, torch.nn.Linear) and m.in_features == c * h * w), None)
    first_conv = any(isinstance(m, torch.nn.Conv2d) for m in loaded.model.modules())
    if found is None or first_conv:
        raise OptionError("--templates draws a linear layer over the pixels, and this model has "
                          + ("a convolution first: use --filters for its kernels" if first_conv else "none")
                          + "; train --arch perceptron (one template per class) or --arch mlp")
    name, linear = found
    weight = linear.weight.detach().float().cpu()[:MAX_FILTERS].view(-1, c, h, w)  # Flatten's (C, H, W) order
    return Filters(name, *_tiles(weight), int(linear.weight.shape[0]))


def activations(loaded: LoadedRun, image: np.ndarray, layer: str) -> torch.Tensor:
    """``layer``'s feature maps (C, h, w, float32 on the CPU) for one uint8 image (1 x H x W x C)."""
    from cvkit.models.hooks import forward_to

    with torch.inference_mode():
        x = loaded.pre(torch.from_numpy(np.ascontiguousarray(image)).to(loaded.device))
        out = forward_to(loaded.model, layer, x)
    return out[0].float().cpu()
