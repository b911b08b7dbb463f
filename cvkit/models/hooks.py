"""Forward hooks on named layers, removed after use: the one place cvkit hooks a layer by name.

:func:`hooked` is the mechanism; the runtime's ``capture`` (outputs of several layers over a whole
pass), :func:`forward_to` (one layer's output with its autograd graph, the rest of the net skipped)
and the explainers' ``layer_pass`` (a layer's output made a leaf for its gradient) are built on it.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Callable, Iterator
from typing import NoReturn

import torch
from torch import nn

from cvkit.errors import OptionError


def layer_names(model: nn.Module) -> list[str]:
    """Every named submodule, in forward-definition order (what ``layers`` may name)."""
    return [name for name, _ in model.named_modules() if name]


def _no_layer(names: list[str], name: str) -> OptionError:
    close = difflib.get_close_matches(name, names, n=3)
    hint = f"did you mean {', '.join(close)}?" if close else f"its layers are {', '.join(names[:8])}, ..."
    return OptionError(f"the model has no layer '{name}'; {hint}")


@contextlib.contextmanager
def hooked(model: nn.Module, hooks: dict[str, Callable[[object], object]],
           unknown: Callable[[str], NoReturn] | None = None) -> Iterator[None]:
    """Within the block, each output of the module named by a key of ``hooks`` is passed to its
    function, which may return a replacement for the rest of the pass (None keeps the output).

    Every name is checked before any hook is registered: an unknown one is passed to ``unknown``,
    which raises its own error (default: one with the close matches). The hooks are removed on
    leaving the block, whatever happens.
    """
    modules = dict(model.named_modules())
    for name in hooks:
        if not name or name not in modules:
            if unknown is not None:
                unknown(name)
            raise _no_layer(layer_names(model), name)
    handles = []
    try:
        for name, fn in hooks.items():
            handles.append(modules[name].register_forward_hook(lambda _m, _i, output, fn=fn: fn(output)))
        yield
    finally:
        for handle in handles:
            handle.remove()


class _Stop(Exception):
    """Raised by the hook of the wanted layer: nothing after it needs computing."""


def forward_to(model: nn.Module, layer: str, x: torch.Tensor) -> torch.Tensor:
    """The output of the module named ``layer`` for input ``x``, with its autograd graph (when grad
    is enabled), without running the rest of the net."""
    seen: list[object] = []

    def stop(output: object) -> None:
        seen.append(output)
        raise _Stop

    with hooked(model, {layer: stop}):
        try:
            model(x)
        except _Stop:
            pass
    if not seen or not isinstance(seen[0], torch.Tensor):
        raise OptionError(f"layer '{layer}' is not called with a tensor output in the model's forward pass; "
                          "choose another --layer")
    return seen[0]
