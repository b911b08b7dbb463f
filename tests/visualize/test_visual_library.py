"""The visualize library on the generated-shapes run: patches cut with the receptive field, gradient
ascent that works, saliency maps, embeddings, no hooks or memory left behind, nothing half-written."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
import torch

from cvkit.errors import OptionError
from cvkit.explain.visual import VisualizeRequest, draw, visualize
from cvkit.explain.visual.common import load_data, read_image
from cvkit.explain.visual.maps import activations
from cvkit.explain.visual.maximize import maximize
from cvkit.explain.visual.patches import max_patches
from cvkit.explain.visual.saliency import saliency
from cvkit.explain.visual.splits import embedding, project
from cvkit.models.hooks import forward_to
from cvkit.models.receptive import receptive_field
from cvkit.runtime import load_run
from tests.conftest import leftovers, tree


@pytest.fixture(scope="module")
def loaded(shapes_run):
    return load_run(shapes_run, torch.device("cpu"))


@pytest.mark.parametrize("layer", ["features.0", "features.1"])
def test_max_patches_are_receptive_field_windows(loaded, layer):
    images = load_data(loaded, None, "val").images
    found = max_patches(loaded, images, layer, units=3, top=4, batch_size=16)
    field = receptive_field(loaded.model, layer, 3)
    assert found.crops.shape == (3, 4, *field.size, 3)  # every crop has the receptive field's size
    with torch.inference_mode():
        maps = forward_to(loaded.model, layer, loaded.pre(torch.from_numpy(np.array(images)))).float()
    means = maps.mean((0, 2, 3))
    assert list(found.units) == torch.argsort(means, descending=True)[:3].tolist()
    h, w = images.shape[1:3]
    for k, unit in enumerate(found.units):
        # the strongest image of the unit, at its strongest position, is what the pass over the split found
        strongest = maps[:, unit].flatten(1).max(1).values
        assert found.values[k, 0] == pytest.approx(float(strongest.max()), rel=1e-5)
        for n in range(4):
            i, y, x = found.index[k, n], found.y[k, n], found.x[k, n]
            assert float(maps[i, unit, y, x]) == pytest.approx(found.values[k, n], rel=1e-5)
            assert found.y0[k, n] == y * field.stride[0] + round(field.centre[0] - (field.size[0] - 1) / 2)
            window = np.zeros((h + 2 * field.size[0], w + 2 * field.size[1], 3), np.uint8)
            window[field.size[0]:field.size[0] + h, field.size[1]:field.size[1] + w] = images[i]
            y0, x0 = found.y0[k, n] + field.size[0], found.x0[k, n] + field.size[1]
            assert np.array_equal(found.crops[k, n], window[y0:y0 + field.size[0], x0:x0 + field.size[1]])


def test_maximize_raises_the_unit_and_the_class_over_the_random_start(loaded):
    unit = maximize(loaded, layer="features.1", unit=5, steps=60, seed=1)
    assert unit.final > 1.5 * unit.start and unit.image.shape == (32, 32, 3) and unit.image.dtype == np.uint8
    cls = maximize(loaded, target=loaded.classes.index("disc"), steps=60, seed=1)
    assert cls.final > cls.start + 1
    again = maximize(loaded, target=loaded.classes.index("disc"), steps=60, seed=1)
    assert np.array_equal(again.image, cls.image)  # seeded


def test_saliency_and_smoothgrad(loaded, shapes):
    image = read_image(loaded, shapes / "images" / "square" / "003.png", "--saliency")
    found = saliency(loaded, image, smooth=6, seed=0)
    assert found.gradient.shape == found.smooth.shape == (32, 32)
    assert found.gradient.max() == pytest.approx(1.0) and found.gradient.min() >= 0
    assert loaded.classes[found.target] == "square" and found.prob > 0.5
    assert not np.allclose(found.gradient, found.smooth)
    assert saliency(loaded, image, target=0).target == 0


def test_memory_stays_flat_and_no_hooks_are_left(loaded, shapes):
    image = read_image(loaded, shapes / "images" / "disc" / "001.png", "--activations")

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    for _ in range(10):  # warm up allocators
        activations(loaded, image, "features.1")
        saliency(loaded, image)
    before = rss()
    for _ in range(100):
        activations(loaded, image, "features.1")
        saliency(loaded, image)
    assert rss() - before < 10 * 2**20
    assert all(not m._forward_hooks and not m._backward_hooks for m in loaded.model.modules())
    assert all(p.grad is None for p in loaded.model.parameters())


def test_embedding_projections(loaded):
    part = load_data(loaded, None, "val")
    found = embedding(loaded, part.images, part.labels, "pca", max_points=20, seed=3)
    assert found.points.shape == (20, 2) and len(found.rows) == 20 and found.total == len(part.images)
    assert found.note.endswith("of the variance")
    features = torch.randn(30, 8, generator=torch.Generator().manual_seed(0))
    assert project(features, "tsne", 0)[0].shape == (30, 2)
    if importlib.util.find_spec("umap") is None:
        with pytest.raises(OptionError, match="pip install umap-learn"):
            project(features, "umap", 0)


def test_a_failure_leaves_the_old_output_whole(shapes_run, tmp_path, monkeypatch):
    out = tmp_path / "vis"
    visualize(shapes_run, VisualizeRequest(filters=True), out, "cpu")
    before = tree(out)

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(draw, "confusion", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        visualize(shapes_run, VisualizeRequest(curves=True, confusion=True), out, "cpu")
    assert tree(out) == before and not leftovers(tmp_path)
