"""``create_model``: one call for every ``--arch``, whatever its source, with timm's interface.

The options that change the architecture (``--head``, ``--activation``, ``--dropout``,
``--batchnorm``, ``--hidden``, smallcnn's and the segmentation nets' ``--base`` and ``--depth``, and
the segmentation nets' ``--padding``, ``--encoder``, ``--decoder``) are checked and resolved by
:func:`arch_options`; model.json keeps the result so every later command rebuilds the same net with ``create_model(arch, ..., **options)``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from cvkit.errors import CvkitError, OptionError, UnknownArchitecture
from cvkit.models.auxiliary import check_aux, inception_with_aux
from cvkit.files.config import DECODERS, PADDINGS
from cvkit.models.inspection import REAL_CHECK_SIDE, smallest_size, takes, too_small
from cvkit.models.layers import Net, parse_activation
from cvkit.models.registry import CVKIT_MODELS, Options, resolve_arch

HEADS = ("auto", "gap", "gmp", "fc")
DENSE_HEAD = "conv"  # the segmentation nets' head, a 1x1 convolution at every pixel: what --head auto means there
INITS = ("default", "xavier", "he", "normal")
FLAGS = {"activation": "--activation", "dropout": "--dropout", "batchnorm": "--batchnorm", "hidden": "--hidden",
         "padding": "--padding", "base": "--base", "depth": "--depth", "encoder": "--encoder", "decoder": "--decoder"}
# The options only some of cvkit's nets take (smallcnn: base, depth; unet and fcn: all): in arch_options'
# dict only where they apply, so the model.json of any other net stays as it was.
SOME_NETS_OPTIONS = ("padding", "base", "depth", "encoder", "decoder")


def _check_values(head: str, activation: str | None, dropout: float | None, hidden: list[int] | None,
                  init: str, pretrained: bool) -> None:
    if head not in HEADS and head != DENSE_HEAD:
        raise OptionError(f"--head {head!r} is not one of {', '.join(HEADS)}")
    if activation is not None:
        parse_activation(activation)
    if dropout is not None and not 0 <= dropout < 1:
        raise OptionError(f"--dropout {dropout} is not a probability in [0, 1)")
    if hidden is not None and (not hidden or any(int(w) != w or w < 1 for w in hidden)):
        raise OptionError(f"--hidden {hidden} must list positive layer widths, for example --hidden 512,256")
    parse_init(init)
    if pretrained and init != "default":
        raise OptionError(f"--init {init} would overwrite the pretrained weights; drop one of --init and --pretrained")


def _check_shape(padding: str | None, base: int | None, depth: int | None, decoder: str | None) -> None:
    if padding is not None and padding not in PADDINGS:
        raise OptionError(f"--padding {padding!r} is not one of {', '.join(PADDINGS)}")
    if base is not None and (isinstance(base, bool) or int(base) != base or base < 1):
        raise OptionError(f"--base {base} must be a whole number of channels, 1 or more")
    if depth is not None and (isinstance(depth, bool) or int(depth) != depth or depth < 1):
        raise OptionError(f"--depth {depth} must be a whole number of downsamplings, 1 or more")
    if decoder is not None and decoder not in DECODERS:
        raise OptionError(f"--decoder {decoder!r} is not one of {', '.join(DECODERS)}")


def _takers(key: str) -> str:
    """The cvkit nets an option applies to, for an error message."""
    return ", ".join(name for name, spec in CVKIT_MODELS.items() if spec.defaults.get(key) is not None)


def _check_head(arch: str, head: str, dense: bool) -> None:
    if dense and head not in ("auto", DENSE_HEAD):
        raise OptionError(f"--head {head} does not apply to --arch {arch}: it labels every pixel with a 1x1 "
                          "convolution; leave --head out")
    if not dense and head == DENSE_HEAD:
        nets = ", ".join(n for n, spec in CVKIT_MODELS.items() if spec.defaults.get("head") == DENSE_HEAD)
        raise OptionError(f"--head {DENSE_HEAD} is the per-pixel head of the segmentation nets ({nets}); "
                          f"--arch {arch} takes --head {', '.join(HEADS)}")


def _check_encoder(encoder: str, pretrained: bool) -> None:
    """An fcn's ``--encoder``: a known classifier (a segmentation net is none), with pretrained weights if asked."""
    try:
        source = resolve_arch(encoder)
    except UnknownArchitecture as e:
        raise OptionError(f"--encoder: {e}") from None
    if source == "cvkit" and CVKIT_MODELS[encoder].defaults.get("head") == DENSE_HEAD:
        raise OptionError(f"--encoder {encoder} is a segmentation net; give a classifier's architecture, such as "
                          "smallcnn, vgg11 or resnet18")
    if pretrained and source == "cvkit":
        raise OptionError(f"--encoder {encoder} is one of cvkit's own nets and has no pretrained weights; train it "
                          "from scratch, or start from a classification run with --weights RUN/model.safetensors")


def arch_options(arch: str | None = None, *, head: str = "auto", activation: str | None = None,
                 dropout: float | None = None, batchnorm: bool | None = None, hidden: list[int] | None = None,
                 padding: str | None = None, base: int | None = None, depth: int | None = None,
                 encoder: str | None = None, decoder: str | None = None,
                 init: str = "default", pretrained: bool = False) -> dict[str, Any]:
    """The options that shape the network, as a JSON-serialisable dict for model.json.

    With ``arch``, each option is checked against it and resolved to the net's default (``head``
    'auto' becomes what it means), so the saved dict does not depend on later changes of defaults.
    The options only some nets take (``padding``, ``base``, ``depth``, ``encoder``, ``decoder``) are
    in the dict only where they apply. ``init`` and ``pretrained`` only choose starting weights:
    checked, not returned.
    """
    _check_values(head, activation, dropout, hidden, init, pretrained)
    _check_shape(padding, base, depth, decoder)
    given = {"activation": activation, "dropout": None if dropout is None else float(dropout), "batchnorm": batchnorm,
             "hidden": None if hidden is None else [int(w) for w in hidden], "padding": padding,
             "base": None if base is None else int(base), "depth": None if depth is None else int(depth),
             "encoder": encoder, "decoder": decoder}

    def saved(options: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in options.items() if k not in SOME_NETS_OPTIONS or v is not None}

    if arch is None:
        return {"head": head, **saved(given)}
    source = resolve_arch(arch)
    if source == "cvkit":
        defaults = CVKIT_MODELS[arch].defaults
        for key, value in given.items():
            if value is not None and defaults.get(key) is None:
                only = f" (only to {_takers(key)})" if key in SOME_NETS_OPTIONS else ""
                raise OptionError(f"{FLAGS[key]} does not apply to --arch {arch}{only}; leave it out")
        _check_head(arch, head, defaults.get("head") == DENSE_HEAD)
        resolved = {k: v if v is not None else defaults.get(k) for k, v in given.items()}
        if resolved["encoder"] is not None:
            _check_encoder(resolved["encoder"], pretrained)
        elif pretrained:
            raise OptionError(f"--arch {arch} is one of cvkit's own nets and has no pretrained weights; train it "
                              "from scratch, or start from an earlier run's model.safetensors with --weights FILE")
        if resolved["hidden"] is not None:
            resolved["hidden"] = list(resolved["hidden"])  # not the module's default list itself
        return {"head": defaults["head"] if head == "auto" else head, **saved(resolved)}
    _check_head(arch, head, False)
    for key in SOME_NETS_OPTIONS:
        if given[key] is not None:
            raise OptionError(f"{FLAGS[key]} does not apply to --arch {arch} (only to {_takers(key)}); leave it out")
    if activation is not None and parse_activation(activation)[0] == "maxout":
        raise OptionError(f"--activation {activation}: maxout widens the layer before it K times, which cvkit can do "
                          f"in its own nets ({', '.join(n for n, s in CVKIT_MODELS.items() if s.defaults.get('activation'))}"
                          f"), not in {source}'s {arch}; pick one of those, or another --activation")
    refused = [k for k in ("batchnorm", "hidden") if given[k] is not None]
    if source == "torchvision" and activation is not None:
        refused.insert(0, "activation")
    if refused:
        own = ", ".join(CVKIT_MODELS)
        raise OptionError(f"{' and '.join(FLAGS[k] for k in refused)} apply to cvkit's own nets ({own}), "
                          f"not to {source}'s {arch}; leave them out (for BatchNorm pick a variant such as vgg11_bn)")
    return {"head": head, **saved(given)}


def create_model(arch: str, num_outputs: int, in_chans: int, input_size: tuple[int, int], *, head: str = "auto",
                 activation: str | None = None, dropout: float | None = None, batchnorm: bool | None = None,
                 hidden: list[int] | None = None, padding: str | None = None, base: int | None = None,
                 depth: int | None = None, encoder: str | None = None, decoder: str | None = None,
                 init: str = "default", pretrained: bool = False, check_size: bool = True,
                 size_option: str | None = None, aux: bool = False) -> nn.Module:
    """Build ``arch`` for ``num_outputs`` logits from ``in_chans``-channel images of ``input_size`` (h, w).

    The model offers timm's interface: ``forward_features``, ``forward_head``, ``num_features``,
    ``get_classifier``, ``reset_classifier``. ``head``: 'auto' keeps the architecture's own head;
    'fc' is the classic fully connected head where the architecture has one (timm and torchvision
    models keep their own); 'gap' is global average pooling + dropout + linear, 'gmp' global max pooling. ``init`` re-draws
    every conv and linear weight (biases zero). ``pretrained`` downloads the weights of timm or
    torchvision. ``check_size=False`` skips the check that cvkit's nets take images of ``input_size``
    (a run's model, checked when it was trained: the check's meta-device pass costs 2-3 s of imports).
    ``size_option``: the option ``input_size`` came from (``--input-size``), which a size error then names;
    None when it is a dataset's size.

    The segmentation nets (``unet``, ``fcn``, with ``dense = True``) make (N, num_outputs, H, W) logits at
    the input's size; ``padding``, ``base``, ``depth``, ``encoder`` and ``decoder`` shape them.

    ``aux``: googlenet and inception_v3 keep their auxiliary classifiers, which add their logits to the
    outputs in training mode (models/auxiliary.py); not an option of the architecture, since the run saves
    the net without them.
    """
    options = arch_options(arch, head=head, activation=activation, dropout=dropout, batchnorm=batchnorm,
                           hidden=hidden, padding=padding, base=base, depth=depth, encoder=encoder, decoder=decoder,
                           init=init, pretrained=pretrained)
    source = resolve_arch(arch)
    if aux:
        check_aux(arch, source)
    size = (int(input_size[0]), int(input_size[1]))
    if source == "cvkit":
        model: nn.Module = _create_cvkit(arch, num_outputs, in_chans, size, Options(**options, pretrained=pretrained),
                                         check_size, size_option)
    else:
        try:
            if source == "timm":
                model = _create_timm(arch, num_outputs, in_chans, options, pretrained, aux)
                if aux:
                    model = inception_with_aux(model, in_chans, size)
            else:
                from cvkit.models.adapters import torchvision_net

                model = torchvision_net(arch, num_outputs, in_chans, options["head"], options["dropout"], pretrained,
                                        aux)
        except CvkitError:
            raise
        except TypeError as e:
            raise _refused_option(arch, e, options) from None
        except Exception as e:
            # A failed download raises whatever the hub client raises (OSError, httpx or urllib errors, ...).
            if not pretrained:
                raise
            raise fetch_failed(arch, e) from e
    if init != "default":
        init_weights(model, init)
    return model


def _create_cvkit(arch: str, num_outputs: int, in_chans: int, size: tuple[int, int], options: Options,
                  check_size: bool = True, size_option: str | None = None) -> Net:
    build = CVKIT_MODELS[arch].build
    shapes_only = dataclasses.replace(options, pretrained=False)  # an fcn's encoder: no download for a shape

    def builds(candidate: tuple[int, int]) -> bool:
        # Fully connected layers are sized for the image, so each size gets its own net, built on
        # the meta device: shapes only, nothing allocated or initialised.
        try:
            with torch.device("meta"):
                net = build(num_outputs, in_chans, candidate, shapes_only)
        except RuntimeError:  # the image shrank to nothing before the fully connected layers
            return False
        return takes(net, in_chans)(candidate)

    if check_size and max(size) <= REAL_CHECK_SIDE and not options.pretrained:
        # A small image: the net itself, checked with real passes (the meta device only to search for
        # the smallest size that works, when this one does not).
        try:
            net = build(num_outputs, in_chans, size, options)
        except RuntimeError:  # the image shrank to nothing before the fully connected layers
            net = None
        if net is not None and takes(net, in_chans, real=True)(size):
            return net
        raise too_small(arch, size, smallest_size(builds, size), size_option)
    if check_size and not builds(size):
        raise too_small(arch, size, smallest_size(builds, size), size_option)
    return build(num_outputs, in_chans, size, options)


def _create_timm(arch: str, num_outputs: int, in_chans: int, options: dict[str, Any], pretrained: bool,
                 aux: bool = False) -> nn.Module:
    import timm
    from timm.layers import get_act_layer

    from cvkit.models.adapters import timm_with_gap_head

    kwargs: dict[str, Any] = {}
    if options["dropout"] is not None:
        kwargs["drop_rate"] = options["dropout"]
    if options["activation"] is not None:
        kwargs["act_layer"] = get_act_layer(options["activation"])
    if options["head"] == "gmp":
        kwargs["global_pool"] = "max"
    if aux:
        kwargs["aux_logits"] = True
    if pretrained:
        kwargs.update(timm_pretrained_kwargs(arch))
    model = timm.create_model(arch, pretrained=pretrained, num_classes=num_outputs, in_chans=in_chans, **kwargs)
    # timm's head is already GAP (GMP with global_pool="max") (+ dropout) + linear when it takes the features'
    # width directly.
    if options["head"] in ("gap", "gmp") and getattr(model, "head_hidden_size", model.num_features) != model.num_features:
        model = timm_with_gap_head(arch, model, num_outputs, options["dropout"] or 0.0, options["head"])
    return model


def timm_pretrained_kwargs(arch: str) -> dict[str, Any]:
    """What ``timm.create_model(arch, pretrained=True)`` needs to read cached weights with no network
    request; refuses at once when they are not cached and the hub cannot be reached (an offline
    download retries for about a minute)."""
    from cvkit.models.weights import cached_timm_weights, hub_unreachable

    overlay = cached_timm_weights(arch)
    if overlay is not None:
        return {"pretrained_cfg_overlay": overlay}  # the cached file, read with no network request
    if (why := hub_unreachable()) is not None:
        raise OptionError(f"could not fetch pretrained weights for '{arch}' (offline?): {why}; download them "
                          f"elsewhere and pass --weights FILE")
    return {}


def fetch_failed(arch: str, error: Exception) -> OptionError:
    """The error for a pretrained download that failed, with the reason and the fix."""
    reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
    return OptionError(f"could not fetch pretrained weights for '{arch}' (offline?): {reason}; "
                       "download them elsewhere and pass --weights FILE")


def _refused_option(arch: str, error: TypeError, options: dict[str, Any]) -> Exception:
    """The option a timm or torchvision model refused, named; other TypeErrors are bugs, left as they are."""
    text = str(error)
    if "global_pool" in text:
        return OptionError(f"--head gmp: {arch} takes no global pooling option (timm's global_pool); use --head "
                           f"auto or gap")
    if "drop_rate" in text or "'dropout'" in text:
        flag = "--dropout"
    elif options["activation"] is not None:  # act_layer travels deep into layers, which fail in their own words
        flag = "--activation"
    else:
        return error
    return OptionError(f"{flag} applies to cvkit's own nets; {arch} does not take it ({text.splitlines()[0][:160]})")


NORMAL_STD = 0.01  # --init normal: N(0, 0.01^2), a standard deviation of 0.01 (normal:STD names another)


def parse_init(text: str) -> tuple[str, float | None]:
    """``normal:0.1`` -> ("normal", 0.1): the standard deviation, never the variance; a scheme alone -> (scheme, None)."""
    name, _, value = str(text).partition(":")
    if name not in INITS or (value and name != "normal"):
        raise OptionError(f"--init {text!r} is not one of {', '.join(INITS)} or normal:STD")
    if not value:
        return name, None
    try:
        std = float(value)
    except ValueError:
        std = float("nan")
    if not 0 < std < float("inf"):
        raise OptionError(f"--init {text}: STD is the standard deviation, a positive number (normal:0.1 draws from "
                          f"N(0, 0.1^2), a variance of 0.01)")
    return name, std


def init_weights(model: nn.Module, scheme: str) -> None:
    """``--init``: re-draw every conv and linear weight with ``scheme`` and zero their biases."""
    name, std = parse_init(scheme)
    fill = {
        "xavier": nn.init.xavier_uniform_,
        "he": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"),
        "normal": lambda w: nn.init.normal_(w, 0.0, NORMAL_STD if std is None else std),
    }[name]
    for module in model.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            fill(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
