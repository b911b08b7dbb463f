"""The augmentation policy: what ``train`` (and ``crossval``) do to each training batch.

One field per transform, all off by default; ``cvkit augment`` writes a complete policy to
``DATA/augment.json`` and ``train`` applies it batched on the device (``transforms/batch.py``).
The presets are named policies for users who do not want to choose.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from cvkit.errors import OptionError
from cvkit.files.dataset import AugmentFile


@dataclass
class AugmentPolicy:
    """Every field at its default means no augmentation. Probabilities are per image; magnitudes are
    the largest change, each image drawing its own value uniformly up to it."""

    # geometric
    hflip: float = 0.0  # probability of a horizontal flip
    vflip: float = 0.0  # probability of a vertical flip
    rotate: float = 0.0  # largest rotation, degrees either way
    translate: float = 0.0  # largest shift, as a fraction of the image size
    scale: list[float] = field(default_factory=lambda: [1.0, 1.0])  # zoom range [min, max]; 1,1 is off
    crop: float = 0.0  # random resized crop: smallest area kept, as a fraction (0 off; 0.25 is strong)
    perspective: float = 0.0  # perspective distortion: corners move up to this fraction of the size
    elastic: float = 0.0  # elastic deformation: largest displacement, as a fraction of the size
    # photometric
    brightness: float = 0.0  # brightness factor drawn from [1 - b, 1 + b]
    contrast: float = 0.0  # contrast factor drawn from [1 - c, 1 + c]
    saturation: float = 0.0  # saturation factor drawn from [1 - s, 1 + s] (colour images only)
    hue: float = 0.0  # hue rotation up to this fraction of the colour circle (at most 0.5)
    noise: float = 0.0  # Gaussian noise, largest standard deviation on the [0, 1] pixel scale
    blur: float = 0.0  # Gaussian blur, largest sigma in pixels
    erase: float = 0.0  # probability of erasing a random rectangle (random erasing / cutout)
    grayscale: float = 0.0  # probability of turning a colour image gray
    # mixing (soft targets)
    mixup: float = 0.0  # Beta(alpha, alpha) of mixup; 0: off
    cutmix: float = 0.0  # Beta(alpha, alpha) of cutmix; 0: off

    @property
    def geometric(self) -> bool:
        return bool(self.translate or self.rotate or self.scale != [1.0, 1.0])

    @property
    def mixes(self) -> bool:
        return bool(self.mixup or self.cutmix)

    @property
    def active(self) -> dict[str, Any]:
        """The fields that are on, for messages and ``config.json``."""
        default = AugmentPolicy()
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != getattr(default, f.name)}

    def describe(self) -> str:
        on = self.active
        if not on:
            return "none"
        return ", ".join(f"{k} {','.join(f'{x:g}' for x in v) if isinstance(v, list) else f'{v:g}'}" for k, v in on.items())

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def check(self, where: str = "") -> "AugmentPolicy":
        """Refuse values that cannot work, naming the option (``where``: the file, when read from one)."""
        at = f"{where}: " if where else ""
        for name in ("hflip", "vflip", "erase", "grayscale"):
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
        if not 0 <= self.translate < 0.5:
            raise OptionError(f"{at}--translate {self.translate} must be a fraction from 0 to below 0.5")
        if not 0 <= self.hue <= 0.5:
            raise OptionError(f"{at}--hue {self.hue} must be a fraction of the colour circle from 0 to 0.5")
        if not 0 <= self.perspective < 0.5:
            raise OptionError(f"{at}--perspective {self.perspective} must be a fraction from 0 to below 0.5")
        if not 0 <= self.crop < 1:
            raise OptionError(f"{at}--crop {self.crop} must be the smallest area kept, from 0 (off) to below 1")
        lo, hi = self.scale
        if not 0 < lo <= hi <= 4:
            raise OptionError(f"{at}--scale {lo:g},{hi:g} must be MIN,MAX with 0 < MIN <= MAX <= 4 (1,1: off)")
        return self


# Named policies for users who do not want to choose (cvkit augment --preset; README lists them).
# None of them flips vertically, and all keep labels of photos of objects and clothes; "light" and
# "standard" flip horizontally, which changes the meaning of digits and text: add --hflip 0 there.
PRESETS: dict[str, dict[str, Any]] = {
    "light": {"hflip": 0.5, "translate": 0.0625},
    "standard": {"hflip": 0.5, "translate": 0.1, "rotate": 10.0, "scale": [0.9, 1.1],
                 "brightness": 0.2, "contrast": 0.2, "erase": 0.25},
    "strong": {"hflip": 0.5, "translate": 0.125, "rotate": 15.0, "scale": [0.8, 1.2], "brightness": 0.3,
               "contrast": 0.3, "saturation": 0.3, "hue": 0.05, "blur": 1.0, "erase": 0.5, "cutmix": 1.0},
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
    return AugmentPolicy(**base).check(where)


def with_values(policy: AugmentPolicy, **values: Any) -> AugmentPolicy:
    return replace(policy, **values).check()


def read_augment(path: str | os.PathLike) -> AugmentPolicy | None:
    """The policy in ``path`` (a dataset directory's augment.json, or a policy file), or None when absent."""
    found = AugmentFile.read(path, {f.name for f in fields(AugmentPolicy)})
    return None if found is None else make_policy(found.policy, where=str(found.path))


def write_augment(dataset: str | os.PathLike, policy: AugmentPolicy) -> None:
    AugmentFile(policy.to_json()).write(dataset)
