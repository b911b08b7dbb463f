"""Batched on-device preprocessing and augmentation (cvkit.transforms.batch), the loader, the schedules."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cvkit.device import resolve_device
from cvkit.errors import DeviceUnavailable, ManifestError
from cvkit.data.batches import Batches
from cvkit.train.optim import lr_multiplier
from cvkit.transforms.batch import Preprocess, augment, mix
from cvkit.transforms.policy import AugmentPolicy, read_augment


def batch(n=64, h=8, w=10, c=1, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, h, w, c), dtype=np.uint8))


def test_preprocess_scales_normalizes_and_is_channels_last():
    x = batch(c=3)
    pre = Preprocess([0.5, 0.25, 0.0], [0.5, 0.25, 1.0], torch.device("cpu"))
    out = pre(x)
    assert out.shape == (64, 3, 8, 10) and out.is_contiguous(memory_format=torch.channels_last)
    expected = (x.permute(0, 3, 1, 2).float() / 255 - torch.tensor([0.5, 0.25, 0.0]).view(1, 3, 1, 1)) \
        / torch.tensor([0.5, 0.25, 1.0]).view(1, 3, 1, 1)
    assert torch.allclose(out, expected, atol=1e-6)
    assert Preprocess([0.5], [0.5], torch.device("cpu"), channels_last=False)(batch()).is_contiguous()


def test_flip_all_or_nothing():
    x = batch().permute(0, 3, 1, 2).float() / 255
    g = torch.Generator().manual_seed(0)
    assert torch.equal(augment(x, AugmentPolicy(hflip=1.0), g), x.flip(3))
    assert torch.equal(augment(x, AugmentPolicy(vflip=1.0), g), x.flip(2))
    assert torch.equal(augment(x, AugmentPolicy(), g), x)


def test_translate_is_a_whole_pixel_shift_with_zero_padding():
    x = batch(n=200).permute(0, 3, 1, 2).float() / 255 + 0.01  # no zero pixels in the input
    out = augment(x, AugmentPolicy(translate=0.25), torch.Generator().manual_seed(1))
    shifts = set()
    for i in range(len(x)):
        found = None
        for dy in range(-2, 3):
            for dx in range(-3, 4):  # 0.25 of 8 x 10 -> up to 2 and 3 pixels (rounded)
                shifted = torch.zeros_like(x[i])
                ys, yd = (slice(0, 8 - dy), slice(dy, 8)) if dy >= 0 else (slice(-dy, 8), slice(0, 8 + dy))
                xs, xd = (slice(0, 10 - dx), slice(dx, 10)) if dx >= 0 else (slice(-dx, 10), slice(0, 10 + dx))
                shifted[:, yd, xd] = x[i][:, ys, xs]
                if torch.allclose(out[i], shifted):
                    found = (dy, dx)
        assert found is not None, i
        shifts.add(found)
    assert len(shifts) > 10  # many different shifts were drawn


def test_augmentation_is_seeded():
    x = batch(c=3).permute(0, 3, 1, 2).float() / 255
    policy = AugmentPolicy(hflip=0.5, rotate=15, scale=[0.9, 1.1], translate=0.1, brightness=0.2, contrast=0.2)
    a = augment(x, policy, torch.Generator().manual_seed(3))
    b = augment(x, policy, torch.Generator().manual_seed(3))
    c = augment(x, policy, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and float(a.min()) >= 0 and float(a.max()) <= 1


@pytest.mark.parametrize("policy", [AugmentPolicy(mixup=0.4), AugmentPolicy(cutmix=1.0)])
def test_mixup_and_cutmix_mix_targets_like_pixels(policy):
    torch.manual_seed(0)
    x = torch.stack([torch.full((1, 8, 8), float(i)) for i in range(4)])  # image i is all i
    targets = torch.eye(4)
    mixed, t = mix(x, targets, policy, torch.Generator().manual_seed(0))
    assert torch.allclose(t.sum(1), torch.ones(4))
    # each image's mean is the target-weighted mean of the source values
    assert torch.allclose(mixed.mean(dim=(1, 2, 3)), t @ torch.arange(4.0), atol=1e-5)


def test_read_augment(tmp_path):
    assert read_augment(tmp_path) is None
    (tmp_path / "augment.json").write_text(json.dumps({"format": 1, "policy": {"hflip": 0.5, "rotate": 10}}))
    assert read_augment(tmp_path) == AugmentPolicy(hflip=0.5, rotate=10.0)
    (tmp_path / "augment.json").write_text(json.dumps({"format": 1, "policy": {"twirl": 1}}))
    with pytest.raises(ManifestError, match="unknown augmentation"):
        read_augment(tmp_path)


@pytest.mark.parametrize("resident", [True, False])
def test_batches_cover_the_split_once(resident, monkeypatch):
    import cvkit.data.batches as loader

    if not resident:
        monkeypatch.setitem(loader.RESIDENT_BYTES, "cpu", 0)
    images = np.arange(50, dtype=np.uint8).reshape(50, 1, 1, 1).repeat(2, axis=1)
    labels = np.arange(50)
    b = Batches(images, labels, 8, torch.device("cpu"), shuffle=True)
    assert b.resident is resident and len(b) == 7
    seen = []
    for x, y in b.epoch(torch.Generator().manual_seed(0)):
        assert torch.equal(x[:, 0, 0, 0].long(), y)  # images and labels stay paired
        seen += y.tolist()
    assert sorted(seen) == list(range(50)) and seen != list(range(50))
    dropped = Batches(images, labels, 8, torch.device("cpu"), shuffle=True, drop_last=True)
    assert len(dropped) == 6 and sum(len(y) for _, y in dropped.epoch()) == 48
    shard = Batches(images, labels, 8, torch.device("cpu"), shuffle=False, rank=1, world_size=2)
    assert [v for _, y in shard.epoch() for v in y.tolist()] == list(range(1, 50, 2))


def test_schedules():
    one = lr_multiplier("onecycle", 100, 10)
    assert one(0) == pytest.approx(1 / 25) and one(25) == pytest.approx(1.0) and one(100) == 0.0
    cos = lr_multiplier("cosine", 100, 10, warmup_steps=10)
    assert cos(0) == pytest.approx(0.1) and cos(10) == pytest.approx(1.0) and cos(55) == pytest.approx(0.5)
    step = lr_multiplier("step", 100, 10, step_size=3, gamma=0.1)
    assert step(29) == 1.0 and step(30) == pytest.approx(0.1) and step(60) == pytest.approx(0.01)
    assert lr_multiplier("none", 100, 10)(50) == 1.0


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceUnavailable, match="--device cuda: no CUDA device"):
            resolve_device("cuda")
