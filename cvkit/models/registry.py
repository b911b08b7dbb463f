"""Which architectures exist and where each comes from: cvkit's own nets, then timm, then torchvision.

cvkit's nets register themselves with :func:`register_model`, one function per net, as timm does.
A name resolves to the first source that knows it, so ``resnet18`` is timm's and ``alexnet``
(which timm lacks) torchvision's.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cvkit.errors import UnknownArchitecture



@dataclass(frozen=True)
class ModelSpec:
    """A cvkit net: its builder and the default of each option.

    An option whose default is None does not apply to the net (giving it is an error); ``head``
    is what ``--head auto`` means for it.
    """

    build: Callable[..., Any]
    defaults: dict[str, Any]


@dataclass(frozen=True)
class Options:
    """The options that change an architecture, resolved (no None where the net uses the option)."""

    head: str
    activation: str | None
    dropout: float | None
    batchnorm: bool | None
    hidden: list[int] | None
    # The segmentation nets' (unet, fcn): None for the nets they do not apply to.
    padding: str | None = None
    base: int | None = None
    depth: int | None = None
    encoder: str | None = None
    decoder: str | None = None
    pretrained: bool = False  # not an option of the architecture: fcn passes it to its encoder


CVKIT_MODELS: dict[str, ModelSpec] = {}


def register_model(name: str, **defaults: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator adding a builder ``fn(num_outputs, in_chans, input_size, options) -> Net`` under ``name``."""

    def add(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in CVKIT_MODELS:
            raise ValueError(f"architecture {name!r} is registered twice")
        CVKIT_MODELS[name] = ModelSpec(fn, defaults)
        _all_models.cache_clear()
        return fn

    return add


@functools.cache
def _torchvision_names() -> tuple[str, ...]:
    import torchvision

    return tuple(torchvision.models.list_models(module=torchvision.models))


@functools.cache
def _all_models() -> tuple[tuple[str, str], ...]:
    import timm

    timm_names = timm.list_models()
    timm_set = set(timm_names)
    return (
        *((name, "cvkit") for name in CVKIT_MODELS),
        *((name, "timm") for name in timm_names if name not in CVKIT_MODELS),
        *((name, "torchvision") for name in _torchvision_names() if name not in timm_set and name not in CVKIT_MODELS),
    )


def resolve_arch(name: str) -> str:
    """The source of ``--arch name``: 'cvkit', 'timm' or 'torchvision'.

    timm accepts a pretrained tag (``resnet18.a1_in1k``). An unknown name raises
    :class:`UnknownArchitecture` with the closest names.
    """
    if name in CVKIT_MODELS:
        return "cvkit"  # timm and torchvision (3 s to import) are only loaded for their models
    import timm

    if timm.is_model(name):
        return "timm"
    if name in _torchvision_names():
        return "torchvision"
    close = difflib.get_close_matches(name, [n for n, _ in _all_models()], n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UnknownArchitecture(f"Unknown architecture '{name}'.{hint} See 'cvkit models'.")


def list_models(pattern: str | None = None) -> list[tuple[str, str]]:
    """Every architecture as ``(name, source)``: cvkit's own first, then timm's, then torchvision's
    classification models that timm lacks. ``pattern`` is a shell wildcard (``resnet*``) when it
    holds one of ``*?[``, otherwise a substring."""
    models = _all_models()
    if not pattern:
        return list(models)
    if any(c in pattern for c in "*?["):
        return [(n, s) for n, s in models if fnmatch.fnmatchcase(n, pattern)]
    return [(n, s) for n, s in models if pattern in n]
