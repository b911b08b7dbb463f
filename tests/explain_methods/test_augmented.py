"""Augmented Grad-CAM on a net trained on generated shapes (tests/shapes.py): maps of the input's
size, sharper than one Grad-CAM upsampled, still on the object; and the solver's pieces."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from scipy import ndimage

from cvkit.explain import augmented
from cvkit.explain.methods import class_maps
from cvkit.runtime import load_run

PER_CLASS = 10  # 30 images: the last ten of each shape


@pytest.fixture(scope="module")
def shapes_batch(shapes_run, shapes):
    """The trained run, 30 normalized shape images and their true boxes (x0, y0, x1, y1)."""
    run = load_run(shapes_run, torch.device("cpu"))
    boxes = pd.read_csv(shapes / "boxes.csv")
    chosen = pd.concat([boxes[boxes.path.str.contains(f"/{kind}/")].tail(PER_CLASS)
                        for kind in ("disc", "square", "cross")])
    images = np.stack([np.asarray(Image.open(shapes / p).convert("RGB")) for p in chosen.path])
    return run, run.pre(torch.from_numpy(images)), chosen[["x0", "y0", "x1", "y1"]].to_numpy()


@pytest.fixture(scope="module")
def maps(shapes_batch):
    run, x, _ = shapes_batch
    return {method: class_maps(run.model, x, "features.1", None, method) for method in
            ("cam", "gradcam", "augmented-gradcam")}


def peak_in_box(maps: torch.Tensor, boxes: np.ndarray) -> float:
    """The pointing game: the share of maps whose maximum lies inside the true box."""
    flat = maps.flatten(1).argmax(1).numpy()
    ys, xs = flat // maps.shape[-1], flat % maps.shape[-1]
    return float(np.mean((boxes[:, 0] <= xs) & (xs < boxes[:, 2]) & (boxes[:, 1] <= ys) & (ys < boxes[:, 3])))


def box_iou(m: np.ndarray, true: np.ndarray, threshold: float = 0.2) -> float:
    """IoU of the box around the largest region above ``threshold`` of the map's max with the true box."""
    labels, count = ndimage.label(m >= threshold * m.max())
    sizes = ndimage.sum(np.ones_like(m), labels, range(1, count + 1))
    ys, xs = np.nonzero(labels == 1 + int(np.argmax(sizes)))
    box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    inter = max(0, min(box[2], true[2]) - max(box[0], true[0])) * max(0, min(box[3], true[3]) - max(box[1], true[1]))
    union = (box[2] - box[0]) * (box[3] - box[1]) + (true[2] - true[0]) * (true[3] - true[1]) - inter
    return inter / union


def high_frequency_share(maps: torch.Tensor) -> float:
    """The mean share of each map's 2-D spectral power (mean removed) above a quarter of Nyquist."""
    m = maps.numpy() - maps.numpy().mean((1, 2), keepdims=True)
    power = np.abs(np.fft.fft2(m)) ** 2
    fy, fx = np.fft.fftfreq(m.shape[1])[:, None], np.fft.fftfreq(m.shape[2])[None]
    high = np.hypot(fy, fx) > 0.5 / 4
    return float(np.mean((power * high).sum((1, 2)) / power.sum((1, 2))))


def test_cam_and_gradcam_peaks_lie_on_the_shape(shapes_batch, maps):
    _, _, boxes = shapes_batch
    for method in ("cam", "gradcam"):
        assert peak_in_box(maps[method].maps, boxes) >= 0.8, method


def test_augmented_gradcam_is_input_sized_sharper_and_still_on_the_shape(shapes_batch, maps):
    _, x, boxes = shapes_batch
    aug, single = maps["augmented-gradcam"], maps["gradcam"]
    assert aug.maps.shape == (len(x), 32, 32) and aug.maps.dtype == torch.float32
    assert torch.equal(aug.targets, single.targets) and torch.allclose(aug.logits, single.logits)
    assert high_frequency_share(aug.maps) > 1.5 * high_frequency_share(single.maps)
    assert peak_in_box(aug.maps, boxes) >= 0.8
    ious = {m: np.mean([box_iou(r.maps[i].numpy(), boxes[i]) for i in range(len(x))]) for m, r in maps.items()}
    assert ious["augmented-gradcam"] >= ious["gradcam"] - 0.05, ious


def test_one_unaugmented_copy_without_steps_is_gradcam_upsampled(shapes_batch, maps):
    run, x, _ = shapes_batch
    plain = class_maps(run.model, x[:6], "features.1", None, "augmented-gradcam", augmentations=1, steps=0)
    assert torch.allclose(plain.maps, maps["gradcam"].maps[:6], atol=1e-5)


def test_same_seed_same_map_and_layer_resolution_on_request(shapes_batch):
    run, x, _ = shapes_batch
    targets = torch.tensor([2, 1, 0])
    first = class_maps(run.model, x[:3], "features.1", targets, "augmented-gradcam", augmentations=5, steps=20)
    again = class_maps(run.model, x[:3], "features.1", targets, "augmented-gradcam", augmentations=5, steps=20)
    other = class_maps(run.model, x[:3], "features.1", targets, "augmented-gradcam", augmentations=5, steps=20, seed=1)
    assert torch.equal(first.maps, again.maps) and not torch.equal(first.maps, other.maps)
    assert torch.equal(first.targets, targets)
    small = class_maps(run.model, x[:3], "features.1", targets, "augmented-gradcam", upsample=False, augmentations=3,
                       steps=5, batch_size=2)
    assert small.maps.shape == (3, 8, 8)


def test_dense_operator_is_the_warp_and_pool_it_replaces(monkeypatch):
    torch.manual_seed(0)
    low = torch.rand(3, 6, 4, 5)
    theta = augmented.random_affines(6, (20, 24), (5.0, 4.8), 0, torch.device("cpu"))
    dense = augmented.super_resolve(low, theta, (20, 24), steps=30)
    monkeypatch.setattr(augmented, "DENSE_LIMIT", 0)
    warped = augmented.super_resolve(low, theta, (20, 24), steps=30)
    assert dense.shape == (3, 20, 24) and float(dense.min()) >= 0
    assert torch.allclose(dense, warped, atol=1e-4)


def test_affines_start_with_the_identity_turn_rigidly_and_invert():
    size, stride = (32, 64), (4.0, 8.0)
    theta = augmented.random_affines(12, size, stride, 3, torch.device("cpu"))
    assert torch.allclose(theta[0], torch.tensor([[1.0, 0, 0], [0, 1, 0]]))
    half = torch.tensor([size[1] / 2, size[0] / 2])
    pixels = theta[:, :, :2] * half.view(1, 2, 1) / half.view(1, 1, 2)  # back to pixel units
    assert torch.allclose(pixels @ pixels.transpose(1, 2), torch.eye(2).expand(12, 2, 2), atol=1e-5)  # rotations, flips
    angles = torch.rad2deg(torch.atan2(pixels[:, 1, 0], pixels[:, 1, 1]).abs())
    assert float(angles.max()) <= augmented.MAX_DEGREES + 1e-4
    shifts = theta[:, :, 2] * half
    assert (shifts.abs() <= torch.tensor([stride[1], stride[0]]) / 2 + 1e-4).all()
    full = torch.cat([theta, torch.tensor([[[0.0, 0, 1]]]).expand(12, 1, 3)], 1)
    inverse = torch.cat([augmented.invert_affines(theta), full[:, 2:]], 1)
    assert torch.allclose(full @ inverse, torch.eye(3).expand(12, 3, 3), atol=1e-5)
    assert math.isclose(float((pixels[:, 0, 0] < 0).float().mean()), 0.5, abs_tol=0.35)  # some flipped, some not


def test_super_resolution_recovers_sharp_squares_from_shifted_low_resolution_views():
    """Known maps (squares at 32 px), seen through the K warps and pooled to 8 x 8 as a stride-4
    layer would: the solution is far closer to them than one view upsampled, and exact without TV."""
    import torch.nn.functional as F

    truth = torch.zeros(4, 32, 32)
    for i, (y, x, side) in enumerate([(5, 9, 7), (13, 2, 9), (20, 18, 6), (8, 21, 10)]):
        truth[i, y:y + side, x:x + side] = 1
    theta = augmented.random_affines(16, (32, 32), (4.0, 4.0), 0, torch.device("cpu"))
    grids = F.affine_grid(theta, [16, 1, 32, 32], align_corners=False)
    low = F.interpolate(augmented.warp(truth[None].expand(16, -1, -1, -1), grids), size=(8, 8), mode="area")
    low = low.transpose(0, 1)  # (N, K, h, w)
    upsampled = F.interpolate(low[:, :1], size=(32, 32), mode="bilinear", align_corners=False)[:, 0]
    solved = augmented.super_resolve(low, theta, (32, 32))
    assert float((solved - truth).abs().mean()) < 0.4 * float((upsampled - truth).abs().mean())
    exact = augmented.super_resolve(low, theta, (32, 32), tv=0.0, steps=300)
    assert float((exact - truth).abs().mean()) < 0.005
