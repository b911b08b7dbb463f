"""The model ``cvkit inspect`` measures: an architecture built for the occasion, or a trained run.

An architecture is built on the meta device, where PyTorch keeps shapes and no values: nothing is
allocated or initialised (VGG16's 138M weights took 2-5 s to draw at random on this project's
CPU), and the traced pass costs milliseconds. A net whose constructor computes with values (timm's
drop-path schedules) or that uses an op without a meta kernel is built for real instead, with
random weights. A receptive field the trace cannot follow by formula (an op it does not know) is
measured on a real copy, built only then.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from cvkit.errors import CvkitError, OptionError
from cvkit.inspect.table import Inspection, rows_of, totals_of
from cvkit.inspect.trace import GLOBAL, Call, Field, trace
from cvkit.models import check_input_size, create_model
from cvkit.models.inspection import REFERENCE, SIZE_ERRORS, runs
from cvkit.models.receptive import receptive_field

SIZE_OPTION = "--input-size"  # where a size other than a run's own comes from: size errors speak to it


def measurer(real: Callable[[], nn.Module], in_chans: int) -> Callable[[Call], Field | str]:
    """The receptive field of a call's output measured on the real net (``real()``, built on first use)."""

    def measure(call: Call) -> Field | str:
        if call.repeat:  # receptive_field finds a layer by name, which means its first call
            return GLOBAL
        try:
            found = receptive_field(real(), call.name, in_chans)
        except (OptionError, *SIZE_ERRORS):  # units that see everything (attention), or nothing measurable
            return GLOBAL
        return found.size, found.stride, found.centre

    return measure


def inspect_model(model: nn.Module, in_chans: int, size: tuple[int, int], *, subject: str, arch: str,
                  num_classes: int, real: Callable[[], nn.Module] | None = None,
                  calls: list[Call] | None = None) -> Inspection:
    """The table and totals of ``model`` (real or on the meta device) for one image of ``size``.

    ``real`` gives a real copy for receptive fields that must be measured (default: ``model``).
    """
    if calls is None:
        calls = trace(model, in_chans, size, measurer(real or (lambda: model), in_chans))
    rows = rows_of(model, calls, in_chans, size)
    notes = getattr(model, "inspect_notes", None)
    return Inspection(subject, arch, list(size), in_chans, num_classes, rows, totals_of(model, rows),
                      notes=notes(size) if callable(notes) else [])


def _on_meta(arch: str, num_classes: int, in_chans: int, size: tuple[int, int],
             options: dict[str, Any]) -> nn.Module | None:
    try:
        with torch.device("meta"):
            return create_model(arch, num_classes, in_chans, size, size_option=SIZE_OPTION, **options)
    except CvkitError:
        raise
    except Exception:  # a constructor that needs values (``.item()``): build it for real
        return None


def inspect_arch(arch: str, num_classes: int = 1000, in_chans: int = 3,
                 input_size: tuple[int, int] = (224, 224), **options: Any) -> Inspection:
    """Inspect ``arch`` as ``create_model`` builds it with ``options`` (``padding='valid'``, ``depth``...;
    random weights: counting needs none trained).

    An unknown name or an image size the net cannot take raises OptionError with the fix.
    """
    size = (int(input_size[0]), int(input_size[1]))
    real = functools.cache(lambda: create_model(arch, num_classes, in_chans, size, size_option=SIZE_OPTION, **options))
    measure = measurer(real, in_chans)
    model, calls = _on_meta(arch, num_classes, in_chans, size, options), None
    if model is not None:
        try:
            calls = trace(model, in_chans, size, measure)
        except SIZE_ERRORS:
            if runs(model, in_chans, (REFERENCE, REFERENCE), on_meta=True):
                check_input_size(arch, model, in_chans, size, SIZE_OPTION)  # the size is at fault: names one that works
            model = None  # an op without a meta kernel
    if model is None:
        model = real()
        try:
            calls = trace(model, in_chans, size, measure)
        except SIZE_ERRORS as e:
            check_input_size(arch, model, in_chans, size, SIZE_OPTION)
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise OptionError(f"--arch {arch} does not run on {size[0]}x{size[1]} images ({reason}); "
                              "try another --input-size") from None
    check_input_size(arch, model, in_chans, size, SIZE_OPTION)
    return inspect_model(model, in_chans, size, subject=arch, arch=arch, num_classes=num_classes, calls=calls)


def inspect_run(run: str | os.PathLike, device: torch.device,
                input_size: tuple[int, int] | None = None) -> Inspection:
    """Inspect a trained run's model, at its own input size unless ``input_size`` is given."""
    from cvkit.runtime import load_run

    loaded = load_run(run, device, precision="fp32")
    size = loaded.input_size if input_size is None else (int(input_size[0]), int(input_size[1]))
    if size != loaded.input_size:
        check_input_size(loaded.info.arch, loaded.model, loaded.in_chans, size, SIZE_OPTION)
    return inspect_model(loaded.model, loaded.in_chans, size, subject=str(run), arch=loaded.info.arch,
                         num_classes=loaded.info.num_classes)
