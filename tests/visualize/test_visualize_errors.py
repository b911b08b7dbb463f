"""`cvkit visualize`'s one-line errors (exit 2), given before anything is computed or written."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from cvkit.runtime import load_run
from cvkit.runtime.features import spatial_layers
from tests.conftest import SAMPLE, run

BAG = SAMPLE / "fashion" / "bag" / "001.png"
CLASSES = "ankle_boot, bag, coat, dress, pullover, sandal, shirt, sneaker, trouser, tshirt_top"


@pytest.mark.parametrize("args, message", [
    ([], ("nothing to draw: give at least one of --curves, --filters, --activations IMAGE, --max-patches, "
          "--maximize, --saliency IMAGE, --embedding, --confusion, --templates, --adversarial IMAGE, "
          "--invert IMAGE")),
    (["--max-patches", "--layer", "features.0", "--units", "40"],
     "--units 40 is more than the 16 channels of layer features.0; give at most 16"),
    (["--maximize", "--class", "dog"], f"--class dog is not a class of the run; the classes are {CLASSES}"),
    (["--saliency", BAG, "--class", "bags"], "--class bags is not a class of the run; did you mean bag?"),
    (["--maximize"], "--maximize needs --unit U (a channel of --layer) or --class NAME"),
    (["--maximize", "--layer", "features.0", "--unit", "16"],
     "--unit 16 is not a channel of layer features.0, which has 16 (0 to 15)"),
    (["--embedding", "--projection", "svd"], "--projection svd must be one of pca, tsne, umap"),
    (["--confusion", "--split", "dev"], "--split dev must be one of train, val, test"),
    (["--saliency", "missing.png"], "--saliency missing.png is not a file; give an image file"),
])
def test_bad_options(trained, tmp_path, args, message):
    out = tmp_path / "vis"
    result = run(CliRunner(), "visualize", trained, *args, "--out", out)
    assert result.exit_code == 2
    assert result.stderr == f"Error: {message}\n"
    assert not out.exists()


def test_a_wrong_layer_lists_the_valid_ones(trained):
    result = run(CliRunner(), "visualize", trained, "--activations", BAG, "--layer", "features.9")
    assert result.exit_code == 2
    valid = spatial_layers(load_run(trained, torch.device("cpu")).model, 1, (28, 28))
    assert result.stderr.startswith("Error: --layer features.9: the model has no layer of that name with a feature map")
    assert result.stderr.rstrip("\n").endswith(f"valid layers: {', '.join(valid)}")
    assert "features.0" in valid and "features.1" in valid


def test_unreadable_image_and_not_a_run(trained, data, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n-not-really")
    result = run(CliRunner(), "-q", "visualize", trained, "--activations", broken, "--layer", "features.0")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: --activations {broken} cannot be read as an image (")
    assert result.stderr.endswith("); give an image file\n")
    result = run(CliRunner(), "visualize", data, "--curves")
    assert result.exit_code == 2
    assert result.stderr == f"Error: {data} has no model.json: it is not a run directory; create one with 'cvkit train'\n"


def test_umap_missing_says_how_to_install(trained, tmp_path):
    import importlib.util

    if importlib.util.find_spec("umap") is not None:
        pytest.skip("umap-learn is installed here")
    result = run(CliRunner(), "visualize", trained, "--embedding", "--projection", "umap", "--out", tmp_path / "v")
    assert result.exit_code == 2
    assert result.stderr == ("Error: --projection umap needs umap-learn, which is not installed: pip install umap-learn "
                             "(or use --projection pca or tsne)\n")
