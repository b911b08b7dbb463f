"""--arch unet: the paper's size arithmetic (572 -> 388), logits at the input's size for any size, the
overlap-tile mirror padding, timm's interface, options and their refusals, model.json round trips,
ONNX export with dynamic height and width, and what ``cvkit inspect`` says (tiling, receptive fields)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cvkit.errors import OptionError
from cvkit.files.jsonio import type_ok
from cvkit.files.run import ARCH_OPTION_TYPES
from cvkit.inspect import inspect_arch, trace
from cvkit.models import (
    arch_options,
    block_groups,
    check_input_size,
    create_model,
    head_parameter_names,
    unet_sizes,
)
from cvkit.models.dense_io import mirror_index
from cvkit.models.hooks import forward_to
from cvkit.models.receptive import linear_copy
from tests.conftest import run, run_stdout

TINY = {"base": 4, "depth": 2}  # 16 px and up, a few thousand parameters


def tiny(padding: str = "valid", in_chans: int = 3, classes: int = 5, **options) -> nn.Module:
    torch.manual_seed(0)
    return create_model("unet", classes, in_chans, (32, 32), padding=padding, **{**TINY, **options})


def test_the_papers_tile_sizes():
    sizes = unet_sizes(4, "valid")
    assert sizes.valid_output(572) == 388 and sizes.margin == 92
    assert sizes.tile(388) == (572, 388)
    assert sizes.valid_output(571) is None and sizes.valid_output(570) is None  # a max-pool would see an odd size
    assert sizes.tile(64) == (252, 68)  # the smallest tile whose output covers 64 px
    same = unet_sizes(4, "same")
    assert same.margin == 0 and same.valid_output(64) == 64 and same.valid_output(60) is None
    assert same.tile(60) == (64, 64)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_the_raw_network_makes_what_unet_sizes_says(depth):
    model = create_model("unet", 2, 1, (32, 32), base=1, depth=depth, batchnorm=False, padding="valid").eval()
    sizes = unet_sizes(depth, "valid")
    tiles = [t for t in range(4 * sizes.margin, 4 * sizes.margin + 3 * sizes.step) if sizes.valid_output(t)]
    assert len(tiles) == 3
    with torch.no_grad():
        for t in tiles:
            out = model.features.tile(torch.zeros(1, 1, t, t + sizes.step))
            assert tuple(out.shape[2:]) == (sizes.valid_output(t), sizes.valid_output(t + sizes.step))


def test_the_papers_net_maps_572_to_388():
    model = create_model("unet", 2, 1, (64, 64), base=1, depth=4, batchnorm=False, padding="valid").eval()
    with torch.no_grad():
        assert model.features.tile(torch.zeros(1, 1, 572, 572)).shape == (1, 1, 388, 388)


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("size", [(16, 16), (17, 31), (32, 32), (45, 64), (64, 33)])
def test_logits_have_the_input_size(padding, size):
    model = tiny(padding).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, *size)).shape == (2, 5, *size)


def test_mirror_index_reflects_by_any_amount():
    n = 5
    torch.testing.assert_close(mirror_index(n, 3, 4, torch.device("cpu")),
                               F.pad(torch.arange(n).float()[None, None], (3, 4), mode="reflect")[0, 0].long())
    far = mirror_index(n, 9, 9, torch.device("cpu"))  # more than the side: the mirror image repeats
    assert far.tolist() == [1, 0, 1, 2, 3, 4, 3, 2, 1] + [0, 1, 2, 3, 4, 3, 2, 1, 0, 1, 2, 3, 4, 3]
    assert mirror_index(1, 2, 2, torch.device("cpu")).tolist() == [0] * 5  # one pixel: repeated


def test_valid_padding_is_overlap_tile():
    """The output is the raw network on the mirror-padded image, cropped: the paper's overlap-tile strategy."""
    model = tiny("valid").eval()
    x = torch.randn(2, 3, 37, 42)
    sizes = unet_sizes(TINY["depth"], "valid")
    (_, oh), (_, ow) = sizes.tile(37), sizes.tile(42)
    m = sizes.margin
    padded = F.pad(x, (m, m + ow - 42, m, m + oh - 37), mode="reflect")
    with torch.no_grad():
        expected = model.features.tile(padded)[:, :, :37, :42]
        torch.testing.assert_close(model.forward_features(x), expected)


def test_timm_interface_and_one_training_step():
    model = tiny("valid", in_chans=1)
    assert model.dense and model.num_features == 4 and model.num_classes == 5
    x, y = torch.randn(4, 1, 24, 20), torch.randint(0, 5, (4, 24, 20))
    stem = model.features.enc1[0][0].weight
    before = stem.detach().clone(), model.get_classifier().weight.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert not torch.equal(before[0], stem) and not torch.equal(before[1], model.get_classifier().weight)
    model.eval()
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (4, 4, 24, 20)
        torch.testing.assert_close(model.forward_head(features), model(x))
        assert model.forward_head(features, pre_logits=True).shape == (4, 4)
    classifier = model.get_classifier()
    assert isinstance(classifier, nn.Conv2d) and classifier.kernel_size == (1, 1) and classifier.out_channels == 5
    assert head_parameter_names(model) == {"head.conv.weight", "head.conv.bias"}
    model.reset_classifier(7)
    with torch.no_grad():
        assert model(x).shape == (4, 7, 24, 20)


def test_block_groups_run_from_the_first_level_to_the_last():
    groups = block_groups(tiny())
    firsts = [g[0].split(".")[1] for g in groups]
    assert firsts == ["enc1", "enc2", "bottleneck", "dec2", "dec1"]
    assert not any(n.startswith("head.") for g in groups for n in g)


def test_options_shape_the_net():
    def kinds(model: nn.Module) -> set[type]:
        return {type(m) for m in model.modules()}

    default = create_model("unet", 3, 1, (64, 64))
    convs = [m for m in default.modules() if isinstance(m, nn.Conv2d)]
    assert convs[0].out_channels == 16 and max(c.out_channels for c in convs) == 128  # base 16, depth 3
    assert all(c.padding == (1, 1) for c in convs if c.kernel_size == (3, 3))  # same: chosen on val
    assert nn.BatchNorm2d in kinds(default)
    paper_padding = create_model("unet", 3, 1, (64, 64), padding="valid")
    assert all(c.padding == (0, 0) for c in paper_padding.modules() if isinstance(c, nn.Conv2d))
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in default.modules()) == 3
    paper = create_model("unet", 3, 1, (64, 64), base=8, depth=3, batchnorm=False, dropout=0.5, padding="same",
                         activation="elu")
    convs = [m for m in paper.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs[:2]] == [8, 8] and all(c.bias is not None for c in convs)
    assert all(c.padding == (1, 1) for c in convs if c.kernel_size == (3, 3))
    assert nn.BatchNorm2d not in kinds(paper) and nn.ELU in kinds(paper) and nn.ReLU not in kinds(paper)
    assert [m.p for m in paper.modules() if isinstance(m, nn.Dropout)] == [0.5]
    assert isinstance(paper.features.bottleneck[-1], nn.Dropout)  # at the bottleneck, as in the paper
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in paper.modules()) == 3


def test_arch_options_resolve_and_rebuild_the_same_net():
    options = arch_options("unet", depth=2)
    assert options == {"head": "conv", "activation": "relu", "dropout": 0.0, "batchnorm": True, "hidden": None,
                       "padding": "same", "base": 16, "depth": 2}
    assert all(type_ok(v, ARCH_OPTION_TYPES[k]) for k, v in options.items())  # model.json accepts them
    saved = json.loads(json.dumps(options))
    first, again = create_model("unet", 3, 1, (64, 64), depth=2), create_model("unet", 3, 1, (64, 64), **saved)
    assert {k: v.shape for k, v in first.state_dict().items()} == {k: v.shape for k, v in again.state_dict().items()}
    assert "padding" not in arch_options("smallcnn")  # a classifier's model.json stays as it was


@pytest.mark.parametrize("arch,options,message", [
    ("unet", {"depth": 0}, "--depth 0 must be a whole number of downsamplings, 1 or more"),
    ("unet", {"base": 0}, "--base 0 must be a whole number of channels, 1 or more"),
    ("unet", {"padding": "full"}, "--padding 'full' is not one of valid, same"),
    ("unet", {"head": "fc"}, "--head fc does not apply to --arch unet: it labels every pixel with a 1x1 convolution"),
    ("unet", {"hidden": [8]}, "--hidden does not apply to --arch unet; leave it out"),
    ("unet", {"encoder": "smallcnn"}, "--encoder does not apply to --arch unet (only to fcn); leave it out"),
    ("unet", {"pretrained": True}, "--arch unet is one of cvkit's own nets and has no pretrained weights"),
    ("smallcnn", {"padding": "same"}, "--padding does not apply to --arch smallcnn (only to unet); leave it out"),
    ("mlp", {"depth": 3}, "--depth does not apply to --arch mlp (only to smallcnn, unet); leave it out"),
    ("resnet18", {"base": 8}, "--base does not apply to --arch resnet18 (only to smallcnn, unet, fcn); leave it out"),
    ("smallcnn", {"head": "conv"}, "--head conv is the per-pixel head of the segmentation nets (unet, fcn)"),
])
def test_bad_options_are_refused_with_the_fix(arch, options, message):
    with pytest.raises(OptionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        create_model(arch, 3, 1, (64, 64), **options)


def test_too_small_images_name_the_depth_and_the_smallest_size():
    with pytest.raises(OptionError, match=r"^--depth 3 halves the image 3 times, and 6x9 images have less than one "
                                          r"pixel left at the bottleneck; give --depth 2 or less, or larger images$"):
        create_model("unet", 3, 1, (6, 9))
    with pytest.raises(OptionError, match=r"--depth 3 .* 1x9 images .*; unet needs images of 2x2 px or more$"):
        create_model("unet", 3, 1, (1, 9))
    model = create_model("unet", 3, 1, (32, 32), depth=4, check_size=False)
    check_input_size("unet", model, 1, (16, 40))
    with pytest.raises(OptionError, match=r"--arch unet needs images of at least 16x16, the dataset is 12x40"):
        check_input_size("unet", model, 1, (12, 40))


def test_same_seed_same_net_same_output():
    x = torch.randn(2, 3, 33, 29)
    a, b = tiny().eval(), tiny().eval()
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
    with torch.no_grad():
        assert torch.equal(a(x), b(x)) and torch.equal(a(x), a(x))


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_onnx_export_takes_any_height_and_width(tmp_path, padding):
    ort = pytest.importorskip("onnxruntime")
    model = tiny(padding).eval()
    path = tmp_path / "unet.onnx"
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.rand(2, 3, 64, 64),), str(path), dynamo=False, opset_version=18,
                          input_names=["image"], output_names=["logits"], dynamic_axes={"image": axes, "logits": axes})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for size in [(64, 64), (80, 72), (37, 50), (16, 20)]:
        x = torch.rand(2, 3, *size)
        out = session.run(None, {"image": x.numpy()})[0]
        with torch.no_grad():
            expected = model(x).numpy()
        assert out.shape == expected.shape == (2, 5, *size)
        assert np.abs(out - expected).max() < 1e-3


def test_inspect_says_how_the_border_is_handled():
    paper = create_model("unet", 2, 1, (64, 64), base=1, depth=4, padding="valid")
    assert paper.inspect_notes((388, 388)) == [
        "valid convolutions: a 572x572 tile gives a 388x388 output; cvkit mirror-pads each side by 92 px "
        "(overlap-tile), so the output is the input's size"]
    (note,) = inspect_arch("unet", 11, 3, (64, 64), padding="valid").notes
    assert note == ("valid convolutions: a 156x156 tile gives a 68x68 output; cvkit mirror-pads each side by 44 px "
                    "(overlap-tile), and the bottom and right by 4 and 4 px more so every max-pool sees an even "
                    "size, so the output is the input's size")
    (same,) = create_model("unet", 3, 1, (64, 64), padding="same", depth=4).inspect_notes((60, 64))
    assert same == ("same convolutions: cvkit mirror-pads the bottom and right of a 60x64 image to 64x64 (a "
                    "multiple of 16 for 4 max-pools) and crops the output back to 60x64")


def test_inspect_command_prints_the_tiling_and_the_decoders_receptive_fields():
    out = run_stdout("inspect", "--arch", "unet", "--input-size", "64", "--option", "padding=valid", "--json")
    report = json.loads(out)
    assert report["notes"][0].startswith("valid convolutions: a 156x156 tile gives a 68x68 output")
    rows = {r["name"]: r for r in report["rows"]}
    # The last layer's units see windows of different sizes (exact per unit: the test below); the table gives the
    # largest. The paper's net (depth 4): 188 or 204 px.
    assert rows["features.crop"]["receptive_field"] == [100, 100] and rows["features.crop"]["jump"] == [1, 1]
    assert rows["head.conv"]["receptive_field"] == [100, 100]
    assert rows["features.bottleneck.1.0"]["receptive_field"] == [68, 68]
    paper = {c.name: c for c in trace(create_model("unet", 2, 1, (64, 64), base=1, depth=4, padding="valid"), 1,
                                      (64, 64))}
    assert paper["features.crop"].field[0] == (204, 204)


def _measured_windows(model: nn.Module, layer: str, side: int, units: range) -> list[tuple[int, int]]:
    """(first, last) input row that unit (u, centre) of ``layer`` depends on, from the gradient of a linear copy."""
    net = linear_copy(model, collapse=False)
    windows = []
    for u in units:
        x = torch.ones(1, model.features.enc1[0][0].in_channels, side, side, dtype=torch.float64,
                       requires_grad=True)
        out = forward_to(net, layer, x.clone())
        out[0, :, u, out.shape[3] // 2].sum().backward()
        rows = torch.nonzero(x.grad[0].sum(0).abs().sum(1) > 0).flatten()
        windows.append((int(rows[0]), int(rows[-1])))
    return windows


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_decoder_receptive_fields_are_exact_for_every_unit(padding):
    """After an up-convolution neighbouring units' windows are not evenly spaced; the trace follows each one."""
    side = 192  # the central units' windows (100 px at most) lie inside the image: no mirrored pixels
    model = create_model("unet", 2, 1, (side, side), base=2, depth=3, padding=padding)
    calls = {c.name: c for c in trace(model, 1, (side, side)) if not c.repeat}
    for layer in ("features.dec3.up", "features.dec2.convs.0.0", "features.dec1.convs.1.0", "features.crop"):
        field = calls[layer].field
        h = calls[layer].out_shape[1]
        units = range(h // 2 - 6, h // 2 + 6)  # units whose windows lie inside the image (no mirrored pixels)
        measured = _measured_windows(model, layer, side, units)
        axis = field.axes[0] if hasattr(field, "axes") else None
        for u, (first, last) in zip(units, measured):
            lo, hi = axis.at(u) if axis else (field[2][0] + u * field[1][0] - (field[0][0] - 1) / 2,
                                              field[2][0] + u * field[1][0] + (field[0][0] - 1) / 2)
            assert (lo, hi) == (first, last), (layer, u)
        assert field[0][0] == max(last - first + 1 for first, last in measured)


@pytest.mark.parametrize("option, message", [
    ("padding", "is not KEY=VALUE"), ("size=3", "is not KEY=VALUE"), ("depth=two", "depth takes int"),
    ("batchnorm=maybe", "batchnorm takes bool"), ("hidden=64,0", "--hidden 64,0 must be layer widths"), ("padding=full", "--padding 'full' is not one of valid, same"),
])
def test_inspect_options_are_checked_with_one_line(option, message):
    from typer.testing import CliRunner

    from tests.hostile.test_hostile_files import one_line_error

    one_line_error(run(CliRunner(), "inspect", "--arch", "unet", "--input-size", "64", "--option", option), message)
