"""Auxiliary classifiers for training (``train --aux-weight W``): GoogLeNet's two, Inception v3's one.

While it trains, such a net also returns the logits of classifiers attached to intermediate stages
(:class:`AuxOutputs`), and the task adds W times their loss to the loss (``Task.train_loss``). They
serve training only: in eval mode the net returns its logits alone, and the weights a run saves
(:func:`plain_state_dict`) leave them out, so model.safetensors and model.json describe the plain net
(``aux_logits=False``) that evaluate, predict and export build.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import torch
from torch import nn

from cvkit.errors import OptionError
from cvkit.models.layers import Net, last_layer, replace_last_layer

# The nets with auxiliary classifiers, their source, and where each classifier reads: GoogLeNet's forward
# calls aux1 on inception4a's output and aux2 on inception4d's (torchvision's child names).
AUX_ARCHS: dict[str, str] = {"googlenet": "torchvision", "inception_v3": "timm"}
GOOGLENET_TAPS = {"inception4a": "aux1", "inception4d": "aux2"}
# Inception v3's classifier pools Mixed_6e's map 5x5 with stride 3, then convolves 5x5 without padding: the
# map must be 17 px wide at least, as it is at the net's 299 px.
INCEPTION_AUX_SIDE = 17


class AuxOutputs(NamedTuple):
    """What a net with auxiliary classifiers returns in training mode."""

    logits: torch.Tensor
    aux: tuple[torch.Tensor, ...]


def main_logits(outputs: Any) -> Any:
    """The net's own logits, whether or not auxiliary classifiers came with them."""
    return outputs.logits if isinstance(outputs, AuxOutputs) else outputs


def check_aux(arch: str, source: str) -> None:
    """Refuse ``--aux-weight`` for an architecture without auxiliary classifiers."""
    if AUX_ARCHS.get(arch) != source:
        raise OptionError(f"--aux-weight applies to the nets with auxiliary classifiers ({', '.join(AUX_ARCHS)}), "
                          f"not to --arch {arch}; leave it out (or 0)")


class AuxNet(Net):
    """A :class:`Net` whose ``aux`` classifiers, keyed by the name of a child of ``features``, read that
    child's output while training."""

    aux_prefixes = ("aux.",)

    def __init__(self, features: nn.Sequential, head: nn.Module, num_features: int, num_classes: int,
                 aux: dict[str, nn.Module]) -> None:
        super().__init__(features, head, num_features, num_classes)
        self.aux = nn.ModuleDict(aux)

    def forward(self, x: torch.Tensor) -> Any:
        if not self.training:
            return super().forward(x)
        found = []
        for name, layer in self.features.named_children():
            x = layer(x)
            if name in self.aux:
                found.append(self.aux[name](x))
        return AuxOutputs(self.forward_head(x), tuple(found))


def fit_aux_outputs(classifiers: list[nn.Module], num_outputs: int) -> None:
    """Pretrained auxiliary classifiers score ImageNet's 1000 classes: a fresh last layer for this run's."""
    for classifier in classifiers:
        if last_layer(classifier).out_features != num_outputs:
            replace_last_layer(classifier, num_outputs)


@functools.cache
def _inception_class() -> type:
    from timm.models.inception_v3 import InceptionV3

    class InceptionV3Aux(InceptionV3):
        """timm's Inception v3 whose auxiliary classifier runs in training mode only, returning
        :class:`AuxOutputs`; everywhere else it is the plain net (timm's own returns a pair always)."""

        aux_prefixes = ("AuxLogits.",)

        def forward_features(self, x: torch.Tensor) -> torch.Tensor:
            return self.forward_postaux(self.forward_preaux(x))

        def forward(self, x: torch.Tensor) -> Any:
            if not self.training:
                return self.forward_head(self.forward_features(x))
            x = self.forward_preaux(x)
            aux = self.AuxLogits(x)
            return AuxOutputs(self.forward_head(self.forward_postaux(x)), (aux,))

    return InceptionV3Aux


def inception_with_aux(model: nn.Module, in_chans: int, input_size: tuple[int, int]) -> nn.Module:
    """timm's ``inception_v3(aux_logits=True)`` as an :class:`InceptionV3Aux`, once its images are known to be
    large enough for the auxiliary classifier."""
    model.__class__ = _inception_class()  # the same modules and weights, the forward above
    model.aux_logits = False  # timm's other methods (forward_intermediates, ...) then skip the classifier
    was_training = model.training
    model.eval()
    with torch.no_grad():
        side = min(model.forward_preaux(torch.zeros(1, in_chans, *input_size)).shape[-2:])
    model.train(was_training)
    if side < INCEPTION_AUX_SIDE:
        raise OptionError(f"--aux-weight: inception_v3's auxiliary classifier needs a {INCEPTION_AUX_SIDE} px map at "
                          f"Mixed_6e, and {input_size[0]}x{input_size[1]} images make {side} px; prepare the data "
                          f"at 299 px (the net's own size), or leave --aux-weight out")
    return model


def plain_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model``'s weights without its auxiliary classifiers: those of the plain net."""
    prefixes = getattr(model, "aux_prefixes", ())
    return {k: v for k, v in model.state_dict().items() if not k.startswith(prefixes)}


def load_plain_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load the plain net's weights into ``model``; its auxiliary classifiers, absent from them, keep theirs."""
    prefixes = getattr(model, "aux_prefixes", ())
    missing, unexpected = model.load_state_dict(state, strict=not prefixes)
    left = [k for k in missing if not k.startswith(prefixes)]
    if left or unexpected:
        raise RuntimeError(f"the weights do not fit the net: missing {left[:3]}, unexpected {unexpected[:3]}")
