"""Intermediate features by layer name, through forward hooks that are removed after use
(:mod:`cvkit.models.hooks`), and which layers have a feature map to explain."""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Callable, Iterator

import torch
from torch import nn

from cvkit.errors import OptionError
from cvkit.models.hooks import hooked, layer_names


@contextlib.contextmanager
def capture(model: nn.Module, layers: list[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Within the block, ``seen[name]`` holds the last output of each named module.

    The hooks (:func:`cvkit.models.hooks.hooked`) are removed on leaving the block, whatever happens.
    Activations in cvkit's nets are not in-place, so a captured output is never overwritten by the
    next layer.
    """
    seen: dict[str, torch.Tensor] = {}

    def keeper(name: str) -> Callable[[object], None]:
        def keep(output: object) -> None:
            seen[name] = output.detach() if isinstance(output, torch.Tensor) else output
        return keep

    with hooked(model, {name: keeper(name) for name in layers}):
        yield seen


def _map_outputs(model: nn.Module, in_chans: int, size: tuple[int, int]) -> tuple[list[tuple[str, tuple]], tuple]:
    """(name, output shape) of every named module whose output is a 4-D map, in the order they
    finish, and the shape of ``forward_features``' output, from a real pass on one blank image: the
    meta device would spare the compute, but its first use imports PyTorch's decompositions (2-3 s,
    more than a resnet18 pass at 224 px on a CPU)."""
    from cvkit.models.inspection import probe

    finished: list[tuple[str, tuple]] = []

    def keeper(name: str) -> Callable[[object], None]:
        def keep(out: object) -> None:
            if isinstance(out, torch.Tensor) and out.ndim == 4:
                finished.append((name, tuple(out.shape)))
        return keep

    with hooked(model, {name: keeper(name) for name in layer_names(model)}):
        features, _ = probe(model, (1, in_chans, *size), "forward_features", on_meta=False)
    shape = tuple(features.shape) if isinstance(features, torch.Tensor) else ()
    return finished, shape


def spatial_layers(model: nn.Module, in_chans: int, size: tuple[int, int]) -> list[str]:
    """The layers whose output is an (N, C, h, w) feature map, in the order a forward pass finishes
    them: what ``--layer`` may name for CAMs, activations and receptive fields."""
    seen: dict[str, None] = {}
    for name, _ in _map_outputs(model, in_chans, size)[0]:
        seen.setdefault(name)
    return list(seen)


def default_layer(model: nn.Module, in_chans: int, size: tuple[int, int]) -> str:
    """The last convolutional stage: of the layers whose output is the final feature map (the one
    ``forward_features`` returns), the outermost that is not the whole feature extractor, finished last.

    timm's resnet18 gives ``layer4``, a cvkit net its last block (``features.1`` for smallcnn), a
    VGG under ``--head gap`` ``features.features`` or its last stage.
    """
    outputs, final = _map_outputs(model, in_chans, size)
    trunk = {name for name, m in model.named_modules() if m is getattr(model, "features", None)}
    candidates = [(name.count("."), -i, name) for i, (name, shape) in enumerate(outputs)
                  if shape == final and name not in trunk]
    if not candidates:
        if outputs:
            return outputs[-1][0]
        raise OptionError("the model makes no feature map (it flattens the image first), so it has no layer to "
                          "explain; train a convolutional --arch such as smallcnn")
    return min(candidates)[2]


def check_layer(model: nn.Module, name: str, in_chans: int, size: tuple[int, int]) -> str:
    """``name`` when it is a layer with a feature map, else an error that lists the valid ones."""
    return named_layer(name, spatial_layers(model, in_chans, size), " with a feature map")


def named_layer(name: str, valid: list[str], kind: str = "", see: str = "") -> str:
    """``name`` when it is among the ``valid`` layer names, else an error with the close matches and the valid
    ones (``kind``: what the layers must be, ``see``: where to see them)."""
    if name in valid:
        return name
    close = difflib.get_close_matches(name, valid, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    shown = ", ".join(valid) if len(valid) <= 40 else ", ".join(valid[:20] + ["..."] + valid[-15:])
    raise OptionError(f"--layer {name}: the model has no layer of that name{kind}{hint}; valid layers: {shown}{see}")
