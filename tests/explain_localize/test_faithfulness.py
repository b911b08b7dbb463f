"""Deletion / insertion / average drop: exact on a toy model, and telling on the trained shapes model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from cvkit.errors import OptionError
from cvkit.explain.faithfulness import FaithfulnessResult, faithfulness, gaussian_blur


class Brightness(nn.Module):
    """Two classes; the logit of class 1 is the mean of a fixed pixel region (a known 'object')."""

    def __init__(self, h: int = 8, w: int = 8) -> None:
        super().__init__()
        self.region = torch.zeros(1, 1, h, w)
        self.region[..., 2:5, 3:6] = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = (x * self.region).sum(dim=(1, 2, 3)) / self.region.sum() * 4
        return torch.stack([torch.zeros_like(score), score], dim=1)


def toy(n: int = 5, seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, 8, 8, generator=g) * 0.2 + 0.5
    model = Brightness()
    maps = torch.rand(n, 8, 8, generator=g)
    return model, x, maps


def test_curves_are_exact_on_a_toy_model():
    model, x, maps = toy()
    targets = torch.ones(5, dtype=torch.long)
    r = faithfulness(model, x, maps, targets, "ce", steps=4, batch_size=3, blur_sigma=1.0)
    assert r.deletion_curve.shape == r.insertion_curve.shape == (5, 5)
    assert r.deletion_auc.shape == r.insertion_auc.shape == r.drop.shape == r.increase.shape == (5,)
    p = torch.softmax(model(x), 1)[:, 1].double().numpy()
    np.testing.assert_allclose(r.deletion_curve[:, 0], p, rtol=1e-6)  # nothing deleted: the image itself
    np.testing.assert_allclose(r.insertion_curve[:, -1], p, rtol=1e-6)  # everything inserted: the image
    np.testing.assert_allclose(r.deletion_curve[:, -1], 0.5, rtol=1e-6)  # all at the baseline 0: logit 0
    blurred_p = torch.softmax(model(gaussian_blur(x, 1.0)), 1)[:, 1].double().numpy()
    np.testing.assert_allclose(r.insertion_curve[:, 0], blurred_p, rtol=1e-6)
    np.testing.assert_allclose(r.deletion_auc, np.trapezoid(r.deletion_curve, dx=0.25, axis=1), rtol=1e-6)
    np.testing.assert_allclose(r.insertion_auc, np.trapezoid(r.insertion_curve, dx=0.25, axis=1), rtol=1e-6)
    # step 2 deletes the 32 pixels of highest map value (half of 64), by hand:
    for i in range(5):
        keep = torch.ones(64)
        keep[torch.argsort(maps[i].flatten(), descending=True, stable=True)[:32]] = 0
        by_hand = torch.softmax(model((x[i] * keep.view(1, 8, 8))[None]), 1)[0, 1]
        assert r.deletion_curve[i, 2] == pytest.approx(float(by_hand), rel=1e-6)
    masked = torch.softmax(model(x * maps[:, None]), 1)[:, 1].double().numpy()
    np.testing.assert_allclose(r.masked_probability, masked, rtol=1e-6)
    np.testing.assert_allclose(r.drop, np.maximum(0, p - masked) / p * 100, rtol=1e-5)
    np.testing.assert_array_equal(r.increase, masked > p)


def test_chunking_does_not_change_the_result():
    model, x, maps = toy(7, seed=1)
    targets = torch.tensor([0, 1, 1, 0, 1, 0, 1])
    a = faithfulness(model, x, maps, targets, "bce", steps=6, batch_size=1)
    b = faithfulness(model, x, maps, targets, "bce", steps=6, batch_size=100)
    for key in ("deletion_curve", "insertion_curve", "drop", "masked_probability"):
        np.testing.assert_allclose(getattr(a, key), getattr(b, key), rtol=1e-6)


def test_the_object_region_beats_its_complement_on_a_toy_model():
    model, noise, _ = toy()
    x = noise - 0.5 + 2 * model.region  # a bright object where the model looks
    good = model.region[0, 0].expand(5, -1, -1)
    targets = torch.ones(5, dtype=torch.long)
    right = faithfulness(model, x, good, targets, "ce", blur_sigma=2.0)
    wrong = faithfulness(model, x, 1 - good, targets, "ce", blur_sigma=2.0)
    assert (right.deletion_auc < wrong.deletion_auc).all()
    assert (right.insertion_auc > wrong.insertion_auc).all()
    assert (right.drop < wrong.drop).all()


def test_summary_and_per_image():
    model, x, maps = toy()
    r = faithfulness(model, x, maps, torch.ones(5, dtype=torch.long), "ce", steps=5)
    per = r.per_image()
    assert set(per) == {"deletion_auc", "insertion_auc", "average_drop", "increase_in_confidence"}
    assert set(per["increase_in_confidence"].tolist()) <= {0.0, 100.0}
    summary = r.summary()
    assert summary["count"] == 5
    assert summary["average_drop"] == pytest.approx(float(r.drop.mean()))
    assert summary["increase_in_confidence"] == pytest.approx(100 * float(r.increase.mean()))
    assert isinstance(r, FaithfulnessResult)


def test_gaussian_blur_keeps_flat_images_and_smooths_others():
    flat = torch.full((2, 3, 9, 5), 0.7)
    torch.testing.assert_close(gaussian_blur(flat, 3.0), flat)
    noise = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    blurred = gaussian_blur(noise, 2.0)
    assert blurred.shape == noise.shape and blurred.std() < noise.std() / 3
    assert gaussian_blur(torch.randn(1, 1, 1, 4), 50.0).shape == (1, 1, 1, 4)  # kernel cut at the side


def test_bad_arguments():
    model, x, maps = toy()
    t = torch.ones(5, dtype=torch.long)
    with pytest.raises(ValueError, match="maps must be N x H x W"):
        faithfulness(model, x, maps[:, :4], t, "ce")
    with pytest.raises(ValueError, match="one class per image"):
        faithfulness(model, x, maps, t[:3], "ce")
    with pytest.raises(OptionError, match="steps 0 must be at least 1"):
        faithfulness(model, x, maps, t, "ce", steps=0)


# ----------------------------------------------------------------------------- the trained shapes model


@pytest.fixture(scope="module")
def shapes_batch(shapes_run, shapes):
    from cvkit.runtime import load_run, read_images

    run = load_run(shapes_run, torch.device("cpu"))
    table = pd.read_csv(shapes / "boxes.csv")
    rows = pd.concat([table[table.path.str.contains(f"/{k}/")].tail(8) for k in ("disc", "square", "cross")])
    found = read_images([str(shapes / p) for p in rows.path], run.input_size, run.in_chans, run.info.resize)
    assert len(found.paths) == len(rows)
    x = run.pre(torch.from_numpy(found.images))
    inside = torch.zeros(len(rows), *run.input_size)
    for i, (x0, y0, x1, y1) in enumerate(rows[["x0", "y0", "x1", "y1"]].to_numpy()):
        inside[i, y0:y1, x0:x1] = 1.0
    probs, _ = run.predict(found.images)
    return run, x, inside, probs


def test_the_true_box_is_more_faithful_than_its_complement(shapes_batch):
    run, x, inside, probs = shapes_batch
    targets = torch.from_numpy(probs.argmax(1))
    model = run.model
    box = faithfulness(model, x, inside, targets, run.info.loss, batch_size=128)
    out = faithfulness(model, x, 1 - inside, targets, run.info.loss, batch_size=128)
    print(f"\nshapes, {len(x)} images: deletion AUC box {box.deletion_auc.mean():.3f} vs inverted "
          f"{out.deletion_auc.mean():.3f}; insertion AUC box {box.insertion_auc.mean():.3f} vs inverted "
          f"{out.insertion_auc.mean():.3f}; average drop box {box.drop.mean():.1f}% vs inverted {out.drop.mean():.1f}%")
    assert box.deletion_auc.mean() < out.deletion_auc.mean() - 0.1
    assert box.insertion_auc.mean() > out.insertion_auc.mean() + 0.1
    assert (box.deletion_auc < out.deletion_auc).mean() >= 0.8
    assert (box.insertion_auc > out.insertion_auc).mean() >= 0.8
    assert box.drop.mean() < out.drop.mean()
    p = probs[np.arange(len(x)), probs.argmax(1)]
    np.testing.assert_allclose(box.deletion_curve[:, 0], p, rtol=1e-4)  # starts at the image's probability
    np.testing.assert_allclose(box.insertion_curve[:, -1], p, rtol=1e-4)  # ends there
    with torch.inference_mode():  # deletion ends at the mean image's probability, insertion starts at the blur
        mean_p = torch.softmax(model(torch.zeros_like(x)), 1).gather(1, targets[:, None])[:, 0].double().numpy()
        blur_p = torch.softmax(model(gaussian_blur(x, 2.0)), 1).gather(1, targets[:, None])[:, 0].double().numpy()
    np.testing.assert_allclose(box.deletion_curve[:, -1], mean_p, rtol=1e-4)
    np.testing.assert_allclose(box.insertion_curve[:, 0], blur_p, rtol=1e-4)
    assert all(p.grad is None for p in model.parameters()) and not model.training
