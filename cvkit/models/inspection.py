"""Questions about a built model: which image sizes it takes, which parameters are its head, how
its backbone splits into blocks (for ``--freeze``), and how many parameters it has.

Shapes are found by running the model on the ``meta`` device, where PyTorch computes output
shapes without computing values: VGG16 at 512 px costs the same few milliseconds as at 32 px.
An op without a meta kernel falls back to a real pass on the model's device.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from itertools import chain

import torch
from torch import nn
from torch.func import functional_call

from cvkit.errors import OptionError
from cvkit.models.layers import Net, TimmGap

MAX_SIZE = 512  # the largest image side check_input_size tries
REFERENCE = 224  # an image side every architecture takes
# Up to this image side, sizes are checked with real passes on the model's device: a few milliseconds
# for cvkit's nets, where the meta device's first use costs seconds of imports (train's start-up).
REAL_CHECK_SIDE = 64
# What a forward pass raises when the image is too small (timm's ViTs assert their size).
SIZE_ERRORS = (RuntimeError, ValueError, AssertionError, NotImplementedError, IndexError)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode for the block, then each module's own mode back (frozen BatchNorm layers stay frozen)."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


class _Call(nn.Module):
    """Calls one method of ``model``: torch.func.functional_call can only call ``forward``."""

    def __init__(self, model: nn.Module, method: str) -> None:
        super().__init__()
        self.model = model
        self.method = method

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self.model, self.method)(x)


def probe(model: nn.Module, shape: tuple[int, ...], method: str = "forward",
          on_meta: bool | None = None) -> tuple[torch.Tensor, set[nn.Module]]:
    """Run ``model.<method>`` on a batch of ``shape`` in eval mode and without gradients.

    ``on_meta`` True: on the meta device only; False: a real pass on the model's device; None: meta,
    falling back to a real pass when an op has no meta kernel (or a real error, which the real pass
    raises again). Returns the output and the set of modules that were called.
    """
    called: set[nn.Module] = set()
    hooks = [m.register_forward_pre_hook(lambda module, args: called.add(module)) for m in model.modules()]
    try:
        with torch.no_grad(), eval_mode(model):
            if on_meta is not False:
                try:
                    tensors = chain(model.named_parameters(), model.named_buffers())
                    meta = {f"model.{name}": torch.empty_like(t, device="meta") for name, t in tensors}
                    out = functional_call(_Call(model, method), meta, (torch.empty(shape, device="meta"),))
                    return out, called
                except (RuntimeError, NotImplementedError):
                    if on_meta:
                        raise
                    called.clear()
            device = next(chain(model.parameters(), model.buffers()), torch.empty(0)).device
            return getattr(model, method)(torch.zeros(shape, device=device)), called
    finally:
        for hook in hooks:
            hook.remove()


def feature_stride(model: nn.Module, in_chans: int, real: bool = False) -> tuple[int, bool]:
    """How many input pixels make one pixel of the last feature map (32 for ResNet and VGG), and
    whether the meta device runs the model: both found by one pass at REFERENCE px (a real one with
    ``real``).

    Nets that end in a vector (perceptron, mlp) or tokens (ViT) have stride 1: their own layers
    refuse sizes they cannot take.
    """
    shape = (1, in_chans, REFERENCE, REFERENCE)
    on_meta = not real
    try:
        features, _ = probe(model, shape, "forward_features", on_meta=on_meta)
    except SIZE_ERRORS:
        if not on_meta:  # a net built for one size only, whose features flatten it
            return 1, False
        on_meta = False
        try:
            features, _ = probe(model, shape, "forward_features", on_meta=False)
        except SIZE_ERRORS:
            return 1, False
    if not (isinstance(features, torch.Tensor) and features.ndim == 4):
        return 1, on_meta
    return max(1, REFERENCE // features.shape[1 if channels_last(model, features) else 2]), on_meta


def channels_last(model: nn.Module, features: torch.Tensor) -> bool:
    """Whether a 4-D feature map is (N, h, w, C), as some timm models (MambaOut, Swin) return it."""
    width = getattr(model, "num_features", None)
    return features.shape[1] != width and features.shape[-1] == width


def runs(model: nn.Module, in_chans: int, size: tuple[int, int], on_meta: bool | None = None) -> bool:
    """Whether ``model`` makes logits for one image of ``size``."""
    try:
        out, _ = probe(model, (1, in_chans, *size), on_meta=on_meta)
    except SIZE_ERRORS:
        return False
    return out.numel() > 0


def takes(model: nn.Module, in_chans: int, real: bool = False) -> Callable[[tuple[int, int]], bool]:
    """A test of image sizes for ``model``: it must run, and be at least half a feature stride wide,
    since a smaller image reaches the last stages as padding (ResNet-50 runs on 8 px images, but its
    last 1x1 feature maps are then mostly zeros). Half, not one: ResNet-18 at 28 px (stride 32) is
    the usual Fashion-MNIST baseline and trains well. ``real``: real passes only (no meta device)."""
    stride, on_meta = feature_stride(model, in_chans, real)

    def test(size: tuple[int, int]) -> bool:
        # Where the meta device failed at REFERENCE px, try it again anyway (nets built for one
        # size fail there for their own reasons), falling back to real passes.
        return 2 * min(size) >= stride and runs(model, in_chans, size,
                                                on_meta=False if real else (True if on_meta else None))

    return test


def smallest_size(works: Callable[[tuple[int, int]], bool], input_size: tuple[int, int]) -> int | None:
    """The smallest side s such that ``works((max(h, s), max(w, s)))``, for an ``input_size`` that fails.

    Tries multiples of 8 up to MAX_SIZE, then steps down one pixel at a time to the exact minimum.
    """
    h, w = input_size

    def grown(side: int) -> tuple[int, int]:
        return max(h, side), max(w, side)

    failed = min(h, w)
    for side in range(8 * (failed // 8 + 1), MAX_SIZE + 1, 8):
        if works(grown(side)):
            while side - 1 > failed and works(grown(side - 1)):
                side -= 1
            return side
        failed = side
    return None


def too_small(arch: str, input_size: tuple[int, int], smallest: int | None, option: str | None = None) -> OptionError:
    """The error for images too small for ``arch``. ``option``: the option the size came from (such as
    ``--input-size``), which the message then speaks to; None when it is the dataset's size."""
    h, w = input_size
    if option is not None:
        if smallest is None:
            return OptionError(f"{option} {h}x{w}: {arch} does not run on that size, nor on any size up to "
                               f"{MAX_SIZE}x{MAX_SIZE}; pick another architecture (see 'cvkit models')")
        return OptionError(f"{option} {h}x{w} is too small for {arch}: it needs at least {smallest}x{smallest} px; "
                           f"give {option} {smallest} or more")
    if smallest is None:
        return OptionError(f"--arch {arch} does not run on {h}x{w} images, nor on any size up to "
                           f"{MAX_SIZE}x{MAX_SIZE}; pick another --arch (see 'cvkit models')")
    return OptionError(f"--arch {arch} needs images of at least {smallest}x{smallest}, the dataset is {h}x{w}; "
                       f"rerun 'cvkit prepare ... --size {smallest}' (or larger)")


def check_input_size(arch: str, model: nn.Module, in_chans: int, input_size: tuple[int, int],
                     option: str | None = None) -> None:
    """Refuse images too small for ``model`` (VGG at 28 px: five 2x2 pools leave nothing), naming the
    smallest size that works and the fix. Nets that flatten their image take only the size they were built for.
    ``option``: the option the size came from (the error then speaks to it), None for the dataset's size."""
    h, w = input_size
    fixed = getattr(model, "fixed_input_size", None)
    if fixed is not None and tuple(fixed) != (h, w):
        if option is not None:
            raise OptionError(f"{option} {h}x{w}: this {arch} was built for {fixed[0]}x{fixed[1]} images only (it "
                              f"flattens them into a fully connected layer); give {option} {fixed[0]}x{fixed[1]} "
                              "or leave it out")
        raise OptionError(f"--arch {arch} was built for {fixed[0]}x{fixed[1]} images (it flattens them into a fully "
                          f"connected layer), these are {h}x{w}; resize them to {fixed[0]}x{fixed[1]}, "
                          "or train with --head gap")
    works = takes(model, in_chans, real=max(h, w) <= REAL_CHECK_SIDE)
    if not works((h, w)):
        raise too_small(arch, (h, w), smallest_size(works, (h, w)), option)


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d] | None:
    """The first Conv2d in registration order (the stem), with its name."""
    return next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)


def timm_probe_shape(model: nn.Module) -> tuple[int, int, int, int]:
    """A batch of one image that a timm model surely takes: its pretrained config's size."""
    conv = first_conv(model)
    _, h, w = model.pretrained_cfg.get("input_size", (3, 224, 224))
    return 1, conv[1].in_channels if conv else 3, h, w


def head_parameter_names(model: nn.Module) -> set[str]:
    """The names of the classifier's parameters: what ``--freeze backbone`` leaves trainable.

    cvkit's nets and adapters: their ``head``. timm models: every parameter ``forward_features``
    does not use (VGG's 4096-wide layers, MobileNetV3's conv_head, ConvNeXt's head norm) and those
    of ``get_classifier()``.
    """
    if isinstance(model, Net):
        return {f"head.{name}" for name, _ in model.head.named_parameters()}
    _, called = probe(model, timm_probe_shape(model), "forward_features")
    heads = model.get_classifier()
    heads = heads if isinstance(heads, (tuple, list)) else (heads,)  # distilled models (LeViT) have two
    classifier = {id(p) for head in heads for p in head.parameters()}
    names = set()
    for name, param in model.named_parameters():
        owner = model.get_submodule(name.rpartition(".")[0])
        if id(param) in classifier or (owner is not model and owner not in called):
            names.add(name)
    return names


def block_groups(model: nn.Module) -> list[list[str]]:
    """Parameter names grouped from the stem to the last block, the head left out: ``--freeze N``
    trains the head and the last N groups and freezes the rest (N at least the number of groups
    trains them all). timm models group as timm's ``group_matcher(coarse=True)`` says
    (stem, then stages); cvkit's nets and adapters (and timm models without a matcher) by the
    top-level modules of their feature extractor."""
    from timm.models import group_parameters

    head = head_parameter_names(model)
    if hasattr(model, "group_matcher"):
        groups = list(group_parameters(model, model.group_matcher(coarse=True)).values())
    elif isinstance(model, TimmGap):
        inner = model.features
        groups = [[f"features.{n}" for n in group]
                  for group in group_parameters(inner, inner.group_matcher(coarse=True)).values()]
    else:
        trunk, prefix = (model.features, "features.") if isinstance(model, Net) else (model, "")
        groups = [[f"{prefix}{child}.{n}" for n, _ in module.named_parameters()]
                  for child, module in trunk.named_children()]
    return [kept for group in groups if (kept := [n for n in group if n not in head])]


def count_parameters(model: nn.Module) -> int:
    """All parameters, trainable or frozen (shared ones counted once)."""
    return sum(p.numel() for p in model.parameters())
