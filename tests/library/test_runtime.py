"""The runtime: a trained run as a ready object (model.json alone), new images, features by layer."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from cvkit.device import resolve_device
from cvkit.errors import ManifestError, OptionError
from cvkit.runtime import capture, collect_inputs, load_run, read_images
from tests.conftest import SAMPLE, copy_run_with


def test_a_run_loads_from_model_json_alone(trained, tmp_path):
    alone = tmp_path / "alone"
    alone.mkdir()
    for name in ("model.json", "model.safetensors"):
        shutil.copy(trained / name, alone / name)
    loaded = load_run(alone, resolve_device("cpu"))
    assert loaded.classes == json.loads((trained / "model.json").read_text())["classes"]
    assert loaded.precision == "fp32" and not loaded.model.training and loaded.data is None
    found = read_images(collect_inputs([str(SAMPLE / "fashion" / "bag")]), loaded.input_size, loaded.in_chans)
    probs, loss = loaded.predict(found.images)
    assert probs.shape == (20, 10) and loss is None
    assert np.allclose(probs.sum(1), 1.0)
    same, _ = load_run(trained, resolve_device("cpu")).predict(found.images)
    assert np.allclose(probs, same, atol=1e-6)


def test_new_images_are_read_as_prepare_reads_them_with_the_rejected_list(tmp_path):
    good = tmp_path / "a.png"
    Image.fromarray(np.full((40, 30, 3), 200, np.uint8)).save(good)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    found = read_images(collect_inputs([str(tmp_path)]), (28, 28), 1)
    assert found.images.shape == (1, 28, 28, 1) and int(found.images[0, 0, 0, 0]) == 200
    assert found.paths == [str(good)] and found.rejected[0][0].endswith("bad.png")
    assert found.rejected[0][1].startswith("not an image")


def test_features_by_layer_name_and_the_hooks_are_removed(trained):
    loaded = load_run(trained, resolve_device("cpu"))
    images = np.zeros((3, *loaded.input_size, loaded.in_chans), np.uint8)
    features = loaded.features(images, ["features.0", "features.1"], batch_size=2)
    assert features["features.0"].shape[0] == 3 and features["features.1"].shape[:2] == (3, 32)
    assert all(not m._forward_hooks for m in loaded.model.modules())
    with pytest.raises(OptionError, match="no layer 'features.9'"):
        with capture(loaded.model, ["features.9"]):
            pass
    with pytest.raises(RuntimeError):
        with capture(loaded.model, ["features.0"]):
            raise RuntimeError("boom")
    assert all(not m._forward_hooks for m in loaded.model.modules())


def test_an_edited_model_json_is_refused(trained, tmp_path):
    edited = copy_run_with(trained, tmp_path / "edited", num_classes=3)
    with pytest.raises(ManifestError, match="'num_classes' is 3 but 'classes' names 10"):
        load_run(edited, resolve_device("cpu"))
    surprise = copy_run_with(trained, tmp_path / "surprise", surprise=1)
    with pytest.raises(ManifestError, match="unknown key"):
        load_run(surprise, torch.device("cpu"))
