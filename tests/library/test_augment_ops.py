"""Every transform of the augmentation policy as a batched op (cvkit.transforms.geometric, .photometric,
.mixing through cvkit.transforms.batch): contracts for each field, then what each one means."""

from __future__ import annotations

import math
from dataclasses import fields

import pytest
import torch

from cvkit.transforms import geometric, photometric
from cvkit.transforms.batch import augment, mix
from cvkit.transforms.policy import AUTO_FIELDS, PRESETS, AugmentPolicy

# Each field at a strength where every image changes (probabilities 1), ...
FULL = {
    "hflip": 1.0, "vflip": 1.0, "rotate": 30.0, "translate": 0.25, "scale": [0.6, 0.8], "crop": 0.1,
    "perspective": 0.2, "elastic": 0.1, "brightness": 0.5, "contrast": 0.5, "saturation": 1.0, "hue": 0.5,
    "noise": 0.1, "blur": 2.0, "erase": 1.0, "grayscale": 1.0,
}
# ... and where two seeds must differ (a probability of 1 draws the same flips under every seed).
RANDOM = {**FULL, "hflip": 0.5, "vflip": 0.5, "erase": 0.5, "grayscale": 0.5}
MIXING = {"mixup": 0.4, "cutmix": 1.0}
FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def images(n=8, c=3, h=16, w=16, seed=0, fmt=torch.contiguous_format, dtype=torch.float32):
    x = torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    return x.contiguous(memory_format=fmt)


def run(x, seed=0, **values):
    return augment(x, AugmentPolicy(**values), torch.Generator().manual_seed(seed))


def checkerboard(n=8, c=3, size=32, square=1):
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    board = ((ys // square + xs // square) % 2).float()
    return board.expand(n, c, size, size).contiguous()


def ramp(n=8, size=32):
    """Each pixel's value is its column index: a geometric op's output reads off the source columns."""
    return torch.arange(size, dtype=torch.float32).expand(n, 1, size, size).contiguous()


def at_bounds(monkeypatch, module, end: str) -> None:
    """Make every uniform draw of ``module`` its upper (or lower) bound: exact transforms to test against."""
    monkeypatch.setattr(module, "uniform", lambda n, lo, hi, gen: torch.full((n,), hi if end == "hi" else lo,
                                                                         dtype=torch.float64))


def test_every_policy_field_is_tested():
    # the automatic policies' fields: tests/library/test_autoaugment.py
    assert set(FULL) | set(MIXING) | set(AUTO_FIELDS) == {f.name for f in fields(AugmentPolicy)}


# ------------------------------------------------------------------ contracts, field by field

def gray_from_nhwc(n=8, h=16, w=16, dtype=torch.float32):
    """A 1-channel batch as Preprocess.to_unit makes it: NHWC permuted, so with channels-last strides
    (which convolutions follow) although ``is_contiguous()`` holds too."""
    return torch.rand(n, h, w, 1, generator=torch.Generator().manual_seed(0), dtype=dtype).permute(0, 3, 1, 2)


@pytest.mark.parametrize("fmt", [*FORMATS, "gray_from_nhwc"])
@pytest.mark.parametrize("name", FULL)
def test_keeps_shape_dtype_strides_and_range(name, fmt):
    for dtype in (torch.float32, torch.float64):
        x = gray_from_nhwc(dtype=dtype) if fmt == "gray_from_nhwc" else images(fmt=FORMATS[fmt], dtype=dtype)
        before = x.clone()
        out = run(x, **{name: FULL[name]})
        assert out.shape == x.shape and out.dtype == dtype
        assert out.stride() == x.stride()  # the memory format, down to the strides of a size-1 channel dim
        assert float(out.min()) >= 0 and float(out.max()) <= 1
        assert torch.equal(x, before)  # the input is not modified in place


@pytest.mark.parametrize("name", FULL)
def test_seeded_changes_and_off(name):
    x = images()
    a, b, c = run(x, 3, **{name: RANDOM[name]}), run(x, 3, **{name: RANDOM[name]}), run(x, 4, **{name: RANDOM[name]})
    assert torch.equal(a, b) and not torch.equal(a, c)
    changed = (run(x, **{name: FULL[name]}) - x).abs().amax(dim=(1, 2, 3))
    assert bool((changed > 1e-3).all()), changed  # every image changes at full strength
    off = AugmentPolicy(**{name: [1.0, 1.0] if name == "scale" else 0.0})
    assert torch.equal(augment(x, off, torch.Generator().manual_seed(0)), x)


@pytest.mark.parametrize("name", FULL)
def test_same_result_in_either_memory_format(name):
    x = images()
    plain = run(x, 5, **{name: FULL[name]})
    last = run(x.contiguous(memory_format=torch.channels_last), 5, **{name: FULL[name]})
    assert torch.allclose(plain, last, atol=1e-6)


def test_everything_off_returns_the_batch_itself_and_mixing_is_not_augment():
    x = images()
    assert augment(x, AugmentPolicy(), torch.Generator()) is x
    assert augment(x, AugmentPolicy(mixup=0.4, cutmix=1.0), torch.Generator()) is x


@pytest.mark.parametrize("name", ["saturation", "hue", "grayscale"])
def test_colour_only_ops_leave_one_channel_alone(name):
    x = images(c=1)
    assert torch.equal(run(x, **{name: FULL[name]}), x)


def test_draws_only_from_the_given_generator():
    x = images()
    state = torch.get_rng_state()
    everything = {**FULL, "scale": [0.8, 1.2]}
    out = run(x, **everything)
    assert torch.equal(torch.get_rng_state(), state)  # the global stream (model init, dropout) is untouched
    assert out.shape == x.shape and bool(torch.isfinite(out).all())
    for values in PRESETS.values():
        assert run(x, **values).shape == x.shape


def test_policy_geometric_counts_every_moving_transform():
    assert not AugmentPolicy(hflip=1.0, brightness=0.2).geometric
    for name in ("rotate", "translate", "crop", "perspective", "elastic"):
        assert AugmentPolicy(**{name: FULL[name]}).geometric, name
    assert AugmentPolicy(scale=[0.9, 1.1]).geometric


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", MIXING)
def test_mixing_keeps_shape_format_and_soft_targets(name, fmt):
    x = images(fmt=FORMATS[fmt])
    targets = torch.eye(8)
    policy = AugmentPolicy(**{name: MIXING[name]})
    out, t = mix(x, targets, policy, torch.Generator().manual_seed(1))
    again, _ = mix(x, targets, policy, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.is_contiguous(memory_format=FORMATS[fmt]) and torch.equal(out, again)
    assert not torch.equal(out, x)
    assert torch.allclose(t.sum(1), torch.ones(8)) and bool((t >= 0).all())


# ------------------------------------------------------------------ what each transform means

def test_rotate_180_flips_both_axes_and_90_turns(monkeypatch):
    at_bounds(monkeypatch, geometric, "hi")
    x = images(h=12, w=12)
    assert torch.allclose(run(x, rotate=180.0), x.flip(2, 3), atol=1e-4)
    assert torch.allclose(run(x, rotate=90.0), torch.rot90(x, 1, (2, 3)), atol=1e-4)


def test_flips_and_whole_pixel_shift_combine_exactly():
    x = images(n=64, c=2, h=6, w=7) + 0.01  # no zeros in the input: zeros mark pixels shifted in
    out = run(x, hflip=1.0, vflip=1.0, translate=0.25)  # shifts up to 2 pixels either way
    flipped = x.flip(2, 3)
    for i in range(len(x)):
        matches = []
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                moved = torch.zeros_like(flipped[i])
                moved[:, max(dy, 0):6 + min(dy, 0), max(dx, 0):7 + min(dx, 0)] = \
                    flipped[i][:, max(-dy, 0):6 + min(-dy, 0), max(-dx, 0):7 + min(-dx, 0)]
                matches.append(torch.equal(out[i], moved))
        assert sum(matches) == 1, i


def test_scale_magnifies_about_the_centre():
    x = ramp(size=32)
    out = run(x, scale=[2.0, 2.0])
    slope = out[:, 0, 16, 9:23].diff().mean()
    assert slope == pytest.approx(0.5, abs=1e-4)  # twice the size: half a source pixel per output pixel
    assert float(out[:, 0, 16, 15:17].mean()) == pytest.approx(15.5, abs=1e-3)  # the centre stays put


def test_crop_zooms_in():
    board = checkerboard(n=16, square=2)
    out = run(board, crop=0.1)

    def edges(t):
        return (t[..., 1:] - t[..., :-1]).abs().gt(0.5).float().sum(dim=(1, 2, 3))

    # Bigger squares: fewer sharp edges (a box near the whole image keeps about as many).
    assert bool((edges(out) <= edges(board)).all()) and float(edges(out).mean()) < 0.7 * float(edges(board).mean())
    assert float((out > 0.5).float().mean()) == pytest.approx(0.5, abs=0.1)  # no zero border comes in


def test_perspective_moves_corners_by_at_most_the_fraction():
    x = ramp(n=32, size=40)
    out = run(x, perspective=0.1)
    centre = out[:, 0, 16:24, 16:24] - x[:, 0, 16:24, 16:24]
    assert float(centre.abs().max()) <= 0.1 * 40 * 2  # source moves are bounded by the corners' moves
    assert float(centre.abs().max()) > 0.5
    neighbours = out[:, 0, 8:32, 9:32] - out[:, 0, 8:32, 8:31]  # a smooth warp: slope stays near 1
    assert 0.5 < float(neighbours.min()) and float(neighbours.max()) < 1.5
    assert float(out.mean()) == pytest.approx(float(x.mean()), rel=0.1)


def test_elastic_is_a_smooth_displacement_up_to_the_fraction():
    size, fraction = 48, 0.05
    x = ramp(n=32, size=size)
    out = run(x, elastic=fraction)
    margin = 4  # beyond the largest displacement (2.4 px): no zeros from outside
    shift = out[:, 0, margin:-margin, margin:-margin] - x[:, 0, margin:-margin, margin:-margin]
    largest = shift.abs().amax(dim=(1, 2))
    assert float(largest.max()) <= fraction * size + 1e-3 and float(largest.max()) > 0.5 * fraction * size
    # Neighbours move together: a smooth field (unsmoothed noise would differ by up to twice the largest).
    assert float(shift.diff(dim=2).abs().max()) < 0.25 * fraction * size
    assert float(shift.mean()) == pytest.approx(0.0, abs=0.1)


def test_brightness_multiplies():
    x = images() * (torch.rand(8, 1, 16, 16, generator=torch.Generator().manual_seed(2)) > 0.3)
    out = run(x, brightness=0.5)
    assert torch.equal(out[x == 0], torch.zeros_like(out[x == 0]))  # black stays black
    ratio = (out / x.clamp(min=1e-6))[(x > 0.1) & (x < 0.6)].view(-1)
    factors = (out.flatten(1).amax(1) / x.flatten(1).amax(1))
    assert bool(((factors > 0.5 - 1e-5) & (factors < 1.5 + 1e-5)).all()) and float(factors.std()) > 0.05
    assert float(ratio.min()) >= 0.5 - 1e-5 and float(ratio.max()) <= 1.5 + 1e-5


def test_contrast_keeps_the_mean_gray_and_scales_spread():
    x = 0.4 + 0.2 * images()  # in [0.4, 0.6]: no clipping at any factor up to 2
    out = run(x, contrast=1.0)
    luma = torch.tensor(photometric.LUMA).view(1, 3, 1, 1)
    assert torch.allclose((out * luma).sum(1).mean(dim=(1, 2)), (x * luma).sum(1).mean(dim=(1, 2)), atol=1e-5)
    spread = out.std(dim=(1, 2, 3)) / x.std(dim=(1, 2, 3))
    assert float(spread.min()) < 0.8 and float(spread.max()) > 1.2


def test_saturation_zero_is_the_grayscale_image(monkeypatch):
    x = images()
    at_bounds(monkeypatch, photometric, "lo")  # saturation factor 1 - 1.0 = 0
    assert torch.allclose(run(x, saturation=1.0), run(x, grayscale=1.0), atol=1e-6)


def test_grayscale_gives_equal_channels_of_the_luma():
    x = images()
    out = run(x, grayscale=1.0)
    luma = (x * torch.tensor(photometric.LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)
    assert torch.allclose(out, luma.expand_as(x), atol=1e-6)


def test_hue_turns_colours_but_leaves_gray_and_luma_alone():
    gray = images(c=1).expand(8, 3, 16, 16).contiguous()
    assert torch.allclose(run(gray, hue=0.5), gray, atol=1e-5)
    x = 0.3 + 0.4 * images()  # away from the clamp
    out = run(x, hue=0.25)
    luma = torch.tensor(photometric.LUMA).view(1, 3, 1, 1)
    assert torch.allclose((out * luma).sum(1), (x * luma).sum(1), atol=1e-5)  # YIQ's Y is kept
    assert float((out - x).abs().mean()) > 0.01


def test_hue_half_turn_is_the_complementary_colour(monkeypatch):
    at_bounds(monkeypatch, photometric, "hi")  # a turn of 180 degrees
    red = torch.tensor([0.6, 0.4, 0.4]).view(1, 3, 1, 1).expand(1, 3, 4, 4).contiguous()
    out = run(red, hue=0.5)[0, :, 0, 0]
    assert float(out[0]) < float(out[1]) and float(out[0]) < float(out[2])  # red turns cyan


def test_noise_adds_spread_up_to_the_std():
    x = torch.full((64, 1, 32, 32), 0.5)
    out = run(x, noise=0.2)
    std = out.std(dim=(1, 2, 3))
    assert float(std.max()) <= 0.2 * 1.1 and float(std.mean()) == pytest.approx(0.1, abs=0.03)
    assert float(out.mean()) == pytest.approx(0.5, abs=0.01)


def test_blur_lowers_high_frequencies():
    board = checkerboard(n=16)
    out = run(board, blur=2.0)

    def energy(t):  # of the discrete Laplacian, away from the borders
        lap = 4 * t[..., 1:-1, 1:-1] - t[..., :-2, 1:-1] - t[..., 2:, 1:-1] - t[..., 1:-1, :-2] - t[..., 1:-1, 2:]
        return lap[..., 4:-4, 4:-4].pow(2).mean(dim=(1, 2, 3))

    assert bool((energy(out) <= energy(board) * 1.0001).all())  # a low-pass filter: never sharper
    assert float(energy(out).mean()) < 0.5 * float(energy(board).mean())
    assert torch.allclose(out.mean(dim=(1, 2, 3)), board.mean(dim=(1, 2, 3)), atol=0.02)


def test_erase_changes_one_rectangle_only():
    x = torch.full((32, 3, 20, 20), 0.5)
    out = run(x, erase=1.0)
    for i in range(len(x)):
        changed = (out[i] != x[i]).any(0)
        rows, cols = changed.any(1).nonzero().view(-1), changed.any(0).nonzero().view(-1)
        box = torch.zeros_like(changed)
        box[rows.min():rows.max() + 1, cols.min():cols.max() + 1] = True
        assert torch.equal(changed, box), i  # one solid rectangle
        assert 0.015 <= float(changed.float().mean()) <= 0.4
    assert float(out[out != 0.5].std()) == pytest.approx(1 / math.sqrt(12), abs=0.02)  # uniform fill
