"""`cvkit visualize --adversarial`: FGSM and PGD examples that lower the class's probability while no
pixel moves more than --eps, the files they write, and the one-line refusals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cvkit.explain.visual.adversarial import amplified, attack
from cvkit.explain.visual.common import read_image
from cvkit.runtime import load_run
from tests.conftest import SAMPLE, copy_run_with, run
from tests.visualize import check_png

BAG = SAMPLE / "fashion" / "bag" / "001.png"


def _written(path) -> np.ndarray:
    """A PNG cvkit wrote, as the 1 x H x W x C uint8 batch the runtime reads."""
    with Image.open(path) as image:
        pixels = np.asarray(image)
    return (pixels[:, :, None] if pixels.ndim == 2 else pixels)[None]


@pytest.mark.parametrize("steps, name", [(1, "FGSM"), (5, "PGD, 5 steps of 4/255")])
def test_the_written_image_fools_the_run_within_eps(trained, tmp_path, steps, name):
    out = tmp_path / "vis"
    result = run(CliRunner(), "visualize", trained, "--adversarial", BAG, "--eps", "8/255", "--steps", str(steps),
                 "--out", out)
    assert result.exit_code == 0, result.stderr
    names = ["adversarial_001.png", "adversarial_001_image.png", "adversarial_001_perturbation.png",
             "adversarial_001.csv"]
    assert result.stdout.splitlines() == [str(out / n) for n in names]
    loaded = load_run(trained, torch.device("cpu"))
    clean = read_image(loaded, BAG, "--adversarial")
    perturbed = _written(out / "adversarial_001_image.png")
    assert perturbed.shape == clean.shape == (1, 28, 28, 1)  # the model's input size
    delta = np.abs(perturbed.astype(int) - clean.astype(int))
    assert delta.max() <= 8 + 1 and delta.max() >= 7  # eps in pixel units, one level of rounding allowed
    before, _ = loaded.predict(clean)
    after, _ = loaded.predict(perturbed)
    cls = int(before[0].argmax())
    assert after[0, cls] < before[0, cls]  # strictly: the attack did something, and it is in the file
    table = pd.read_csv(out / "adversarial_001.csv")
    assert list(table.columns) == ["rank", "class_before", "probability_before", "class_after", "probability_after"]
    assert table["class_before"][0] == loaded.classes[cls]
    assert table["probability_before"][0] == pytest.approx(before[0, cls], abs=1e-5)
    assert table["probability_after"][0] == pytest.approx(after[0].max(), abs=1e-5)
    assert f"{name}, eps 0.03137; '{loaded.classes[cls]}' {before[0, cls]:.3f} -> {after[0, cls]:.3f}" in \
        " ".join(result.stderr.split())
    check_png(out / "adversarial_001.png")
    perturbation = _written(out / "adversarial_001_perturbation.png")
    assert perturbation.min() == 0 or perturbation.max() == 255  # amplified to the full range


def test_rgb_fgsm_pgd_and_a_target(shapes_run, shapes):
    loaded = load_run(shapes_run, torch.device("cpu"))
    images = np.concatenate([read_image(loaded, shapes / "images" / c / "000.png", "x")
                             for c in ("cross", "disc", "square")])
    eps = 4 / 255
    fgsm, pgd = attack(loaded, images, eps, 1), attack(loaded, images, eps, 10)
    rows = np.arange(3)
    for found in (fgsm, pgd):
        assert found.images.shape == images.shape and found.images.dtype == np.uint8
        assert np.abs(found.delta).max() <= eps + 1 / 255
        assert (found.after[rows, found.classes] < found.before[rows, found.classes]).all()
    # PGD's steps find a stronger example than FGSM's one step, within the same ball
    assert pgd.after[rows, pgd.classes].sum() < fgsm.after[rows, fgsm.classes].sum()
    square = loaded.classes.index("square")
    towards = attack(loaded, images[:2], eps, 10, target=square)
    assert towards.targeted and (towards.classes == square).all()
    assert (towards.after[:, square] > towards.before[:, square]).all()


def test_eps_zero_changes_nothing(trained, tmp_path):
    out = tmp_path / "vis"
    result = run(CliRunner(), "-q", "visualize", trained, "--adversarial", BAG, "--eps", "0", "--steps", "3",
                 "--out", out)
    assert result.exit_code == 0, result.stderr
    loaded = load_run(trained, torch.device("cpu"))
    assert np.array_equal(_written(out / "adversarial_001_image.png"), read_image(loaded, BAG, "x"))
    assert (_written(out / "adversarial_001_perturbation.png") == 128).all()
    table = pd.read_csv(out / "adversarial_001.csv")
    assert (table["class_before"] == table["class_after"]).all()
    assert np.allclose(table["probability_before"], table["probability_after"])
    assert (amplified(np.zeros((2, 2, 1))) == 128).all()


@pytest.mark.parametrize("args, message", [
    (["--adversarial", BAG, "--eps", "-0.1"], "--eps -0.1 must be between 0 and 1 (a pixel change in [0, 1] "
                                              "units, such as 8/255)"),
    (["--adversarial", BAG, "--eps", "300/255"], "--eps 1.17647 must be between 0 and 1 (a pixel change in [0, 1] "
                                                 "units, such as 8/255)"),
    (["--adversarial", BAG, "--eps", "lots"], "--eps lots is not a number; give the largest change of a pixel in "
                                              "[0, 1], such as 0.03 or 8/255"),
    (["--adversarial", BAG, "--eps", "0.1", "--steps", "0"], "--steps 0 must be at least 1 (1: FGSM; more: PGD)"),
    (["--adversarial", BAG], "--adversarial needs --eps E, the largest change of a pixel in [0, 1] (such as 8/255)"),
    (["--curves", "--eps", "0.1"], "--eps goes with --adversarial IMAGE; add it, or leave the option out"),
    (["--adversarial", "missing.png", "--eps", "0.1"], "--adversarial missing.png is not a file; give an image file"),
    (["--adversarial", BAG, "--eps", "0.1", "--target", "bags"],
     "--target bags is not a class of the run; did you mean bag?"),
])
def test_bad_options(trained, tmp_path, args, message):
    out = tmp_path / "vis"
    result = run(CliRunner(), "visualize", trained, *args, "--out", out)
    assert result.exit_code == 2
    assert result.stderr == f"Error: {message}\n"
    assert not out.exists()


def test_a_run_of_another_task_is_refused(trained, tmp_path):
    other = copy_run_with(trained, tmp_path / "ml", task="multilabel", loss="bce")
    result = run(CliRunner(), "visualize", other, "--adversarial", BAG, "--eps", "0.1", "--out", tmp_path / "vis")
    assert result.exit_code == 2
    assert result.stderr == (f"Error: --adversarial attacks one class per image, and {other} is a multilabel run; "
                             "give a run trained with the classify task\n")
    assert not (tmp_path / "vis").exists()
