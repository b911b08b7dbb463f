"""`cvkit visualize --invert`: an image rebuilt from one layer's features (Mahendran & Vedaldi, 2015)
looks like the image, more so from an early layer than from a deep one; beside it, the saliency map."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cvkit.explain.visual.common import read_image
from cvkit.explain.visual.invert import invert
from cvkit.runtime import load_run
from tests.conftest import SAMPLE, run
from tests.visualize import check_png

BAG = SAMPLE / "fashion" / "bag" / "001.png"


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.astype(np.float64).ravel(), b.astype(np.float64).ravel())[0, 1])


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a.astype(np.float64) - b.astype(np.float64).reshape(a.shape)) ** 2).mean() / 255**2)


def test_cli_writes_a_reconstruction_that_looks_like_the_image(trained, tmp_path):
    out = tmp_path / "vis"
    result = run(CliRunner(), "visualize", trained, "--invert", BAG, "--layer", "features.0.0", "--steps", "60",
                 "--out", out)
    assert result.exit_code == 0, result.stderr
    names = ["invert_001_features.0.0.png", "invert_001_features.0.0_image.png"]
    assert result.stdout.splitlines() == [str(out / n) for n in names]
    assert "001.png, layer features.0.0: relative feature error" in result.stderr
    check_png(out / names[0], (960, 410))  # the image, the reconstruction, the saliency map
    with Image.open(out / names[1]) as image:
        rebuilt = np.asarray(image)
    clean = read_image(load_run(trained, torch.device("cpu")), BAG, "x")[0, :, :, 0]
    assert rebuilt.shape == clean.shape == (28, 28)
    assert _corr(rebuilt, clean) > 0.8  # the noise it started from is uncorrelated with the image


def test_an_early_layer_keeps_more_than_a_deep_one(shapes_run, shapes):
    loaded = load_run(shapes_run, torch.device("cpu"))
    image = read_image(loaded, shapes / "images" / "disc" / "000.png", "x")
    early = invert(loaded, image, "features.0.0", steps=80, seed=0)
    deep = invert(loaded, image, "features.1", steps=80, seed=0)
    for found in (early, deep):
        assert found.error_final < 0.5 * found.error_start  # the features were matched
        assert found.image.shape == image.shape[1:] and found.image.dtype == np.uint8
    assert np.array_equal(early.start, deep.start)  # the same seeded noise
    assert _mse(early.image, image) < _mse(early.start, image)
    assert _mse(early.image, image) < _mse(deep.image, image)
    again = invert(loaded, image, "features.0.0", steps=80, seed=0)
    assert np.array_equal(again.image, early.image)


@pytest.mark.parametrize("args, message", [
    (["--invert", BAG, "--layer", "features.0.0", "--steps", "0"], "--steps 0 must be at least 1"),
    (["--invert", BAG], "--invert needs --layer L (a layer as 'cvkit inspect' lists it); an early layer keeps the "
                        "most of the image"),
    (["--invert", "missing.png", "--layer", "features.0"], "--invert missing.png is not a file; give an image file"),
])
def test_bad_options(trained, tmp_path, args, message):
    out = tmp_path / "vis"
    result = run(CliRunner(), "visualize", trained, *args, "--out", out)
    assert result.exit_code == 2
    assert result.stderr == f"Error: {message}\n"
    assert not out.exists()


def test_an_unknown_layer_gets_the_close_matches(trained, tmp_path):
    result = run(CliRunner(), "visualize", trained, "--invert", BAG, "--layer", "features.0.00", "--out",
                 tmp_path / "vis")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: --layer features.0.00: the model has no layer of that name (did you mean "
                                    "features.0.0")
    assert "head.fc" in result.stderr and f"('cvkit inspect {trained}' shows them)" in result.stderr
    assert not (tmp_path / "vis").exists()
