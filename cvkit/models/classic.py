"""cvkit's own nets: the classics, written out small, and ``smallcnn``, the default ``--arch``.

One function per net, registered with the default of each option (``register_model``). A builder
takes the number of outputs, input channels, the image size and the resolved :class:`Options`,
and returns a :class:`~cvkit.models.layers.Net`.
"""

from __future__ import annotations

import torch
from torch import nn

from cvkit.errors import OptionError
from cvkit.models.layers import (POOLS, Head, Net, activation_layer, conv_block, dropout_layers, fc_head, pieces,
                                 pooled_head)
from cvkit.models.registry import Options, register_model

# smallcnn: tune here. A model.json records base, depth, dropout and hidden, so runs saved with other
# values still load (one saved before base/depth were options is the 32-64 net: files/run.py).
# Chosen by measurement on Fashion-MNIST (Adam onecycle, hflip only; bench/results/recipe_val.json and
# defaults_val.json): the max-pool before BatchNorm made a step faster at equal accuracy. Narrower
# stages (base 16: a quarter of the 32-64 net's FLOPs) trained for more epochs matched the 32-64 net
# on the val split in less time; the narrow net lost val accuracy to dropout 0.25, where 0.1 and 0 were
# level. A GAP head lost accuracy.
# An fc head keeps the spatial layout, which matters for clothes and digits; --head gap gives the
# CAM-ready variant.
SMALLCNN_BASE = 16  # --base: channels of the first stage, doubled at each stage after it
SMALLCNN_DEPTH = 2  # --depth: stages, each ending with a 2x2 max-pool
SMALLCNN_CONVS_PER_STAGE = 2  # conv3x3-BN-activation layers in each stage
SMALLCNN_DROPOUT = 0.1  # after the hidden layer of the fc head (before the linear layer of a gap head)
SMALLCNN_FC_HIDDEN = [256]  # hidden layer widths of the fc head

MLP_HIDDEN = [512, 256]
LENET5_HIDDEN = [120, 84]
NIN_WIDTHS = (96, 192, 192)  # the three mlpconv blocks, as in the paper's CIFAR-10 model


def _flat_size(features: nn.Module, in_chans: int, input_size: tuple[int, int]) -> int:
    """How many values ``features`` makes for one image of ``input_size``: the input of the first fc layer."""
    features.eval()  # BatchNorm refuses a batch of one in training mode
    with torch.no_grad():
        out = features(torch.zeros(1, in_chans, *input_size))
    features.train()
    return out[0].numel()


def _refuse_gap(arch: str, head: str) -> None:
    if head in POOLS:
        raise OptionError(f"--head {head} needs a feature map, and --arch {arch} flattens the image; "
                          "use --head fc, or a convolutional --arch such as smallcnn")


@register_model("perceptron", head="fc", dropout=0.0)
def perceptron(num_outputs: int, in_chans: int, input_size: tuple[int, int], o: Options) -> Net:
    """The linear classifier: one linear layer over the flattened image (its "features" are the pixels)."""
    _refuse_gap("perceptron", o.head)
    size = in_chans * input_size[0] * input_size[1]
    head = Head(nn.Sequential(*dropout_layers(o.dropout)), nn.Linear(size, num_outputs))
    return Net(nn.Flatten(1), head, size, num_outputs, fixed_input_size=tuple(input_size))


@register_model("mlp", head="fc", activation="relu", dropout=0.2, batchnorm=False, hidden=MLP_HIDDEN)
def mlp(num_outputs: int, in_chans: int, input_size: tuple[int, int], o: Options) -> Net:
    """A multilayer perceptron: the flattened image through hidden layers (linear, optional
    BatchNorm1d, activation, dropout), then the output layer. The last hidden layer is its features."""
    _refuse_gap("mlp", o.head)
    width = in_chans * input_size[0] * input_size[1]
    layers: list[nn.Module] = [nn.Flatten(1)]
    for out in o.hidden:
        made = out * pieces(o.activation)  # maxout:K: K pieces per unit
        norm = [nn.BatchNorm1d(made)] if o.batchnorm else []
        layers.append(nn.Sequential(nn.Linear(width, made, bias=not o.batchnorm), *norm,
                                    activation_layer(o.activation), *dropout_layers(o.dropout)))
        width = out
    return Net(nn.Sequential(*layers), Head(nn.Identity(), nn.Linear(width, num_outputs)), width, num_outputs,
               fixed_input_size=tuple(input_size))


@register_model("lenet5", head="fc", activation="tanh", dropout=0.0, batchnorm=False, hidden=LENET5_HIDDEN)
def lenet5(num_outputs: int, in_chans: int, input_size: tuple[int, int], o: Options) -> Net:
    """LeNet-5 (LeCun et al., 1998): conv5x5 6, avg-pool, conv5x5 16, avg-pool, fc 120, fc 84, output.

    The paper's 32 px input is a 28 px digit with a 2 px border, so images under 32 px get that
    border as padding on the first conv. ``--head gap`` (``gmp``) replaces the fc stack with GAP (GMP) + linear.
    """
    pad = 2 if min(input_size) < 32 else 0
    a, bn = o.activation, o.batchnorm
    features = nn.Sequential(
        nn.Sequential(*conv_block(in_chans, 6, 5, a, bn, pad), nn.AvgPool2d(2)),
        nn.Sequential(*conv_block(6, 16, 5, a, bn), nn.AvgPool2d(2)),
    )
    if o.head in POOLS:
        return Net(features, pooled_head(16, num_outputs, o.dropout, o.head), 16, num_outputs)
    head = fc_head(_flat_size(features, in_chans, input_size), o.hidden, num_outputs, a, o.dropout)
    return Net(features, head, 16, num_outputs, fixed_input_size=tuple(input_size))


@register_model("nin", head="gap", activation="relu", dropout=0.5, batchnorm=False)
def nin(num_outputs: int, in_chans: int, input_size: tuple[int, int], o: Options) -> Net:
    """Network in Network (Lin et al., 2014), its CIFAR model: three mlpconv blocks (a kxk conv then
    two 1x1 convs, each with the activation), max-pool and dropout between them, and no fully
    connected layer: the last 1x1 conv makes one map per class, and global average pooling turns
    each map into a logit. That conv is the head, so ``--freeze backbone`` still trains it.
    """
    if o.head == "fc":
        raise OptionError("--arch nin has no fully connected head by design (its last conv makes one map per class); "
                          "use --head auto")
    if o.head == "gmp":  # max-pooled class maps would no longer be CAM's weighted sum of the features
        raise OptionError("--arch nin averages its class maps by design (its head is a 1x1 conv, then global "
                          "average pooling); use --head auto, or --head gmp with a net such as smallcnn")
    a, bn = o.activation, o.batchnorm
    w1, w2, w3 = NIN_WIDTHS

    def mlpconv(cin: int, cout: int, kernel: int) -> nn.Sequential:
        return nn.Sequential(conv_block(cin, cout, kernel, a, bn, kernel // 2),
                             conv_block(cout, cout, 1, a, bn), conv_block(cout, cout, 1, a, bn))

    def between() -> list[nn.Module]:
        return [nn.MaxPool2d(3, stride=2, padding=1), *dropout_layers(o.dropout)]

    features = nn.Sequential(
        mlpconv(in_chans, w1, 5), *between(),
        mlpconv(w1, w2, 5), *between(),
        nn.Sequential(conv_block(w2, w3, 3, a, bn, 1), conv_block(w3, w3, 1, a, bn)),
    )
    # No activation after the class-map conv: its maps are averaged straight into logits.
    class_maps = nn.Sequential(nn.Conv2d(w3, num_outputs, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
    return Net(features, Head(nn.Identity(), class_maps), w3, num_outputs)


@register_model("smallcnn", head="fc", activation="relu", dropout=SMALLCNN_DROPOUT, batchnorm=True,
                hidden=SMALLCNN_FC_HIDDEN, base=SMALLCNN_BASE, depth=SMALLCNN_DEPTH)
def smallcnn(num_outputs: int, in_chans: int, input_size: tuple[int, int], o: Options) -> Net:
    """The default ``--arch``: a small modern CNN for 28-64 px images that trains fast on a CPU.

    ``--depth`` stages of (conv3x3, BatchNorm, activation) x ``SMALLCNN_CONVS_PER_STAGE``, the first
    with ``--base`` channels and each next one with twice as many, each stage halving the size with a
    2x2 max-pool placed right after its last conv (before BatchNorm: a quarter of the normalization work), then the fc head (flatten,
    ``SMALLCNN_FC_HIDDEN`` hidden units, dropout, linear) or, with ``--head gap`` (``gmp``), global average
    (max) pooling, dropout and one linear layer.
    """
    stages: list[nn.Module] = []
    cin = in_chans
    last = SMALLCNN_CONVS_PER_STAGE - 1
    for width in (o.base * 2**i for i in range(o.depth)):
        stages.append(nn.Sequential(*(conv_block(cin if j == 0 else width, width, 3, o.activation, o.batchnorm, 1,
                                                 pool=j == last) for j in range(SMALLCNN_CONVS_PER_STAGE))))
        cin = width
    features = nn.Sequential(*stages)
    if o.head == "fc":
        head = fc_head(_flat_size(features, in_chans, input_size), o.hidden, num_outputs, o.activation, o.dropout)
        return Net(features, head, cin, num_outputs, fixed_input_size=tuple(input_size))
    return Net(features, pooled_head(cin, num_outputs, o.dropout, o.head), cin, num_outputs)
