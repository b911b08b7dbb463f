"""The dataset patches that excite a layer's units most (Zeiler and Fergus, 2014): run a split through
the net, keep each unit's strongest activations, and crop each from its image with the unit's
receptive field."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cvkit.device import autocast
from cvkit.errors import OptionError
from cvkit.explain.visual.common import layer_shape
from cvkit.models.hooks import forward_to
from cvkit.models.receptive import ReceptiveField, receptive_field
from cvkit.progress import progress_bar
from cvkit.runtime import LoadedRun


@dataclass
class MaxPatches:
    """For each of K units (rows) the top N images (columns, strongest first): the activation, the
    image's index in the split, the unit's position (y, x) in the layer's map, the window's top-left
    input pixel (y0, x0; negative where it starts in the padding) and the crop (K, N, h, w, C uint8,
    zeros where the window leaves the image: every crop has the receptive field's size)."""

    layer: str
    units: np.ndarray
    mean: np.ndarray  # each unit's mean activation over the split
    values: np.ndarray
    index: np.ndarray
    y: np.ndarray
    x: np.ndarray
    y0: np.ndarray
    x0: np.ndarray
    crops: np.ndarray
    field: ReceptiveField


def strongest(loaded: LoadedRun, images: np.ndarray, layer: str, top: int,
              batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """For every channel of ``layer``: the ``top`` largest activations over the images (each image
    counted once, at its strongest position), their image indices and flat positions (C, top each),
    the channels' mean activations, and the map's width.

    Running buffers merged with ``torch.topk`` per batch: memory is C x top whatever the split's size.
    """
    best = index = where = None
    total, count, width = None, 0, 1
    model = loaded.model
    with progress_bar(f"Top patches of {layer}", len(images)) as bar, torch.inference_mode():
        for start, (batch, _) in zip(range(0, len(images), batch_size), loaded.batches(images, batch_size)):
            with autocast(loaded.device, loaded.precision):
                a = forward_to(model, layer, loaded.pre(batch))
            a = a.float()
            b, c, h, width = a.shape
            flat = a.reshape(b, c, h * width)
            total = flat.sum((0, 2)) if total is None else total + flat.sum((0, 2))
            count += b * h * width
            peak, pos = flat.max(2)  # (b, c): each image's strongest position for each channel
            ids = torch.arange(start, start + b, device=a.device).expand(c, b)
            values, pos = peak.t(), pos.t()
            if best is not None:
                values = torch.cat([best, values], 1)
                pos = torch.cat([where, pos], 1)
                ids = torch.cat([index, ids], 1)
            best, keep = values.topk(min(top, values.shape[1]), dim=1)
            where, index = pos.gather(1, keep), ids.gather(1, keep)
            bar.advance(b)
    return best.cpu(), index.cpu(), where.cpu(), (total / count).cpu(), width


def crop(images: np.ndarray, index: np.ndarray, y0: np.ndarray, x0: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Windows of ``size`` with top-left (y0, x0) from ``images[index]`` (any shape of index), zeros
    where a window leaves its image."""
    from cvkit.data.cache import take

    shape = index.shape
    index, y0, x0 = index.ravel(), y0.ravel(), x0.ravel()
    used, inverse = np.unique(index, return_inverse=True)
    pictures = take(images, used)
    h, w = images.shape[1:3]
    top, left = max(0, -int(y0.min())), max(0, -int(x0.min()))
    bottom, right = max(0, int(y0.max()) + size[0] - h), max(0, int(x0.max()) + size[1] - w)
    padded = np.pad(pictures, ((0, 0), (top, bottom), (left, right), (0, 0)))
    rows = (y0 + top)[:, None] + np.arange(size[0])
    cols = (x0 + left)[:, None] + np.arange(size[1])
    crops = padded[inverse[:, None, None], rows[:, :, None], cols[:, None, :]]
    return crops.reshape(*shape, *size, images.shape[3])


def check_units(loaded: LoadedRun, layer: str, units: int) -> None:
    """Refuse more units than ``layer`` has channels."""
    channels = layer_shape(loaded, layer)[0]
    if units > channels:
        raise OptionError(f"--units {units} is more than the {channels} channels of layer {layer}; "
                          f"give at most {channels}")


def max_patches(loaded: LoadedRun, images: np.ndarray, layer: str, units: int, top: int,
                batch_size: int = 256) -> MaxPatches:
    """The ``top`` patches of ``images`` (N x H x W x C uint8, a split) that activate each of the
    ``units`` channels of ``layer`` with the largest mean activation over those images."""
    if units < 1 or top < 1:
        raise OptionError(f"--units {units} and --top {top} must be at least 1")
    check_units(loaded, layer, units)
    if len(images) == 0:
        raise OptionError("the split has no images to take patches from; choose another --split")
    field = receptive_field(loaded.model, layer, loaded.in_chans)
    best, index, where, mean, width = strongest(loaded, images, layer, top, batch_size)
    chosen = torch.argsort(mean, descending=True, stable=True)[:units]
    values, index, where = best[chosen].numpy(), index[chosen].numpy(), where[chosen].numpy()
    y, x = where // width, where % width
    y0, x0 = field.origin(y, x)
    y0, x0 = np.asarray(y0, dtype=np.int64), np.asarray(x0, dtype=np.int64)
    return MaxPatches(layer, chosen.numpy(), mean[chosen].numpy(), values, index, y, x, y0, x0,
                      crop(images, index, y0, x0, field.size), field)
