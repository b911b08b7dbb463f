"""The automatic augmentation policies, batched: RandAugment, TrivialAugment Wide and AutoAugment.

The op lists, magnitude bins and the ImageNet sub-policies are torchvision's
(``torchvision.transforms.autoaugment``), which follow the papers: RandAugment (Cubuk et al. 2019)
applies N ops drawn uniformly with replacement, all at magnitude bin M of 31; TrivialAugment Wide
(Muller & Hutter 2021) one op at a uniformly drawn bin of its wider ranges; AutoAugment (Cubuk et
al. 2018) one of 25 sub-policies of two ops, each applied with its probability at its magnitude
(bins of 10). Signed magnitudes are negated with probability 1/2.

Each image draws its own op(s), bins and signs from the CPU generator ``gen`` (a seed repeats the
batch on any device), and the ops run on the whole batch grouped by op (``auto_ops.apply_ops``).
"""

from __future__ import annotations

import torch

from cvkit.transforms.auto_ops import OPS, apply_ops
from cvkit.transforms.policy import AUTO_BINS, AugmentPolicy

# The ops RandAugment and TrivialAugment Wide draw from, in torchvision's order (no Invert).
RAND_OPS = ("Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color",
            "Contrast", "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize")
AUTOAUGMENT_BINS = 10
# AutoAugment's ImageNet policy: (op, probability, magnitude bin) twice per sub-policy.
IMAGENET_POLICY = (
    (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)), (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
    (("Equalize", 0.8, None), ("Equalize", 0.6, None)), (("Posterize", 0.6, 7), ("Posterize", 0.6, 6)),
    (("Equalize", 0.4, None), ("Solarize", 0.2, 4)), (("Equalize", 0.4, None), ("Rotate", 0.8, 8)),
    (("Solarize", 0.6, 3), ("Equalize", 0.6, None)), (("Posterize", 0.8, 5), ("Equalize", 1.0, None)),
    (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)), (("Equalize", 0.6, None), ("Posterize", 0.4, 6)),
    (("Rotate", 0.8, 8), ("Color", 0.4, 0)), (("Rotate", 0.4, 9), ("Equalize", 0.6, None)),
    (("Equalize", 0.0, None), ("Equalize", 0.8, None)), (("Invert", 0.6, None), ("Equalize", 1.0, None)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)), (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
    (("Color", 0.8, 8), ("Solarize", 0.8, 7)), (("Sharpness", 0.4, 7), ("Invert", 0.6, None)),
    (("ShearX", 0.6, 5), ("Equalize", 1.0, None)), (("Color", 0.4, 0), ("Equalize", 0.6, None)),
    (("Equalize", 0.4, None), ("Solarize", 0.2, 4)), (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
    (("Invert", 0.6, None), ("Equalize", 1.0, None)), (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
)
UNSIGNED = ("Posterize", "Solarize")  # and the ops without a magnitude


def magnitude_bins(space: str, bins: int, h: int, w: int) -> torch.Tensor:
    """``len(OPS)`` x ``bins`` float64: each op's magnitude at each bin (0 for the ops without one), as
    torchvision's ``_augmentation_space``: "wide" for TrivialAugment Wide, "standard" for the others."""
    table = torch.zeros(len(OPS), bins, dtype=torch.float64)

    def line(top: float) -> torch.Tensor:
        return torch.linspace(0.0, top, bins, dtype=torch.float64)

    wide = space == "wide"
    for name in ("ShearX", "ShearY"):
        table[OPS.index(name)] = line(0.99 if wide else 0.3)
    table[OPS.index("TranslateX")] = line(32.0 if wide else 150.0 / 331.0 * w)
    table[OPS.index("TranslateY")] = line(32.0 if wide else 150.0 / 331.0 * h)
    table[OPS.index("Rotate")] = line(135.0 if wide else 30.0)
    for name in ("Brightness", "Color", "Contrast", "Sharpness"):
        table[OPS.index(name)] = line(0.99 if wide else 0.9)
    # torchvision computes these bins in float32; so do we, so a bin lands on the same whole number of bits
    table[OPS.index("Posterize")] = 8 - (torch.arange(bins) / ((bins - 1) / (6 if wide else 4))).round()
    table[OPS.index("Solarize")] = torch.linspace(255.0, 0.0, bins, dtype=torch.float64)
    return table


def _signs(n: int, ops: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """+1 or -1 per image, drawn for every image (so the draws do not depend on the ops); +1 for unsigned ops."""
    flip = torch.randint(2, (n,), generator=gen).bool()
    unsigned = torch.zeros(n, dtype=torch.bool)
    for name in UNSIGNED:
        unsigned |= ops == OPS.index(name)
    return torch.where(flip & ~unsigned, -1.0, 1.0).double()


def draw_randaugment(n: int, steps: int, magnitude: int, h: int, w: int,
                     gen: torch.Generator) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``steps`` ops per image, each uniform over RAND_OPS (with replacement), all at bin ``magnitude``."""
    table = magnitude_bins("standard", AUTO_BINS, h, w)[:, magnitude]
    chosen = torch.tensor([OPS.index(name) for name in RAND_OPS])
    out = []
    for _ in range(steps):
        ops = chosen[torch.randint(len(RAND_OPS), (n,), generator=gen)]
        out.append((ops, table[ops] * _signs(n, ops, gen)))
    return out


def draw_trivialaugment(n: int, h: int, w: int, gen: torch.Generator) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One op per image, uniform over RAND_OPS, at a bin drawn uniformly from the 31 of the wide ranges."""
    table = magnitude_bins("wide", AUTO_BINS, h, w)
    chosen = torch.tensor([OPS.index(name) for name in RAND_OPS])
    ops = chosen[torch.randint(len(RAND_OPS), (n,), generator=gen)]
    level = torch.randint(AUTO_BINS, (n,), generator=gen)
    return [(ops, table[ops, level] * _signs(n, ops, gen))]


def draw_autoaugment(n: int, h: int, w: int, gen: torch.Generator) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A sub-policy per image; each of its two ops applied with its probability (else Identity)."""
    table = magnitude_bins("standard", AUTOAUGMENT_BINS, h, w)
    op_of = torch.tensor([[OPS.index(step[0]) for step in sub] for sub in IMAGENET_POLICY])  # 25 x 2
    prob_of = torch.tensor([[step[1] for step in sub] for sub in IMAGENET_POLICY], dtype=torch.float64)
    bin_of = torch.tensor([[step[2] or 0 for step in sub] for sub in IMAGENET_POLICY])
    sub = torch.randint(len(IMAGENET_POLICY), (n,), generator=gen)
    probs = torch.rand(n, 2, generator=gen, dtype=torch.float64)
    out = []
    for i in range(2):
        ops = torch.where(probs[:, i] <= prob_of[sub, i], op_of[sub, i], OPS.index("Identity"))
        out.append((ops, table[ops, bin_of[sub, i]] * _signs(n, ops, gen)))
    return out


def draw(policy: AugmentPolicy, n: int, h: int, w: int, gen: torch.Generator) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each image's ops and signed magnitudes, one (ops, magnitudes) pair per step, for ``policy.auto``."""
    if policy.auto == "randaugment":
        return draw_randaugment(n, policy.auto_ops, policy.auto_magnitude, h, w, gen)
    if policy.auto == "trivialaugment":
        return draw_trivialaugment(n, h, w, gen)
    if policy.auto == "autoaugment":
        return draw_autoaugment(n, h, w, gen)
    return []


def auto_augment(x: torch.Tensor, policy: AugmentPolicy, gen: torch.Generator) -> torch.Tensor:
    """``policy.auto`` on a float batch in [0, 1] (N x C x H x W, 1 or 3 channels) on its device; with
    no automatic policy, ``x`` itself comes back."""
    n, _, h, w = x.shape
    for ops, magnitudes in draw(policy, n, h, w, gen):
        x = apply_ops(x, ops, magnitudes)
    return x
