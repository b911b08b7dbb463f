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
