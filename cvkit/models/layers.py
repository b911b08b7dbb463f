"""The parts cvkit's own nets and adapters are made of: activations, heads, and timm's interface.

Every model cvkit hands out offers timm's classifier interface (``forward_features``,
``forward_head``, ``num_features``, ``get_classifier``, ``reset_classifier``), so the trainer,
CAM and retrieval code never need to know where an architecture came from. timm models have it
natively; :class:`Net` gives it to everything else: a feature extractor followed by a head.
"""

from __future__ import annotations

import torch
from torch import nn

from cvkit.errors import OptionError

class Maxout(nn.Module):
    """Maxout units (Goodfellow et al., 2013): each unit is the max over ``pieces`` linear pieces.

    The layer before makes ``pieces`` channels per unit, unit c's being channels c*K .. c*K+K-1 of its
    K*C; this keeps the C maxima, at every position of a feature map. So it is not a drop-in elementwise
    activation: the nets that take it widen the layer before (:func:`pieces`).
    """

    def __init__(self, pieces: int) -> None:
        super().__init__()
        self.pieces = int(pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(1, (x.shape[1] // self.pieces, self.pieces)).amax(2)

    def extra_repr(self) -> str:
        return f"pieces={self.pieces}"


# Never in-place: the runtime's feature hooks (CAM, activation plots, retrieval) keep a layer's
# output, and an in-place activation after it would overwrite that output (and break Grad-CAM's
# backward pass through it).
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "maxout": Maxout,
}


# The activations that take a parameter after a colon: leaky_relu:SLOPE (the subject uses 0.1; PyTorch's
# default is 0.01), elu:ALPHA and maxout:K (K pieces per unit, which it needs: no default).
PARAMETERS = {"leaky_relu": "negative_slope", "elu": "alpha", "maxout": "pieces"}


def parse_activation(text: str) -> tuple[str, float | None]:
    """``leaky_relu:0.1`` -> ("leaky_relu", 0.1); a name alone -> (name, None). Refuses what is not one."""
    name, _, value = str(text).partition(":")
    if name not in ACTIVATIONS:
        raise OptionError(f"--activation {text!r} is not one of {', '.join(ACTIVATIONS)} (leaky_relu:SLOPE, "
                          f"elu:ALPHA and maxout:K take a parameter)")
    if name == "maxout":
        return name, _maxout_pieces(text, value)
    if not value:
        return name, None
    if name not in PARAMETERS:
        raise OptionError(f"--activation {text}: {name} takes no parameter; only leaky_relu:SLOPE, elu:ALPHA and "
                          f"maxout:K do")
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not (number == number and abs(number) != float("inf")) or (name == "elu" and number <= 0):
        raise OptionError(f"--activation {text}: the {PARAMETERS[name].replace('_', ' ')} must be a "
                          f"{'positive ' if name == 'elu' else ''}number, for example {name}:0.1")
    return name, number


def _maxout_pieces(text: str, value: str) -> int:
    try:
        k = int(value)
    except ValueError:
        k = 0
    if k < 2:
        raise OptionError(f"--activation {text}: maxout takes K, its number of linear pieces per unit, a whole "
                          f"number of 2 or more (one piece is a linear unit), for example maxout:2")
    return k


def pieces(activation: str | None) -> int:
    """How many outputs the layer before ``activation`` makes per unit: K for maxout:K, else 1."""
    if activation is None:
        return 1
    name, value = parse_activation(activation)
    return int(value) if name == "maxout" else 1


def activation_layer(text: str) -> nn.Module:
    name, value = parse_activation(text)
    return ACTIVATIONS[name]() if value is None else ACTIVATIONS[name](**{PARAMETERS[name]: value})


def conv_block(in_chans: int, out_chans: int, kernel: int, activation: str, batchnorm: bool,
               padding: int = 0, pool: bool = False) -> nn.Sequential:
    """Conv, optional BatchNorm, activation. The conv has no bias when BatchNorm follows (BN's shift replaces it).

    ``pool`` puts a 2x2 max-pool straight after the conv, so BatchNorm and the activation work on a
    quarter of the values (for ReLU without BN the result is the same as pooling last).
    """
    width = out_chans * pieces(activation)  # maxout:K: K pieces per output channel, normalized each
    layers: list[nn.Module] = [nn.Conv2d(in_chans, width, kernel, padding=padding, bias=not batchnorm)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    if batchnorm:
        layers.append(nn.BatchNorm2d(width))
    layers.append(activation_layer(activation))
    return nn.Sequential(*layers)


def dropout_layers(p: float) -> list[nn.Module]:
    """``[Dropout(p)]``, or nothing when p is 0, so a net without dropout shows none in its summary."""
    return [nn.Dropout(p)] if p > 0 else []


class Head(nn.Module):
    """A classifier head: ``pre`` (pooling, flattening, hidden layers) then ``fc``, which makes the logits.

    ``forward(x, pre_logits=True)`` stops before ``fc``, as timm's heads do (embeddings for retrieval).
    """

    def __init__(self, pre: nn.Module, fc: nn.Module) -> None:
        super().__init__()
        self.pre = pre
        self.fc = fc

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pre(x)
        return x if pre_logits else self.fc(x)


# The global pooling of each pooled ``--head``: gap (average: every position of a map counts) or gmp
# (max: only its strongest position does).
POOLS: dict[str, type[nn.Module]] = {"gap": nn.AdaptiveAvgPool2d, "gmp": nn.AdaptiveMaxPool2d}


def pooled_head(num_features: int, num_outputs: int, dropout: float, pool: str = "gap") -> Head:
    """Global average (``pool`` 'gap') or max ('gmp') pooling, dropout, one linear layer: the heads
    CAM reads its class weights from."""
    pre = nn.Sequential(POOLS[pool](1), nn.Flatten(1), *dropout_layers(dropout))
    return Head(pre, nn.Linear(num_features, num_outputs))


def fc_head(in_features: int, hidden: list[int], num_outputs: int, activation: str, dropout: float) -> Head:
    """Flatten, then fully connected hidden layers (linear, activation, dropout), then the output layer."""
    layers: list[nn.Module] = [nn.Flatten(1)]
    for width in hidden:
        layers += [nn.Linear(in_features, width * pieces(activation)), activation_layer(activation),
                   *dropout_layers(dropout)]
        in_features = width
    return Head(nn.Sequential(*layers), nn.Linear(in_features, num_outputs))


class ModelHead(nn.Module):
    """The rest of a torchvision model once its trunk is replaced by ``nn.Identity``.

    Calling the model then runs exactly its own pooling, flattening and classifier, whatever they
    are (AlexNet's 6x6 pool, SqueezeNet's conv classifier, ...), without cvkit copying that code.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if pre_logits:
            raise OptionError("pre-logits features are not available from a torchvision model's own head; "
                              "create it with --head gap or gmp")
        return self.model(x)


def last_layer(module: nn.Module) -> nn.Module:
    """The last Linear or Conv2d inside ``module``: the layer that makes the logits."""
    layers = [m for m in module.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    if not layers:
        raise ValueError(f"{type(module).__name__} holds no Linear or Conv2d layer")
    return layers[-1]


def replace_last_layer(module: nn.Module, num_outputs: int) -> None:
    """Swap the logits layer of ``module`` for a fresh one with ``num_outputs`` outputs (a new classifier)."""
    old = last_layer(module)
    name = next(n for n, m in module.named_modules() if m is old)
    factory = {"device": old.weight.device, "dtype": old.weight.dtype}
    if isinstance(old, nn.Linear):
        new: nn.Module = nn.Linear(old.in_features, num_outputs, bias=old.bias is not None, **factory)
    else:
        new = nn.Conv2d(old.in_channels, num_outputs, old.kernel_size, old.stride, old.padding,
                        bias=old.bias is not None, **factory)
    module.set_submodule(name, new)


class Net(nn.Module):
    """timm's classifier interface over a feature extractor and a head.

    ``features`` maps images to the last feature map (N, C, h, w), or to a vector for the nets that
    flatten the image (perceptron, mlp); ``head`` maps that to logits. ``fixed_input_size`` is set
    when the net flattens a feature map into a linear layer, so it only takes images of that size.
    """

    def __init__(self, features: nn.Module, head: nn.Module, num_features: int, num_classes: int,
                 fixed_input_size: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.features = features
        self.head = head
        self.num_features = num_features
        self.num_classes = num_classes
        self.fixed_input_size = fixed_input_size

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return last_layer(self.head)

    def reset_classifier(self, num_classes: int) -> None:
        replace_last_layer(self.head, num_classes)
        self.num_classes = num_classes


class TimmGap(Net):
    """A timm model's feature extractor under a GAP or GMP head (``--head gap`` or ``gmp`` for VGG and other
    nets whose own head is not global pooling + linear). ``features`` is the timm model, its own head removed."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features.forward_features(x)
