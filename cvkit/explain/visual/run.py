"""``cvkit visualize``: what a trained run has learned, as pictures in one output folder.

Every option is checked (layer, class, images, unit counts, the split) before anything is
computed; the pictures are then drawn into a hidden folder beside ``--out`` that holds the earlier
pictures too, and it takes ``--out``'s place only once all of them are written: a failure leaves
the old folder as it was, and a picture drawn again replaces the earlier one of the same name.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cvkit.errors import OptionError
from cvkit.explain.visual.common import (
    class_index,
    load_data,
    read_image,
    resolve_layer,
)
from cvkit.progress import info
from cvkit.runtime import LoadedRun
from cvkit.files.lock import releasing

if TYPE_CHECKING:
    from cvkit.data import SplitData

WHAT = ("--curves", "--filters", "--activations IMAGE", "--max-patches", "--maximize", "--saliency IMAGE",
        "--embedding", "--confusion", "--templates", "--adversarial IMAGE", "--invert IMAGE")
OPTIMIZE_STEPS = 200  # --maximize's and --invert's default --steps
ATTACK_STEPS = 1  # --adversarial's default --steps: FGSM


@dataclass
class VisualizeRequest:
    """What to draw (at least one of the fields up to ``invert``) and how. ``split`` None: train for
    ``max_patches``, val for ``embedding`` and ``confusion``. ``steps`` None: OPTIMIZE_STEPS for
    ``maximize`` and ``invert``, ATTACK_STEPS (FGSM) for ``adversarial``."""

    curves: bool = False
    filters: bool = False
    activations: str | None = None  # an image file
    max_patches: bool = False
    maximize: bool = False
    saliency: str | None = None  # an image file
    embedding: bool = False
    confusion: bool = False
    templates: bool = False
    adversarial: str | None = None  # an image file
    invert: str | None = None  # an image file
    eps: float | None = None  # --adversarial: the largest change of a pixel, in [0, 1]
    attack_class: str | None = None  # --adversarial --target: the class to push the image towards
    layer: str | None = None  # default: the last convolutional stage
    units: int = 8
    top: int = 8
    unit: int | None = None
    class_name: str | None = None
    steps: int | None = None
    smooth: int = 0
    projection: str = "pca"
    points: int = 5000
    split: str | None = None
    data: str | None = None
    seed: int = 0
    batch_size: int = 256

    def chosen(self) -> list[str]:
        flags = (self.curves, self.filters, self.activations is not None, self.max_patches, self.maximize,
                 self.saliency is not None, self.embedding, self.confusion, self.templates,
                 self.adversarial is not None, self.invert is not None)
        return [name.split()[0] for name, on in zip(WHAT, flags) if on]

    def steps_of(self, what: str) -> int:
        """``--steps`` as given, or the default of ``what`` (maximize, invert, adversarial)."""
        if self.steps is not None:
            return self.steps
        return ATTACK_STEPS if what == "adversarial" else OPTIMIZE_STEPS


@dataclass
class VisualizeResult:
    out: Path
    files: list[Path] = field(default_factory=list)
    layer: str | None = None
    summary: list[str] = field(default_factory=list)  # a line per attacked or inverted image


@dataclass
class _Plan:
    """The checked options: the layer, the class, the images read, the splits' data."""

    layer: str | None = None
    target: int | None = None
    attack_target: int | None = None
    inverted: str | None = None  # --invert's layer: any module, not only one with a feature map
    images: dict[str, np.ndarray] = field(default_factory=dict)
    splits: dict[str, SplitData] = field(default_factory=dict)


def _check(loaded: LoadedRun, r: VisualizeRequest) -> _Plan:
    from cvkit.explain.visual.maximize import check_unit
    from cvkit.explain.visual.patches import check_units
    from cvkit.explain.visual.splits import check_projection

    plan = _Plan()
    if r.templates:  # refused before anything is written
        from cvkit.explain.visual.maps import templates

        templates(loaded)
    if loaded.task.dense:  # a class per pixel: no one class score per image to maximize, explain or confuse
        scored = next((flag for flag, on in (("--maximize", r.maximize), ("--saliency", r.saliency is not None),
                                             ("--confusion", r.confusion), ("--embedding", r.embedding),
                                             ("--adversarial", r.adversarial is not None),
                                             ("--invert", r.invert is not None)) if on), None)
        if scored is not None:
            raise OptionError(f"{scored} works on one class score per image, and {loaded.run} predicts a class per "
                              f"pixel; use --filters, --activations, --max-patches or --curves, and 'cvkit evaluate' "
                              f"for its pixel confusion matrix")
    if r.batch_size < 1:
        raise OptionError(f"--batch-size {r.batch_size} must be at least 1")
    if r.class_name is not None:
        plan.target = class_index(loaded, r.class_name)
    if r.maximize and r.unit is None and plan.target is None:
        raise OptionError("--maximize needs --unit U (a channel of --layer) or --class NAME")
    if (r.maximize or r.invert is not None) and r.steps_of("maximize") < 1:
        raise OptionError(f"--steps {r.steps} must be at least 1")
    if r.adversarial is not None:
        _check_attack(loaded, r, plan)
    elif r.eps is not None or r.attack_class is not None:
        raise OptionError(f"{'--eps' if r.eps is not None else '--target'} goes with --adversarial IMAGE; "
                          "add it, or leave the option out")
    if r.max_patches and (r.units < 1 or r.top < 1):
        raise OptionError(f"--units {r.units} and --top {r.top} must be at least 1")
    if r.invert is not None:
        from cvkit.explain.visual.invert import check_layer

        if r.layer is None:
            raise OptionError("--invert needs --layer L (a layer as 'cvkit inspect' lists it); an early layer keeps "
                              "the most of the image")
        plan.inverted = check_layer(loaded, r.layer)
    if r.activations is not None or r.max_patches or (r.maximize and r.unit is not None):
        plan.layer = resolve_layer(loaded, r.layer)
    if r.max_patches:
        check_units(loaded, plan.layer, r.units)
    if r.maximize and r.unit is not None:
        check_unit(loaded, plan.layer, r.unit)
    if r.smooth < 0:
        raise OptionError(f"--smooth {r.smooth} must be 0 (off) or a number of noisy copies")
    if r.embedding:
        check_projection(r.projection)
        if r.points < 3:
            raise OptionError(f"--points {r.points} must be at least 3")
    for option, path in (("--activations", r.activations), ("--saliency", r.saliency),
                         ("--adversarial", r.adversarial), ("--invert", r.invert)):
        if path is not None:
            plan.images[option] = read_image(loaded, path, option)
    for on, default in ((r.max_patches, "train"), (r.embedding or r.confusion, "val")):
        split = r.split or default
        if on and split not in plan.splits:
            plan.splits[split] = load_data(loaded, r.data, split)
    return plan


def _check_attack(loaded: LoadedRun, r: VisualizeRequest, plan: _Plan) -> None:
    from cvkit.explain.visual.adversarial import check_attack

    if r.eps is None:
        raise OptionError("--adversarial needs --eps E, the largest change of a pixel in [0, 1] (such as 8/255)")
    check_attack(loaded, r.eps, r.steps_of("adversarial"))
    if r.attack_class is not None:
        try:
            plan.attack_target = class_index(loaded, r.attack_class)
        except OptionError as e:
            raise OptionError(str(e).replace("--class", "--target", 1)) from None


def _keep_earlier(out: Path, stage: Path) -> None:
    """The earlier pictures into the new folder (hard links where the file system allows)."""
    if not out.is_dir():
        return
    for entry in out.iterdir():
        if entry.is_file() and not entry.name.startswith("."):
            try:
                os.link(entry, stage / entry.name)
            except OSError:
                shutil.copy2(entry, stage / entry.name)


@releasing  # the --out lock check_out takes is given up on return
def visualize(run: str | os.PathLike, request: VisualizeRequest, out: str | os.PathLike | None = None,
              device: str = "auto") -> VisualizeResult:
    """Draw what ``request`` asks for about ``run`` into ``out`` (default ``RUN/visualize``)."""
    from cvkit.device import resolve_device
    from cvkit.explain.visual import draw
    from cvkit.files.outputs import check_out, replacing
    from cvkit.files.owned import own_visualize
    from cvkit.runtime import load_run

    if not request.chosen():
        raise OptionError(f"nothing to draw: give at least one of {', '.join(WHAT)}")
    loaded = load_run(run, resolve_device(device))
    plan = _check(loaded, request)
    if plan.layer is not None and request.layer is None:
        info(f"layer: {plan.layer} (the last convolutional stage; choose another with --layer)")
    reads = [loaded.run, *(p for p in (request.activations, request.saliency, request.adversarial, request.invert)
                           if p)]
    if plan.splits:
        reads.append(request.data or loaded.data)
    out = check_out(out or loaded.run / "visualize", reads=reads, own=own_visualize, force=True)
    result = VisualizeResult(out, layer=plan.layer)
    r = request
    with replacing(out) as stage:
        _keep_earlier(out, stage)
        written: list[str] = []
        if r.curves:
            written += draw.curves(loaded, stage)
        if r.filters:
            written += draw.filters(loaded, stage)
        if r.activations is not None:
            written += draw.activations(loaded, stage, plan.images["--activations"], r.activations, plan.layer)
        if r.max_patches:
            split = r.split or "train"
            written += draw.max_patches(loaded, stage, plan.splits[split], split, plan.layer, r.units, r.top,
                                        r.batch_size)
        if r.maximize:
            written += draw.maximize(loaded, stage, plan.layer if r.unit is not None else None, r.unit,
                                     plan.target if r.unit is None else None, r.steps_of("maximize"), r.seed)
        if r.saliency is not None:
            written += draw.saliency(loaded, stage, plan.images["--saliency"], r.saliency, plan.target, r.smooth,
                                     r.seed)
        if r.embedding:
            split = r.split or "val"
            written += draw.embedding(loaded, stage, plan.splits[split], split, r.projection, r.points, r.seed,
                                      r.batch_size)
        if r.confusion:
            split = r.split or "val"
            written += draw.confusion(loaded, stage, plan.splits[split], split, r.batch_size)
        if r.templates:
            written += draw.templates(loaded, stage)
        if r.adversarial is not None:
            names, line = draw.adversarial(loaded, stage, plan.images["--adversarial"], r.adversarial, r.eps,
                                           r.steps_of("adversarial"), plan.attack_target)
            written += names
            result.summary.append(line)
        if r.invert is not None:
            names, line = draw.invert(loaded, stage, plan.images["--invert"], r.invert, plan.inverted,
                                      r.steps_of("invert"), r.seed)
            written += names
            result.summary.append(line)
    result.files = [out / name for name in written]
    return result

