"""The augmentation policy: what ``train`` (and ``crossval``) do to each training batch.

One field per transform, all off by default; ``cvkit augment`` writes a complete policy to
``DATA/augment.json`` and ``train`` applies it batched on the device (``transforms/batch.py``).
The presets are named policies for users who do not want to choose.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from cvkit.checks import finite_fields
from cvkit.errors import OptionError
from cvkit.files.config import HFLIP_HELP, TRANSLATE_HELP, check_flip_and_shift
from cvkit.files.dataset import AugmentFile


# The automatic policies (transforms/autoaugment.py implements them): RandAugment's magnitude is a bin
# of torchvision's 31 (num_magnitude_bins); its op list has 14 ops, drawn with replacement.
AUTO_POLICIES = ("randaugment", "trivialaugment", "autoaugment")
AUTO_BINS = 31
AUTO_MAX_OPS = 14
AUTO_FIELDS = ("auto", "auto_ops", "auto_magnitude")


def _f(default: float, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass
class AugmentPolicy:
    """Every field at its default means no augmentation. Probabilities are per image; magnitudes are
    the largest change, each image drawing its own value uniformly up to it."""

    # geometric
    hflip: float = _f(0.0, HFLIP_HELP)
    vflip: float = _f(0.0, "Probability of a vertical flip (for views from above: cells, satellites; "
                           "not for clothes, digits or faces).")
    rotate: float = _f(0.0, "Largest rotation, degrees either way (keep small for digits: a 6 turned 180 is a 9).")
    translate: float = _f(0.0, TRANSLATE_HELP)
    scale: list[float] = field(default_factory=lambda: [1.0, 1.0], metadata={
        "help": "Zoom range MIN,MAX, e.g. 0.9,1.1 (1,1: off).", "metavar": "MIN,MAX"})
    crop: float = _f(0.0, "Random resized crop: the smallest area kept, as a fraction (0: off; 0.25 is strong), "
                          "aspect ratio 3/4 to 4/3, resized back to the full size.")
    perspective: float = _f(0.0, "Perspective distortion: each corner moves up to this fraction of the size.")
    elastic: float = _f(0.0, "Elastic deformation: largest displacement, as a fraction of the size "
                             "(0.05 suits handwriting).")
    # photometric
    brightness: float = _f(0.0, "Brightness factor drawn from [1 - B, 1 + B].")
    contrast: float = _f(0.0, "Contrast factor drawn from [1 - C, 1 + C].")
    saturation: float = _f(0.0, "Saturation factor drawn from [1 - S, 1 + S] (colour images).")
    hue: float = _f(0.0, "Colour cast: hue turned by up to this fraction of the colour circle, at most 0.5 "
                         "(colour images; not where colour is the class).")
    noise: float = _f(0.0, "Gaussian noise, largest standard deviation on the 0-1 pixel scale.")
    blur: float = _f(0.0, "Gaussian blur, largest sigma in pixels.")
    erase: float = _f(0.0, "Probability of erasing a random rectangle (random erasing, cutout): 2-33% of the "
                           "image, filled with noise.")
    grayscale: float = _f(0.0, "Probability of turning a colour image gray.")
    # mixing (soft targets)
    mixup: float = _f(0.0, "Mixup: blend pairs of images and their labels, weight from Beta(A, A) (0: off; 0.2 "
                           "is usual).")
    cutmix: float = _f(0.0, "CutMix: paste a box of another image, labels weighted by area, Beta(A, A) (0: off; "
                            "1.0 is usual). With --mixup, half the batches each.")
    # automatic policies (transforms/autoaugment.py), applied before the transforms above
    auto: str = field(default="none", metadata={"help": "An automatic policy, applied first: randaugment "
                      "(Cubuk et al. 2019), trivialaugment (TrivialAugment Wide, Muller & Hutter 2021), "
                      "autoaugment (the ImageNet policy of Cubuk et al. 2018), or none.", "metavar": "NAME"})
    auto_ops: int = field(default=2, metadata={"help": "RandAugment: number of ops applied in a row to each "
                          f"image, 0 to {AUTO_MAX_OPS}.", "metavar": "N"})
    auto_magnitude: int = field(default=9, metadata={"help": "RandAugment: magnitude of every op, a bin from 0 "
                                f"to {AUTO_BINS - 1} (torchvision's bins).", "metavar": "M"})

    @property
    def geometric(self) -> bool:
        """Whether a transform that moves pixels (besides the flips) is on."""
        return bool(self.translate or self.rotate or self.scale != [1.0, 1.0] or self.crop or self.perspective
                    or self.elastic)

    @property
    def mixes(self) -> bool:
        return bool(self.mixup or self.cutmix)

    @property
    def active(self) -> dict[str, Any]:
        """The fields that are on, for messages and ``config.json``."""
        default = AugmentPolicy()
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != getattr(default, f.name)}

    def describe(self) -> str:
        on = {k: v for k, v in self.active.items() if k not in AUTO_FIELDS}
        parts = [f"{k} {','.join(f'{x:g}' for x in v) if isinstance(v, list) else f'{v:g}'}" for k, v in on.items()]
        if self.auto == "randaugment":
            parts.insert(0, f"randaugment {self.auto_ops} ops at magnitude {self.auto_magnitude}")
        elif self.auto != "none":
            parts.insert(0, self.auto)
        return ", ".join(parts) or "none"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def check(self, where: str = "") -> "AugmentPolicy":
        """Refuse values that cannot work, naming the option (``where``: the file, when read from one)."""
        at = f"{where}: " if where else ""
        finite_fields(self, where)  # NaN would pass every range check below
        check_flip_and_shift(self.hflip, self.translate, at)
        for name in ("vflip", "erase", "grayscale"):
            if not 0 <= getattr(self, name) <= 1:
                raise OptionError(f"{at}--{name} {getattr(self, name)} must be a probability from 0 to 1")
        for name in ("rotate", "brightness", "contrast", "saturation", "noise", "blur", "mixup", "cutmix", "elastic"):
            if getattr(self, name) < 0:
                raise OptionError(f"{at}--{name} {getattr(self, name)} must be 0 or more")
        if self.rotate > 180:
            raise OptionError(f"{at}--rotate {self.rotate} must be at most 180 degrees")
        for name in ("brightness", "contrast", "saturation"):
            if getattr(self, name) > 1:
                raise OptionError(f"{at}--{name} {getattr(self, name)} must be at most 1 (factors from 0 to 2)")
        if not 0 <= self.hue <= 0.5:
            raise OptionError(f"{at}--hue {self.hue} must be a fraction of the colour circle from 0 to 0.5")
        if not 0 <= self.perspective < 0.5:
            raise OptionError(f"{at}--perspective {self.perspective} must be a fraction from 0 to below 0.5")
        if not 0 <= self.crop < 1:
            raise OptionError(f"{at}--crop {self.crop} must be the smallest area kept, from 0 (off) to below 1")
        lo, hi = self.scale
        if not 0 < lo <= hi <= 4:
            raise OptionError(f"{at}--scale {lo:g},{hi:g} must be MIN,MAX with 0 < MIN <= MAX <= 4 (1,1: off)")
        self._check_auto(at)
        return self

    def _check_auto(self, at: str) -> None:
        if self.auto not in (*AUTO_POLICIES, "none"):
            raise OptionError(f"{at}--auto {self.auto} must be one of {', '.join(AUTO_POLICIES)} or none")
        for name, top in (("auto_ops", AUTO_MAX_OPS), ("auto_magnitude", AUTO_BINS - 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
                raise OptionError(f"{at}--{name.replace('_', '-')} {value} must be a whole number from 0 to {top}")
        default = AugmentPolicy()
        changed = [f"--{k.replace('_', '-')}" for k in ("auto_ops", "auto_magnitude") if getattr(self, k) != getattr(default, k)]
        if changed and self.auto != "randaugment":
            raise OptionError(f"{at}{' and '.join(changed)} set RandAugment's ops and magnitude, and the automatic "
                              f"policy is {self.auto}; add --auto randaugment (or --preset randaugment), or drop them")


# Named policies for users who do not want to choose (cvkit augment --preset; README lists them).
# None of them flips vertically, and all keep labels of photos of objects and clothes; "light" and
# "standard" flip horizontally, which changes the meaning of digits and text: add --hflip 0 there.
PRESETS: dict[str, dict[str, Any]] = {
    "light": {"hflip": 0.5, "translate": 0.0625},
    "standard": {"hflip": 0.5, "translate": 0.1, "rotate": 10.0, "scale": [0.9, 1.1],
                 "brightness": 0.2, "contrast": 0.2, "erase": 0.25},
    "strong": {"hflip": 0.5, "translate": 0.125, "rotate": 15.0, "scale": [0.8, 1.2], "brightness": 0.3,
               "contrast": 0.3, "saturation": 0.3, "hue": 0.05, "blur": 1.0, "erase": 0.5, "cutmix": 1.0},
    # The automatic policies as published, after the horizontal flip their ImageNet training applied
    # (torchvision's references/classification: flip, then the policy).
    "randaugment": {"hflip": 0.5, "auto": "randaugment"},
    "trivialaugment": {"hflip": 0.5, "auto": "trivialaugment"},
    "autoaugment": {"hflip": 0.5, "auto": "autoaugment"},
}


def preset_help() -> str:
    return "; ".join(f"{name}: {AugmentPolicy(**values).describe()}" for name, values in PRESETS.items())


def make_policy(values: dict[str, Any], preset: str | None = None, where: str = "") -> AugmentPolicy:
    """A checked policy from a preset (or nothing) with ``values`` on top; unknown names are refused."""
    base: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise OptionError(f"--preset {preset} must be one of {', '.join(PRESETS)}")
        base = dict(PRESETS[preset])
    known = {f.name for f in fields(AugmentPolicy)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise OptionError(f"{where or 'augmentation'}: unknown augmentation(s) {', '.join(unknown)}; "
                          f"known: {', '.join(sorted(known))}")
    base.update(values)
    if "scale" in base:
        base["scale"] = [float(x) for x in base["scale"]]
    for name in ("auto_ops", "auto_magnitude"):  # a JSON file may hold 2.0 for 2
        if isinstance(base.get(name), float) and base[name].is_integer():
            base[name] = int(base[name])
    return AugmentPolicy(**base).check(where)


def with_values(policy: AugmentPolicy, **values: Any) -> AugmentPolicy:
    return replace(policy, **values).check()


def read_augment(path: str | os.PathLike) -> AugmentPolicy | None:
    """The policy in ``path`` (a dataset directory's augment.json, or a policy file), or None when absent."""
    found = AugmentFile.read(path, {f.name for f in fields(AugmentPolicy)}, text={"auto"})
    return None if found is None else make_policy(found.policy, where=str(found.path))


def write_augment(dataset: str | os.PathLike, policy: AugmentPolicy) -> None:
    AugmentFile(policy.to_json()).write(dataset)
