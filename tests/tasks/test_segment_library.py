"""The segment task's parts through the library: masks moving with the image, cutmix, the border weight map
against a hand computation, the loss's ignored pixels and weights, and the per-pixel metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cvkit.errors import OptionError
from cvkit.tasks import TaskSpec, create_task
from cvkit.tasks.borders import border_term, two_nearest
from cvkit.tasks.segment_metrics import confusion, segmentation_metrics
from cvkit.transforms.batch import augment, augment_planes, mix
from cvkit.transforms.policy import AugmentPolicy

CLASSES = ["background", "a", "b"]


def _batch(n: int = 6, size: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose first channel encodes each pixel's mask value (class * 60 + 30), and those masks."""
    rng = np.random.default_rng(seed)
    masks = rng.integers(0, 3, size=(n, 1, size, size)).astype(np.uint8)
    images = np.repeat((masks.astype(np.float32) * 60 + 30) / 255, 3, axis=1)
    return torch.from_numpy(images), torch.from_numpy(masks)


def _mask_of(images: torch.Tensor) -> torch.Tensor:
    """The mask an image encodes (see _batch); 255 where the image is black (outside its source)."""
    values = torch.round(images[:, :1] * 255)
    return torch.where(values == 0, torch.tensor(255.0), (values - 30) / 60).to(torch.uint8)


@pytest.mark.parametrize("policy", [AugmentPolicy(hflip=1.0), AugmentPolicy(hflip=0.5, vflip=0.5),
                                    AugmentPolicy(translate=0.25), AugmentPolicy(hflip=0.5, translate=0.2)],
                         ids=["hflip", "flips", "translate", "flip+translate"])
def test_mask_moves_with_the_image_pixel_for_pixel(policy: AugmentPolicy) -> None:
    images, masks = _batch()
    moved, planes = augment_planes(images, masks, [255], policy, torch.Generator().manual_seed(3))
    assert planes.dtype == torch.uint8 and planes.shape == masks.shape
    assert torch.equal(planes, _mask_of(moved))
    assert not torch.equal(planes, masks)  # something moved
    # the images are exactly what augment makes with the same draws
    assert torch.equal(moved, augment(images, policy, torch.Generator().manual_seed(3)))


def test_translation_fills_the_uncovered_border_with_ignore() -> None:
    images, masks = _batch(n=8)
    _, planes = augment_planes(images, masks, [255], AugmentPolicy(translate=0.3), torch.Generator().manual_seed(1))
    assert (planes == 255).any()
    assert set(torch.unique(planes).tolist()) <= {0, 1, 2, 255}


@pytest.mark.parametrize("policy", [AugmentPolicy(rotate=30), AugmentPolicy(scale=[0.8, 1.3], crop=0.5),
                                    AugmentPolicy(elastic=0.08), AugmentPolicy(perspective=0.2)],
                         ids=["rotate", "zoom+crop", "elastic", "perspective"])
def test_resampling_keeps_mask_values_classes(policy: AugmentPolicy) -> None:
    """Nearest neighbour: a resampled mask holds class indices only (never a blend of two), and where the
    image was resampled from one uniform region the mask agrees with it."""
    size = 24
    masks = torch.zeros(4, 1, size, size, dtype=torch.uint8)
    masks[:, :, :, size // 2:] = 2  # two halves
    images = (masks.float() * 100 + 20).repeat(1, 3, 1, 1) / 255
    moved, planes = augment_planes(images, masks, [255], policy, torch.Generator().manual_seed(0))
    assert set(torch.unique(planes).tolist()) <= {0, 2, 255}
    # far from the edge between the halves (the image bilinear, the mask nearest) they agree
    value = torch.round(moved[:, 0] * 255)
    assert torch.all(planes[:, 0][value == 20] == 0) and torch.all(planes[:, 0][value == 220] == 2)


def test_cutmix_pastes_the_mask_with_the_image() -> None:
    images, masks = _batch(n=8, size=32)
    x, targets = mix(images, masks, AugmentPolicy(cutmix=1.0), torch.Generator().manual_seed(5))
    assert torch.equal(targets, _mask_of(x))
    assert not torch.equal(targets, masks)


def test_mixup_is_refused_for_segment_and_cutmix_is_not() -> None:
    task = create_task("segment", TaskSpec(CLASSES))
    with pytest.raises(OptionError, match="mixup"):
        task.check_policy(AugmentPolicy(mixup=0.2))
    task.check_policy(AugmentPolicy(cutmix=1.0, elastic=0.05, rotate=10))


def test_border_weight_matches_a_hand_computation() -> None:
    """Two objects in a row: the background pixel at column x lies 3 - ... from A (columns 0-1) and from
    B (columns 7-9): d1 + d2 = (x - 1) + (7 - x) = 6 between them."""
    mask = np.zeros((1, 10), dtype=np.uint8)
    mask[0, 0:2] = 1
    mask[0, 7:10] = 2
    d1, d2 = two_nearest(mask)
    for x in range(2, 7):
        assert sorted((d1[0, x], d2[0, x])) == sorted((x - 1, 7 - x))
    sigma = 2.0
    term = border_term(mask, sigma)
    for x in range(2, 7):
        assert term[0, x] == pytest.approx(math.exp(-36 / (2 * sigma**2)))
    assert (term[0, :2] == 0).all() and (term[0, 7:] == 0).all()  # object pixels take no border term
    # a 2-D case: two squares of one class (columns 1-3 and 8-10) are two objects
    square = np.zeros((9, 12), dtype=np.uint8)
    square[2:7, 1:4] = 1
    square[2:7, 8:11] = 1
    d1, d2 = two_nearest(square)
    assert (d1[4, 5], d2[4, 5]) == (2.0, 3.0) and (d1[4, 6], d2[4, 6]) == (2.0, 3.0)
    assert (d1[0, 5], d2[0, 5]) == pytest.approx((math.hypot(2, 2), math.hypot(3, 2)))  # to the corners
    one = np.zeros((5, 5), dtype=np.uint8)
    one[1:3, 1:3] = 1
    assert not border_term(one, 5.0).any()  # fewer than two objects: no border term


def test_loss_ignores_255_and_weighs_the_border() -> None:
    task = create_task("segment", TaskSpec(CLASSES))
    logits = torch.randn(2, 3, 8, 8)
    mask = torch.randint(0, 3, (2, 1, 8, 8), dtype=torch.uint8)
    ignored = mask.clone()
    ignored[:, :, :4] = 255
    changed = logits.clone()
    changed[:, :, :4] = torch.randn(2, 3, 4, 8) * 10  # outputs on ignored pixels do not count
    assert torch.allclose(task.loss(logits, ignored), task.loss(changed, ignored))
    expected = torch.nn.functional.cross_entropy(logits, mask[:, 0].long())
    assert torch.allclose(task.loss(logits, mask), expected, atol=1e-6)
    bordered = create_task("segment", TaskSpec(CLASSES, options={"border_weight": "10,2"}))
    assert bordered.fill == [255, 0]
    planes = torch.cat([mask, torch.zeros_like(mask)], 1)
    assert torch.allclose(bordered.loss(logits, planes), expected, atol=1e-6)  # no border: plain CE
    planes[:, 1] = 255
    per = torch.nn.functional.cross_entropy(logits, mask[:, 0].long(), reduction="none")
    assert torch.allclose(bordered.loss(logits, planes), (per * 11).sum() / (11 * per.numel()), atol=1e-6)


def test_metrics_of_a_known_confusion() -> None:
    true = np.array([[0, 0, 1, 1], [2, 2, 255, 255]], dtype=np.uint8)
    pred = np.array([[0, 1, 1, 1], [2, 0, 0, 2]], dtype=np.uint8)
    matrix = confusion(true, pred, 3)
    assert matrix.sum() == 6
    m = segmentation_metrics(matrix, CLASSES, 1)
    # IoU: class 0: 1 / (2 + 2 - 1) = 1/3; class 1: 2 / (2 + 3 - 2) = 2/3; class 2: 1 / (2 + 1 - 1) = 1/2
    assert m["per_class_iou"] == pytest.approx({"background": 1 / 3, "a": 2 / 3, "b": 1 / 2})
    assert m["miou"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert m["pixel_accuracy"] == pytest.approx(4 / 6)
    assert m["fw_iou"] == pytest.approx((2 / 6) * (1 / 3) + (2 / 6) * (2 / 3) + (2 / 6) * (1 / 2))
    absent = segmentation_metrics(confusion(true, pred, 4), [*CLASSES, "c"], 1)
    assert absent["per_class_iou"]["c"] is None and absent["miou"] == pytest.approx(m["miou"])


def test_distributed_score_parts_add_up_to_the_whole() -> None:
    task = create_task("segment", TaskSpec(CLASSES))
    rng = np.random.default_rng(0)
    probs = rng.random((6, 3, 8, 8)).astype(np.float16)
    labels = rng.integers(0, 3, (6, 1, 8, 8)).astype(np.uint8)
    parts = np.add(task.score_parts(probs[:4], labels[:4]), task.score_parts(probs[4:], labels[4:]))
    assert task.score_total(list(parts)) == pytest.approx(task.score(probs, labels))
