"""``visualize --templates``: a linear classifier's weights over the pixels, one image per class."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from typer.testing import CliRunner

from tests.conftest import FAST, run, run_ok, run_stdout


def test_a_perceptron_shows_one_template_per_class(data, tmp_path):
    from cvkit.explain.visual.maps import templates
    from cvkit.plots.visualize import scale_each
    from cvkit.runtime.run import load_run

    out = tmp_path / "perceptron"
    assert run_ok("-q", "train", data, "--out", out, "--arch", "perceptron", "--epochs", "2", *FAST)
    written = run_stdout("-q", "visualize", out, "--templates").split()
    assert [p.rsplit("/", 1)[-1] for p in written] == ["templates.png"]
    picture = np.asarray(Image.open(written[0]))
    assert picture.ndim == 3 and picture.shape[1] > picture.shape[0]  # a row of 10 templates
    loaded = load_run(out, torch.device("cpu"))
    found = templates(loaded)
    weight = loaded.model.get_classifier().weight.detach().view(10, 28, 28).numpy()
    assert found.tiles.shape == (10, 28, 28) and np.allclose(found.tiles, scale_each(weight))
    assert found.tiles.std(0).mean() > 0.01  # trained: the classes' templates differ


def test_templates_of_a_convolutional_net_are_refused_before_writing(trained, tmp_path):
    result = run(CliRunner(), "visualize", trained, "--templates", "--out", tmp_path / "v")
    assert result.exit_code == 2
    assert "--templates draws a linear layer over the pixels" in result.stderr and "--filters" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "v").exists()
