"""``--arch fcn``: a classifier's convolutional stages as the encoder of a fully convolutional
network (Long et al., 2015), a class for every pixel.

The encoder is any ``--encoder`` that makes feature maps at several scales: one of cvkit's own nets
(or a torchvision one), whose feature extractor runs stage by stage and is tapped where the
resolution changes (the classifier's head is left out), or a timm net built with
``features_only=True``. Its weights keep the classifier's names under ``features.encoder.``, so
``--weights CLS_RUN/model.safetensors`` loads a classification run's convolutions into it.

Two decoders:

- ``fcn8s``: a 1x1 "score" convolution on each of the last three scales (two where the encoder has
  two), fused from the deepest up by learned 2x transposed convolutions initialised to bilinear
  upsampling, then one learned upsampling to the input's size, as FCN-8s does. The scores are
  ``--base`` wide (not one per class as in the paper) so that the per-pixel head, a 1x1 convolution,
  gives timm's interface.
- ``transposed``: a stack of learned 2x transposed convolutions (each with BatchNorm and ReLU) from
  the deepest features, halving the width down to ``--base``.

The input is mirror-padded at the bottom and right to a multiple of the encoder's total stride, so
the scales align exactly (an encoder of valid convolutions, such as lenet5, is aligned by resizing),
and the output is cropped back to the input's size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cvkit.errors import CvkitError, OptionError
from cvkit.models.dense_io import Crop, MirrorPad, Segmenter
from cvkit.models.registry import CVKIT_MODELS, Options, register_model, resolve_arch

# fcn: tune here. model.json keeps each run's own values, so a change only shapes new runs.
FCN_ENCODER = "smallcnn"  # cvkit's default classifier: a run of it gives the encoder its weights
FCN_DECODER = "fcn8s"
FCN_BASE = 32  # channels of the decoder's score maps and upsamplings
FUSED_SCALES = 3  # fcn8s: the scales of strides 8, 16 and 32 on VGG16
PROBE = 256  # the side the encoder's scales are measured at (every power-of-2 stride up to 256 divides it)
ENCODER_PREFIX = "features.encoder."  # where the classifier's parameters live inside the fcn
NO_SCALES = ("pick a convolutional net such as smallcnn, vgg11 or resnet18 (see 'cvkit models')")


class StagedEncoder(nn.Module):
    """A classifier's feature extractor (an ``nn.Sequential``) run child by child, returning the
    outputs of the children in ``taps``: the last child at each resolution. ``features`` keeps the
    classifier's name, so its weights load by name."""

    def __init__(self, features: nn.Sequential, taps: list[int]) -> None:
        super().__init__()
        self.features = features[:taps[-1] + 1]  # the children after the deepest tap are never needed
        self.taps = taps

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = []
        for i, child in enumerate(self.features):
            x = child(x)
            if i in self.taps:
                maps.append(x)
        return maps


def _pow2(ratio: float) -> int:
    return 2 ** max(0, round(math.log2(ratio))) if ratio > 0 else 1


def _staged(name: str, in_chans: int, input_size: tuple[int, int], pretrained: bool) -> StagedEncoder:
    from cvkit.models.create import create_model
    from cvkit.models.inspection import SIZE_ERRORS, probe

    try:
        net = create_model(name, 1, in_chans, input_size, head="gap", pretrained=pretrained, check_size=False)
    except OptionError as e:
        if "--head gap needs a feature map" in str(e):
            raise OptionError(f"--encoder {name} flattens the image and cannot give multi-scale feature maps; "
                              f"{NO_SCALES}") from None
        raise
    features = getattr(net, "features", None)
    if not isinstance(features, nn.Sequential):
        raise OptionError(f"--encoder {name}: cvkit cannot run its feature extractor stage by stage; {NO_SCALES}")
    shapes: list[tuple[int, ...] | None] = []
    hooks = [child.register_forward_hook(
        lambda _m, _a, out: shapes.append(tuple(out.shape) if isinstance(out, torch.Tensor) else None))
        for child in features]
    try:
        probe(features, (1, in_chans, PROBE, PROBE))
    except SIZE_ERRORS as e:
        raise OptionError(f"--encoder {name} does not run on {PROBE}x{PROBE} images ({str(e).splitlines()[0][:120]}); "
                          f"{NO_SCALES}") from None
    finally:
        for hook in hooks:
            hook.remove()
    shapes = shapes[-len(features):]  # the real pass's, where the meta device failed part of the way
    taps: list[int] = []
    for i, shape in enumerate(shapes):
        if shape is None or len(shape) != 4:
            break
        if taps and shapes[taps[-1]][2:] == shape[2:]:
            taps[-1] = i  # the same resolution: the later output
        else:
            taps.append(i)
    return StagedEncoder(features, taps)


def _timm(name: str, in_chans: int, pretrained: bool) -> nn.Module:
    import timm

    from cvkit.models.create import fetch_failed, timm_pretrained_kwargs

    kwargs = timm_pretrained_kwargs(name) if pretrained else {}
    try:
        return timm.create_model(name, features_only=True, pretrained=pretrained, in_chans=in_chans, **kwargs)
    except CvkitError:
        raise
    except Exception as e:  # noqa: BLE001 - timm refuses features_only in its own words (RuntimeError, ...)
        if pretrained and not isinstance(e, (RuntimeError, AssertionError, TypeError)):
            raise fetch_failed(name, e) from e
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
        raise OptionError(f"--encoder {name} cannot give multi-scale feature maps (timm: {reason}); "
                          f"{NO_SCALES}") from None


def _scales(encoder: nn.Module, in_chans: int, side: int) -> list[tuple[int, int, int]]:
    """(channels, height, width) of each map the encoder makes for a ``side`` x ``side`` image (on the meta device)."""
    from cvkit.models.inspection import probe

    maps, _ = probe(encoder, (1, in_chans, side, side))
    return [tuple(m.shape[1:]) for m in maps]


def build_encoder(name: str, in_chans: int, input_size: tuple[int, int],
                  pretrained: bool) -> tuple[nn.Module, list[int], list[int], list[int], bool]:
    """The encoder; which of the maps it returns to keep (the last at each scale); their channels and
    strides (powers of 2), shallowest first; and whether those strides are exact at every multiple of
    the deepest one (else the decoder resizes to align them)."""
    from cvkit.models.inspection import SIZE_ERRORS

    if resolve_arch(name) == "timm":
        encoder = _timm(name, in_chans, pretrained)
        all_channels, every = encoder.feature_info.channels(), encoder.feature_info.reduction()
    else:
        encoder = _staged(name, in_chans, input_size, pretrained)
        found = _scales(encoder, in_chans, PROBE)
        all_channels, every = [c for c, _, _ in found], [_pow2(PROBE / h) for _, h, _ in found]
    keep = [i for i in range(len(every)) if i + 1 == len(every) or every[i + 1] != every[i]]
    channels = [all_channels[i] for i in keep]
    strides = [every[i] for i in keep]
    if len(strides) < 2 or strides[-1] < 2 or any(b <= a for a, b in zip(strides, strides[1:])):
        raise OptionError(f"--encoder {name} gives feature maps at strides {', '.join(map(str, strides))} only, "
                          f"not at several scales; {NO_SCALES}")
    deepest = strides[-1]
    try:
        aligned = all([_scales(encoder, in_chans, side)[i] for i in keep]
                      == [(c, side // s, side // s) for c, s in zip(channels, strides)]
                      for side in (PROBE, PROBE + deepest))
    except SIZE_ERRORS as e:
        raise OptionError(f"--encoder {name} does not run on images of several sizes ({str(e).splitlines()[0][:120]}); "
                          f"{NO_SCALES}") from None
    return encoder, keep, channels, strides, aligned


def bilinear_(conv: nn.ConvTranspose2d) -> None:
    """Initialise a transposed convolution to bilinear upsampling of each channel (FCN's initialisation)."""
    k = conv.kernel_size[0]
    factor = (k + 1) // 2
    centre = factor - 1 if k % 2 == 1 else factor - 0.5
    taps = 1 - (torch.arange(k, dtype=torch.float32) - centre).abs() / factor
    weight = torch.zeros(conv.weight.shape)
    channels = torch.arange(min(conv.in_channels, conv.out_channels))
    weight[channels, channels] = taps[:, None] * taps[None, :]
    if not conv.weight.is_meta:
        with torch.no_grad():
            conv.weight.copy_(weight)


def upsampling(width: int, factor: int, out: int | None = None, bilinear: bool = True) -> nn.Module:
    """A learned ``factor`` x upsampling: a transposed convolution whose output is exactly ``factor``
    times its input (kernel 2f - f % 2, padding f // 2). Factor 1: nothing."""
    if factor == 1:
        return nn.Identity()
    conv = nn.ConvTranspose2d(width, out or width, 2 * factor - factor % 2, stride=factor, padding=factor // 2,
                              bias=False)
    if bilinear:
        bilinear_(conv)
    return conv


def _fit(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``x`` resized to ``like``'s height and width (an encoder whose scales are not exact halvings)."""
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


class FCN8sDecoder(nn.Module):
    """Score maps of the last ``FUSED_SCALES`` scales, fused from the deepest by learned 2x (or the
    ratio of the strides) upsamplings, then upsampled to the input's scale."""

    def __init__(self, channels: list[int], strides: list[int], width: int, aligned: bool) -> None:
        super().__init__()
        channels, strides = channels[-FUSED_SCALES:], strides[-FUSED_SCALES:]
        self.score = nn.ModuleList(nn.Conv2d(c, width, 1) for c in channels)
        self.up = nn.ModuleList(upsampling(width, b // a) for a, b in zip(strides, strides[1:]))
        self.final = upsampling(width, strides[0])
        self.aligned = aligned
        self.width = width

    def forward(self, maps: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
        maps = maps[-len(self.score):]
        x = self.score[-1](maps[-1])
        for i in range(len(maps) - 2, -1, -1):
            x = self.up[i](x)
            skip = self.score[i](maps[i])
            x = (x if self.aligned else _fit(x, skip)) + skip
        x = self.final(x)
        return x if self.aligned else _fit(x, like)


class TransposedDecoder(nn.Module):
    """Learned 2x transposed convolutions (BatchNorm, ReLU after each) from the deepest features to
    the input's scale, halving the width at each, down to ``width``."""

    def __init__(self, channels: list[int], strides: list[int], width: int, aligned: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = channels[-1]
        for _ in range(int(math.log2(strides[-1]))):
            cout = max(width, cin // 2)
            layers.append(nn.Sequential(upsampling(cin, 2, cout, bilinear=False), nn.BatchNorm2d(cout), nn.ReLU()))
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.aligned = aligned
        self.width = cin

    def forward(self, maps: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
        x = self.layers(maps[-1])
        return x if self.aligned else _fit(x, like)


DECODER_CLASSES = {"fcn8s": FCN8sDecoder, "transposed": TransposedDecoder}  # one per config.DECODERS


class FCNBody(nn.Module):
    """Mirror padding to a multiple of the encoder's stride, the encoder, the decoder, the crop back
    to the input's size: image -> (N, F, H, W) features."""

    def __init__(self, pad: MirrorPad, encoder: nn.Module, keep: list[int], decoder: nn.Module, note: str) -> None:
        super().__init__()
        self.pad = pad
        self.encoder = encoder  # the classifier's own modules, under their own names (ENCODER_PREFIX)
        self.keep = keep  # which of the encoder's maps the decoder reads: the last one at each scale
        self.decoder = decoder
        self.crop = Crop(centred=False)
        self.note = note

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.pad(image)
        maps = self.encoder(x)
        return self.crop(self.decoder([maps[i] for i in self.keep], x), image)

    def inspect_notes(self, size: tuple[int, int]) -> list[str]:
        (th, _), (tw, _) = self.pad.tile(size[0]), self.pad.tile(size[1])
        padded = (f"cvkit mirror-pads the bottom and right of a {size[0]}x{size[1]} image to {th}x{tw} (a multiple "
                  f"of {self.pad.step}) and crops the output back" if (th, tw) != tuple(size)
                  else f"a {size[0]}x{size[1]} image needs no padding (each side a multiple of {self.pad.step})")
        return [f"{self.note}; {padded}"]


@register_model("fcn", head="conv", encoder=FCN_ENCODER, decoder=FCN_DECODER, base=FCN_BASE)
def fcn(num_outputs: int, in_chans: int, input_size: tuple[int, int], o: Options) -> Segmenter:
    """FCN: ``--encoder`` (a classifier's stages, or a timm backbone's features) and ``--decoder``
    fcn8s or transposed, ``--base`` channels wide; logits at the input's size."""
    if o.encoder in CVKIT_MODELS and CVKIT_MODELS[o.encoder].defaults.get("head") == "conv":
        raise OptionError(f"--encoder {o.encoder} is a segmentation net; give a classifier's architecture, such as "
                          "smallcnn, vgg11 or resnet18")
    encoder, keep, channels, strides, aligned = build_encoder(o.encoder, in_chans, input_size, o.pretrained)
    deepest = strides[-1]
    smallest = max(2, deepest // 2)  # as for classifiers: at least half the deepest stride
    h, w = input_size
    if min(h, w) < smallest:
        raise OptionError(f"--encoder {o.encoder} downsamples {deepest}x: it needs images of at least "
                          f"{smallest}x{smallest}, these are {h}x{w}; pick an --encoder with fewer downsamplings "
                          "(such as smallcnn) or larger images")
    decoder = DECODER_CLASSES[o.decoder](channels, strides, o.base, aligned)
    scales = ", ".join(map(str, strides))
    used = f" (fuses {', '.join(map(str, strides[-FUSED_SCALES:]))})" if o.decoder == "fcn8s" else ""
    note = f"fcn: --encoder {o.encoder} gives feature maps at strides {scales}; --decoder {o.decoder}{used}"
    body = FCNBody(MirrorPad(0, deepest, 0, smallest), encoder, keep, decoder, note)
    return Segmenter(body, decoder.width, num_outputs, weights_prefix=ENCODER_PREFIX)
