"""What the ``visualize`` pictures share: the layer, the class, one input image, a dataset split,
and the way back from the network's normalized input to pixels."""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from cvkit.errors import ManifestError, OptionError, SourceError
from cvkit.runtime import LoadedRun

if TYPE_CHECKING:
    from cvkit.data import SplitData



def safe_name(text: str) -> str:
    """``text`` as part of a file name: anything but letters, digits, '.', '-' and '_' becomes '_'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def resolve_layer(loaded: LoadedRun, layer: str | None) -> str:
    """``layer`` checked against the layers with a feature map (the error lists them), or the last
    convolutional stage when None."""
    from cvkit.runtime.features import check_layer, default_layer

    if layer is None:
        return default_layer(loaded.model, loaded.in_chans, loaded.input_size)
    return check_layer(loaded.model, layer, loaded.in_chans, loaded.input_size)


def layer_shape(loaded: LoadedRun, layer: str) -> tuple[int, int, int]:
    """(channels, h, w) of ``layer``'s output at the run's input size."""
    from cvkit.models.hooks import forward_to

    x = torch.zeros(1, loaded.in_chans, *loaded.input_size, device=loaded.device)
    with torch.inference_mode():
        out = forward_to(loaded.model, layer, x)
    return int(out.shape[1]), int(out.shape[2]), int(out.shape[3])


def class_index(loaded: LoadedRun, name: str) -> int:
    """The index of class ``name`` of the run; an unknown name gets the close matches or the list."""
    if name in loaded.classes:
        return loaded.classes.index(name)
    close = difflib.get_close_matches(name, loaded.classes, n=3)
    shown = ", ".join(loaded.classes[:10]) + (", ..." if len(loaded.classes) > 10 else "")
    hint = f"did you mean {', '.join(close)}?" if close else f"the classes are {shown}"
    raise OptionError(f"--class {name} is not a class of the run; {hint}")


def read_image(loaded: LoadedRun, path: str | os.PathLike, option: str) -> np.ndarray:
    """One image (1 x H x W x C uint8), decoded and resized as ``prepare`` does for this run."""
    from cvkit.runtime import read_images

    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{option} {path} is not a file; give an image file")
    found = read_images([str(path)], loaded.input_size, loaded.in_chans, loaded.info.resize, workers=1)
    if found.rejected:
        raise SourceError(f"{option} {path} cannot be read as an image ({found.rejected[0][1]}); give an image file")
    return found.images


def load_data(loaded: LoadedRun, data: str | os.PathLike | None, split: str) -> SplitData:
    """The images and labels of ``split`` of the run's dataset (or ``data``), at the run's input size."""
    from cvkit.data import load_split
    from cvkit.files.dataset import SPLITS, is_dataset

    if split not in SPLITS:
        raise OptionError(f"--split {split} must be one of {', '.join(SPLITS)}")
    folder = Path(data or loaded.data or "")
    if not is_dataset(folder):
        raise OptionError(f"--data {data or loaded.data or '?'} is not a dataset directory; pass --data DIR "
                          "(the dataset the run was trained on)")
    part = load_split(folder, split, loaded.input_size)
    if part.images.shape[3] != loaded.in_chans:
        raise ManifestError(f"{folder} has {part.images.shape[3]} channel(s), {loaded.run} takes {loaded.in_chans}; "
                            f"pass the dataset the run was trained on with --data")
    why = loaded.task.mismatch(part)
    if why is not None:
        raise ManifestError(f"{folder} does not fit {loaded.run}: {why}; pass the dataset the run was trained on "
                            f"with --data")
    return part


def pixel_bounds(loaded: LoadedRun) -> tuple[torch.Tensor, torch.Tensor]:
    """The normalized values of pixel 0 and pixel 255: the box an input must stay in to be an image."""
    pre = loaded.pre
    return (0.0 - pre.mean) / pre.std, (1.0 - pre.mean) / pre.std


def to_pixels(loaded: LoadedRun, x: torch.Tensor) -> np.ndarray:
    """A normalized 1 x C x H x W input back to an H x W x C uint8 image (normalization undone)."""
    unit = (x.detach().float() * loaded.pre.std + loaded.pre.mean).clamp(0, 1)
    return (unit[0].permute(1, 2, 0) * 255).round().to(torch.uint8).cpu().numpy()
