"""The model a ``cam`` or ``visualize`` call explains: a run directory, the newest run under
``./runs/``, or an ImageNet model (``--arch NAME --pretrained`` or ``--weights FILE``)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from cvkit.errors import OptionError
from cvkit.files.run import ModelInfo
from cvkit.runtime import LoadedRun, load_run
from cvkit.transforms.batch import Preprocess

RUNS = Path("runs")  # where `cvkit train` users keep their runs; searched when no run is given
SEARCH_DEPTH = 3  # runs/<name>/model.json, and two folders deeper (crossval's runs/cv/final)


def is_run(path: str | os.PathLike) -> bool:
    return ModelInfo.exists(path)


def latest_run(root: Path = RUNS) -> Path:
    """The run under ``root`` whose model.json was written last."""
    found = ModelInfo.runs_under(root, SEARCH_DEPTH)
    if not found:
        raise OptionError(f"no run given and none under ./{root}/; pass RUN (a folder written by 'cvkit train'), "
                          "or --arch NAME --pretrained for ImageNet weights")
    return max(found, key=ModelInfo.written_at)


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet-1k class names (the first name of each synset), shipped with timm."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return [info.index_to_description(i).split(",")[0] for i in range(1000)]


def pretrained_subject(arch: str, weights: str | None, device: torch.device) -> LoadedRun:
    """An ImageNet classifier as a run: timm's (or torchvision's) weights when they are in the local
    cache or can be downloaded, or a local weights file."""
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    from cvkit.models import create_model
    from cvkit.models.weights import load_weights

    size = (224, 224)
    if weights is None:
        try:
            model = create_model(arch, 1000, 3, size, pretrained=True)
        except OptionError as e:
            raise OptionError(f"--pretrained: the ImageNet weights of '{arch}' are not in the local cache and cannot "
                              f"be downloaded here ({str(e).split(': ', 1)[-1].split(';')[0]}); pass a run directory "
                              f"trained with 'cvkit train', or a weights file with --arch {arch} --weights FILE") from None
    else:
        model = create_model(arch, 1000, 3, size)
        load_weights(model, weights)
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    mean, std = tuple(cfg.get("mean", IMAGENET_DEFAULT_MEAN)), tuple(cfg.get("std", IMAGENET_DEFAULT_STD))
    size = tuple(cfg.get("input_size", (3, *size))[1:])
    info = ModelInfo(arch=arch, num_classes=1000, num_outputs=1000, in_chans=3, input_size=list(size),
                     classes=imagenet_classes(), loss="ce", mean=list(mean), std=list(std))
    model.to(device).eval()
    pre = Preprocess(info.mean, info.std, device, channels_last=False)
    return LoadedRun(Path(f"{arch}-imagenet"), model, info, pre, "fp32", device)


def subject(run: str | None, arch: str | None, pretrained: bool, weights: str | None,
            device: torch.device) -> tuple[LoadedRun, bool]:
    """The model to explain, and whether it came from ImageNet weights instead of a run."""
    if arch is not None or pretrained or weights is not None:
        if run is not None:
            raise OptionError("give either a RUN or --arch with --pretrained/--weights, not both")
        if arch is None:
            raise OptionError("--pretrained and --weights need --arch NAME (an ImageNet architecture, e.g. resnet18)")
        if not pretrained and weights is None:
            raise OptionError(f"--arch {arch} needs --pretrained (ImageNet weights) or --weights FILE; a randomly "
                              "initialized network has nothing to explain")
        return pretrained_subject(arch, weights, device), True
    loaded = load_run(run if run is not None else latest_run(), device)
    if loaded.task.dense:
        raise OptionError(f"{loaded.run} predicts a class per pixel (--task segment): its predictions are maps "
                          f"already, with no one class score per image for a CAM to explain; run 'cvkit predict "
                          f"{loaded.run} IMAGES' for its label maps")
    return loaded, False
