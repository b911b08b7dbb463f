"""The automatic policies (cvkit.transforms.autoaugment, .auto_ops) against torchvision's reference
(torchvision.transforms.autoaugment): every op on real images, the op lists and magnitude bins, and
the per-image draws of the batched versions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import autoaugment as tv

from cvkit.transforms import autoaugment as aa
from cvkit.transforms.auto_ops import OPS, apply_ops
from cvkit.transforms.batch import augment, from_unit, to_unit
from cvkit.transforms.policy import AUTO_POLICIES, make_policy

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"
CPU = torch.device("cpu")


def real_images(mode: str, size: tuple[int, int] = (36, 30)) -> np.ndarray:
    """The sample photos (and, gray, four Fashion-MNIST items), N x H x W x C uint8, H != W."""
    paths = sorted((SAMPLE / "photos").glob("*.jpg"))
    if mode == "L":
        paths += sorted((SAMPLE / "fashion").glob("*/000.png"))[:4]
    out = [np.asarray(Image.open(p).convert(mode).resize(size)) for p in paths]
    return np.stack(out).reshape(len(out), size[1], size[0], -1)


def ours(images: np.ndarray, name: str, magnitude: float) -> np.ndarray:
    n = len(images)
    ops, mags = torch.full((n,), OPS.index(name)), torch.full((n,), float(magnitude), dtype=torch.float64)
    return from_unit(apply_ops(to_unit(torch.from_numpy(images), CPU), ops, mags)).astype(int)


def theirs(images: np.ndarray, name: str, magnitude: float) -> np.ndarray:
    one = [tv._apply_op(torch.from_numpy(im).permute(2, 0, 1).contiguous(), name, float(magnitude),
                        InterpolationMode.NEAREST, None) for im in images]
    return torch.stack(one).permute(0, 2, 3, 1).numpy().astype(int)


EXACT = [("ShearX", 0.3), ("ShearX", -0.99), ("ShearY", 0.2), ("ShearY", -0.5), ("TranslateX", 13.6),
         ("TranslateY", -5.2), ("Rotate", 27.0), ("Rotate", -135.0), ("Posterize", 2), ("Posterize", 6),
         ("Solarize", 0.0), ("Solarize", 110.0), ("Solarize", 246.5), ("Equalize", 0), ("Invert", 0), ("Identity", 0)]
# Blends: torchvision truncates to uint8 after each op (and its gray image before blending), cvkit keeps
# floats until the batch is converted; a grey level apart at most.
BLENDS = [("Brightness", 0.9), ("Brightness", -0.7), ("Color", 0.99), ("Color", -0.6), ("Contrast", 0.5),
          ("Contrast", -0.9), ("Sharpness", 0.9), ("Sharpness", -0.99), ("AutoContrast", 0)]


@pytest.mark.parametrize("mode", ["RGB", "L"])
@pytest.mark.parametrize("name, magnitude", EXACT)
def test_geometric_and_level_ops_match_torchvision_exactly(mode, name, magnitude):
    images = real_images(mode)
    out = ours(images, name, magnitude)
    assert np.array_equal(out, theirs(images, name, magnitude))
    if name != "Identity":
        assert not np.array_equal(out, images)


@pytest.mark.parametrize("mode", ["RGB", "L"])
@pytest.mark.parametrize("name, magnitude", BLENDS)
def test_blends_match_torchvision_within_a_grey_level(mode, name, magnitude):
    images = real_images(mode)
    out, ref = ours(images, name, magnitude), theirs(images, name, magnitude)
    diff = np.abs(out - ref)
    assert diff.max() <= 2 and (diff > 1).mean() < 0.05 and diff.mean() < 1.0, (diff.max(), diff.mean())
    if (name, mode) != ("Color", "L"):  # saturation leaves gray images alone, as torchvision and PIL do
        assert np.abs(out - images).mean() > 2
    else:
        assert np.array_equal(out, images)


def test_op_lists_and_magnitude_bins_are_torchvisions():
    h, w = 30, 36
    spaces = [(aa.magnitude_bins("standard", 31, h, w), tv.RandAugment()._augmentation_space(31, (h, w))),
              (aa.magnitude_bins("wide", 31, h, w), tv.TrivialAugmentWide()._augmentation_space(31)),
              (aa.magnitude_bins("standard", 10, h, w), tv.AutoAugment()._augmentation_space(10, (h, w)))]
    for table, space in spaces:
        for name, (values, _) in space.items():
            expected = values.double() if values.ndim else torch.zeros(table.shape[1], dtype=torch.float64)
            assert torch.allclose(table[OPS.index(name)], expected, atol=1e-4), name
    assert aa.RAND_OPS == tuple(tv.RandAugment()._augmentation_space(31, (h, w)))
    assert aa.RAND_OPS == tuple(tv.TrivialAugmentWide()._augmentation_space(31))
    assert [tuple(map(tuple, sub)) for sub in aa.IMAGENET_POLICY] == tv.AutoAugment()._get_policies(tv.AutoAugmentPolicy.IMAGENET)
    signed = {name for name, (_, s) in tv.RandAugment()._augmentation_space(31, (h, w)).items() if s}
    assert signed == set(aa.RAND_OPS) - set(aa.UNSIGNED) - {"Identity", "AutoContrast", "Equalize"}


def test_a_mixed_batch_is_each_image_through_its_own_op():
    images = real_images("RGB")
    n = len(images)
    names = ["Rotate", "Equalize", "Solarize", "ShearX", "Identity", "Posterize"][:n]
    mags = [20.0, 0, 128.0, -0.2, 0, 3][:n]
    out = from_unit(apply_ops(to_unit(torch.from_numpy(images), CPU), torch.tensor([OPS.index(s) for s in names]),
                              torch.tensor(mags, dtype=torch.float64))).astype(int)
    for i, (name, m) in enumerate(zip(names, mags)):
        assert np.array_equal(out[i], theirs(images[i:i + 1], name, m)[0]), name


def gray_batch(n: int = 64) -> torch.Tensor:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 20, 20, 1), dtype=np.uint8)
    return to_unit(torch.from_numpy(x), CPU)


@pytest.mark.parametrize("name", AUTO_POLICIES)
def test_same_seed_same_batch_other_seed_other_batch(name):
    x, policy = gray_batch(), make_policy({"auto": name})
    a, b = (augment(x, policy, torch.Generator().manual_seed(3)) for _ in range(2))
    c = augment(x, policy, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and a.stride() == x.stride() and 0 <= float(a.min()) and float(a.max()) <= 1


def test_each_image_draws_its_own_ops():
    n = 4096
    gen = torch.Generator().manual_seed(0)
    (ops, mags), = aa.draw_trivialaugment(n, 28, 28, gen)
    counts = torch.bincount(ops, minlength=len(OPS))
    used = [OPS.index(name) for name in aa.RAND_OPS]
    expected = n / len(used)
    assert counts[OPS.index("Invert")] == 0 and all(abs(int(counts[i]) - expected) < 5 * expected**0.5 for i in used)
    rotate = mags[ops == OPS.index("Rotate")]  # uniform bins of 0-135 degrees, either sign
    assert rotate.abs().max() == 135 and len(rotate.abs().unique()) == 31 and 0.4 < (rotate > 0).double().mean() < 0.6
    steps = aa.draw_randaugment(n, 2, 9, 28, 28, gen)
    assert len(steps) == 2 and (steps[0][0] != steps[1][0]).double().mean() > 0.85  # each step drawn anew
    rotate = steps[0][1][steps[0][0] == OPS.index("Rotate")]
    assert set(rotate.abs().tolist()) == {9.0}  # RandAugment: one magnitude, bin 9 of 0-30 degrees
    first, second = aa.draw_autoaugment(n, 28, 28, gen)
    identity = OPS.index("Identity")
    # Each image's sub-policy applies its first op with that op's probability, else nothing.
    skipped = sum(1 - sub[0][1] for sub in aa.IMAGENET_POLICY) / len(aa.IMAGENET_POLICY)
    assert abs(float((first[0] == identity).double().mean()) - skipped) < 0.03
    assert set(OPS[i] for i in first[0].unique().tolist()) == {"Identity", *(s[0][0] for s in aa.IMAGENET_POLICY)}


def test_one_channel_batches_and_every_op_at_once():
    x = gray_batch(256)
    out = augment(x, make_policy({"auto": "randaugment", "auto_ops": 3, "auto_magnitude": 30}),
                  torch.Generator().manual_seed(1))
    changed = (out - x).abs().amax(dim=(1, 2, 3)) > 1e-6
    assert out.shape == x.shape and 0.8 < changed.double().mean() < 1.0  # Identity and Color leave a few alone
    assert torch.equal(augment(x, make_policy({"auto": "randaugment", "auto_ops": 0}), torch.Generator()), x)
