"""cvkit inspect: the literature's figures for VGG16 and AlexNet, receptive fields equal to measured ones,
a run, JSON, and the errors."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from cvkit.inspect import inspect_arch, inspect_model, trace
from cvkit.models import count_parameters, create_model
from cvkit.models.receptive import receptive_field
from tests.conftest import run

# VGG16 (configuration D): the convolution widths, 'M' a 2x2 max-pool.
VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def vgg16_by_hand() -> dict[str, int]:
    """Activation values, convolution and FC outputs, and MACs of VGG16 at 224 px, from the paper's table."""
    side, chans, convs, pools, macs = 224, 3, 0, 0, 0
    for item in VGG16:
        if item == "M":
            side //= 2
            pools += chans * side * side
        else:
            convs += item * side * side
            macs += side * side * item * chans * 9
            chans = item
    fc = 4096 + 4096 + 1000
    macs += 512 * 7 * 7 * 4096 + 4096 * 4096 + 4096 * 1000
    return {"activations": 3 * 224 * 224 + convs + pools + fc, "relu": convs + 4096 + 4096, "macs": macs}


@pytest.fixture(scope="module")
def vgg16():
    return inspect_arch("vgg16")


def on_meta(arch: str, *args) -> torch.nn.Module:
    with torch.device("meta"):
        return create_model(arch, *args)


def test_vgg16_matches_the_literature(vgg16):
    t = vgg16.totals
    assert t["parameters"] == 138_357_544
    assert t["parameters_by_part"]["fully_connected"] == 123_642_856  # fc6 (a 7x7 conv in timm), fc7, fc8
    assert 0.89 < t["parameter_shares"]["fully_connected"] < 0.90
    hand = vgg16_by_hand()
    assert t["activations"] == hand["activations"] and round(t["activations"] / 1e6, 1) == 15.2
    assert round(t["activation_bytes"] / 2**20) == 58
    assert t["activations_with_relu"] == hand["activations"] + hand["relu"]
    assert round(t["activations_with_relu"] / 1e6, 1) == 28.8
    assert t["training_bytes"] == 2 * 4 * t["activations_with_relu"]
    assert t["macs"] == hand["macs"] and abs(t["macs"] / 15.47e9 - 1) < 0.01
    last_pool = [r for r in vgg16.rows if r.type == "MaxPool2d"][-1]
    assert (last_pool.receptive_field, last_pool.jump, last_pool.shape) == ([212, 212], [32, 32], [512, 7, 7])


def test_torchvision_vgg16_gives_the_same_figures(vgg16):
    from cvkit.models.adapters import torchvision_net

    with torch.device("meta"):
        model = torchvision_net("vgg16", 1000, 3, "auto", None, False)
    result = inspect_model(model, 3, (224, 224), subject="vgg16", arch="vgg16", num_classes=1000)
    for key in ("parameters", "parameters_by_part", "activations", "activations_with_relu", "macs"):
        assert result.totals[key] == vgg16.totals[key], key
    copy = next(r for r in result.rows if r.name.endswith("avgpool"))  # 7x7 -> 7x7 at 224 px: a copy, not counted
    assert not copy.counted and copy.type == "AdaptiveAvgPool2d (copy)"


def test_alexnet_matches_the_literature():
    t = inspect_arch("alexnet").totals
    assert t["parameters"] == 61_100_840
    assert t["parameters_by_part"] == {"convolutional": 2_469_696, "fully_connected": 58_631_144, "other": 0}
    assert t["parameter_shares"]["fully_connected"] > 0.95


def test_receptive_fields_equal_the_measured_ones(vgg16):
    model = on_meta("vgg16", 1000, 3, (224, 224))  # receptive_field replaces every weight: meta suffices
    rows = {r.name: r for r in vgg16.rows}
    for name in ("features.4", "features.16", "features.30"):
        found = receptive_field(model, name, 3)
        assert [list(found.size), list(found.stride)] == [rows[name].receptive_field, rows[name].jump], name
    # resnet18 branches: the field after each merge is the union of its branches' windows
    result = inspect_arch("resnet18")
    rows = {r.name: r for r in result.rows}
    assert rows["layer4.1.act2"].receptive_field == [435, 435] and rows["layer4.1.act2"].jump == [32, 32]
    assert rows["global_pool.pool"].receptive_field is None and rows["fc"].receptive_field is None
    model = on_meta("resnet18", 1000, 3, (224, 224))
    for name in ("maxpool", "layer1.1.conv2", "layer2.0.downsample.0", "layer2.1.conv1", "layer3.0.conv1"):
        found = receptive_field(model, name, 3)
        assert [list(found.size), list(found.stride)] == [rows[name].receptive_field, rows[name].jump], name
    assert result.totals["parameters"] == 11_689_512
    # ... and no field needed measuring: the residual additions were followed by formula
    calls = trace(model, 3, (224, 224), measure=None)
    assert all(isinstance(c.field, tuple) for c in calls if c.is_map and c.name != "global_pool.pool")


def test_smallcnn_json_through_the_cli():
    result = run(CliRunner(), "inspect", "--arch", "smallcnn", "--input-size", "28", "--in-chans", "1",
                 "--num-classes", "10", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    model = create_model("smallcnn", 10, 1, (28, 28))
    assert report["totals"]["parameters"] == count_parameters(model) == sum(r["parameters"] for r in report["rows"])
    assert report["totals"]["parameters_outside_rows"] == 0
    assert (report["input_size"], report["in_chans"], report["num_classes"]) == ([28, 28], 1, 10)
    assert report["rows"][0]["name"] == "input" and report["rows"][0]["values"] == 784
    maps = [r for r in report["rows"][1:] if r["receptive_field"] is not None]
    assert maps and all(r["kind"] != "fc" for r in maps)
    for row in maps:
        found = receptive_field(model, row["name"], 1)
        assert [list(found.size), list(found.stride)] == [row["receptive_field"], row["jump"]], row["name"]
    assert set(report["conventions"]) >= {"activations", "activations_with_relu", "training_bytes", "macs"}


def test_a_run(trained):
    result = run(CliRunner(), "inspect", trained)
    assert result.exit_code == 0, result.stderr
    line = result.stdout.strip()
    assert "\n" not in line and line.startswith(f"{trained} 28x28: ") and "parameters" in line
    assert "receptive" not in result.stdout and "layer" in result.stderr and "fully connected" in result.stderr
    report = json.loads(run(CliRunner(), "-q", "inspect", trained, "--json").stdout)
    info = json.loads((trained / "model.json").read_text())
    model = create_model(info["arch"], info["num_outputs"], info["in_chans"], info["input_size"],
                         **info["arch_options"])
    assert report["subject"] == str(trained) and report["arch"] == info["arch"]
    assert report["totals"]["parameters"] == count_parameters(model)
    assert report["input_size"] == info["input_size"]


@pytest.mark.parametrize("args, message", [
    ([], "give a RUN directory or --arch ARCH"),
    (["--arch", "vgg61"], "Unknown architecture 'vgg61'. Did you mean"),
    (["--arch", "vgg16", "--input-size", "16"], "--input-size 16x16 is too small for vgg16: it needs at least 32x32"),
    (["--arch", "smallcnn", "--input-size", "2"], "--input-size 2x2 is too small for smallcnn: it needs at least 4x4"),
    (["--arch", "vgg16", "--input-size", "big"], "--input-size 'big' is not a size"),
    (["--arch", "vgg16", "--num-classes", "0"], "--num-classes 0 must be at least 1"),
])
def test_errors(args, message):
    result = run(CliRunner(), "inspect", *args)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {message}") and result.stderr.count("\n") == 1, result.stderr
    assert result.stdout == ""


def test_run_errors(trained):
    both = run(CliRunner(), "inspect", trained, "--arch", "vgg16")
    assert both.exit_code == 2 and "not both" in both.stderr
    classes = run(CliRunner(), "inspect", trained, "--num-classes", "5")
    assert classes.exit_code == 2 and classes.stderr.startswith("Error: --num-classes applies to --arch")
