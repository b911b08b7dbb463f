"""Small adapters giving timm's interface to what lacks it: torchvision classifiers, and timm models
given ``--head gap`` or ``gmp`` when their own head is not global average pooling + linear (VGG's is two
4096-wide fully connected layers, MobileNetV3's a 1x1 conv after the pooling)."""

from __future__ import annotations

from collections import OrderedDict
from itertools import takewhile

import torch
import torchvision
from torch import nn
from timm.models import adapt_input_conv

from cvkit.errors import OptionError
from cvkit.models.auxiliary import GOOGLENET_TAPS, AuxNet, fit_aux_outputs
from cvkit.models.inspection import channels_last, first_conv, probe, timm_probe_shape
from cvkit.models.layers import POOLS, Head, ModelHead, Net, TimmGap, pooled_head

# torchvision families cvkit does not adapt (no convolutional feature map), and what to use instead.
TIMM_INSTEAD = {
    "vit_": "vit_base_patch16_224",
    "swin_": "swin_tiny_patch4_window7_224",
    "maxvit_": "maxvit_tiny_tf_224",
    "mnasnet": "mnasnet_100",
}


def timm_with_gap_head(arch: str, model: nn.Module, num_outputs: int, dropout: float, pool: str = "gap") -> TimmGap:
    """``model``'s feature extractor under a GAP head (``pool`` 'gmp': a GMP head). The modules only its own head used are
    removed, so they neither take memory (VGG16's fully connected layers hold 120M parameters) nor
    sit unused under DistributedDataParallel."""
    model.reset_classifier(0)
    features, called = probe(model, timm_probe_shape(model), "forward_features")
    if not isinstance(features, torch.Tensor) or features.ndim != 4 or channels_last(model, features):
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise OptionError(f"--head {pool} needs a (N, C, h, w) feature map, and {arch} makes features of shape "
                          f"{shape}; use --head auto")
    dropped: list[str] = []
    for name, module in list(model.named_modules())[1:]:
        if any(name.startswith(d + ".") for d in dropped):
            continue
        if next(module.parameters(), None) is not None and not any(m in called for m in module.modules()):
            model.set_submodule(name, nn.Identity())
            dropped.append(name)
    channels = features.shape[1]
    return TimmGap(model, pooled_head(channels, num_outputs, dropout, pool), channels, num_outputs)


def adapt_first_conv(model: nn.Module, in_chans: int) -> None:
    """Give the stem conv ``in_chans`` input channels, keeping its kernels: one channel gets the sum
    of the RGB kernels (timm's ``adapt_input_conv``), so pretrained filters still respond to edges."""
    name, conv = first_conv(model)
    new = nn.Conv2d(in_chans, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                    conv.groups, conv.bias is not None, conv.padding_mode)
    with torch.no_grad():
        new.weight.copy_(adapt_input_conv(in_chans, conv.weight))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    model.set_submodule(name, new)


def torchvision_net(name: str, num_outputs: int, in_chans: int, head: str, dropout: float | None,
                    pretrained: bool, aux: bool = False) -> Net:
    """A torchvision classifier as a :class:`Net`.

    The feature extractor is the model's ``features`` (AlexNet, MobileNet, EfficientNet, SqueezeNet,
    ...) or its children before ``avgpool``/``fc`` (GoogLeNet, RegNet, ShuffleNet: their forward
    calls them in that order). The head is the model's own (``--head auto`` or ``fc``) or GAP (GMP) + linear.
    ``aux``: GoogLeNet keeps its auxiliary classifiers, for training (an :class:`AuxNet`).
    """
    for prefix, alternative in TIMM_INSTEAD.items():
        if name.startswith(prefix):
            raise OptionError(f"--arch {name}: cvkit adapts convolutional torchvision models only; "
                              f"use timm's {alternative} instead (see 'cvkit models {prefix.rstrip('_')}*')")
    kwargs: dict[str, object] = {} if pretrained else {"num_classes": num_outputs}
    if dropout is not None:
        kwargs["dropout"] = dropout
    if name == "googlenet":
        # Its transform_input re-normalises ImageNet input; cvkit normalises with the dataset's own stats.
        kwargs["transform_input"] = False
        if aux or not pretrained:  # pretrained, torchvision drops them unless asked to keep them
            kwargs["aux_logits"] = aux  # the auxiliary heads only serve training (--aux-weight)
        if not pretrained:
            kwargs["init_weights"] = True
    model = torchvision.models.get_model(name, weights="DEFAULT" if pretrained else None, **kwargs)
    if in_chans != 3:
        adapt_first_conv(model, in_chans)

    children = dict(model.named_children())
    taps = {}
    if aux:  # out of the trunk's sequence: they read two of its stages
        taps = {stage: children.pop(name) for stage, name in GOOGLENET_TAPS.items()}
        fit_aux_outputs(list(taps.values()), num_outputs)
    if "features" in children:
        features = model.features
        model.features = nn.Identity()
        own_head: nn.Module = ModelHead(model)
        num_features = probe(features, (1, in_chans, 224, 224))[0].shape[1]
    elif isinstance(children.get("fc"), nn.Linear):
        end = "avgpool" if "avgpool" in children else "fc"
        features = nn.Sequential(OrderedDict(takewhile(lambda item: item[0] != end, children.items())))
        pool = [children.get("avgpool", nn.AdaptiveAvgPool2d(1)), nn.Flatten(1)]
        own_head = Head(nn.Sequential(*pool, *([children["dropout"]] if "dropout" in children else [])), model.fc)
        num_features = model.fc.in_features
    else:
        raise OptionError(f"--arch {name}: cvkit cannot find the feature extractor of this torchvision model; "
                          "pick a timm model instead (see 'cvkit models')")

    if head in POOLS:
        own_head = pooled_head(num_features, num_outputs, dropout or 0.0, head)
    net = AuxNet(features, own_head, num_features, num_outputs, taps) if taps else Net(features, own_head, num_features,
                                                                                      num_outputs)
    classifier = net.get_classifier()
    if getattr(classifier, "out_features", getattr(classifier, "out_channels", None)) != num_outputs:
        net.reset_classifier(num_outputs)  # pretrained: ImageNet's 1000 classes, like timm, kept only if they fit
    return net
