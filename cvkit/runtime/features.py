"""Intermediate features by layer name, through forward hooks that are removed after use."""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterator

import torch
from torch import nn

from cvkit.errors import OptionError


def layer_names(model: nn.Module) -> list[str]:
    """Every named submodule, in forward-definition order (what ``layers`` may name)."""
    return [name for name, _ in model.named_modules() if name]


@contextlib.contextmanager
def capture(model: nn.Module, layers: list[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Within the block, ``seen[name]`` holds the last output of each named module.

    The hooks are removed on leaving the block, whatever happens. Activations in cvkit's nets are
    not in-place, so a captured output is never overwritten by the next layer.
    """
    modules = dict(model.named_modules())
    for name in layers:
        if name not in modules or not name:
            names = layer_names(model)
            close = difflib.get_close_matches(name, names, n=3)
            hint = f"did you mean {', '.join(close)}?" if close else f"its layers are {', '.join(names[:8])}, ..."
            raise OptionError(f"the model has no layer '{name}'; {hint}")
    seen: dict[str, torch.Tensor] = {}
    handles = []
    for name in layers:
        def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor, name: str = name) -> None:
            seen[name] = output.detach() if isinstance(output, torch.Tensor) else output
        handles.append(modules[name].register_forward_hook(hook))
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def _map_outputs(model: nn.Module, in_chans: int, size: tuple[int, int]) -> tuple[list[tuple[str, tuple]], tuple]:
    """(name, output shape) of every named module whose output is a 4-D map, in the order they
    finish, and the shape of ``forward_features``' output, from a real pass on one blank image: the
    meta device would spare the compute, but its first use imports PyTorch's decompositions (2-3 s,
    more than a resnet18 pass at 224 px on a CPU)."""
    from cvkit.models.inspection import probe

    finished: list[tuple[str, tuple]] = []
    handles = []
    for name, module in model.named_modules():
        if name:
            def hook(_m: nn.Module, _i: tuple, out: object, name: str = name) -> None:
                if isinstance(out, torch.Tensor) and out.ndim == 4:
                    finished.append((name, tuple(out.shape)))
            handles.append(module.register_forward_hook(hook))
    try:
        features, _ = probe(model, (1, in_chans, *size), "forward_features", on_meta=False)
    finally:
        for handle in handles:
            handle.remove()
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
    valid = spatial_layers(model, in_chans, size)
    if name in valid:
        return name
    close = difflib.get_close_matches(name, valid, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    shown = ", ".join(valid) if len(valid) <= 40 else ", ".join(valid[:20] + ["..."] + valid[-15:])
    raise OptionError(f"--layer {name}: the model has no layer of that name with a feature map{hint}; "
                      f"valid layers: {shown}")
