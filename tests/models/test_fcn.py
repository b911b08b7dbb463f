"""--arch fcn: any classifier with several scales as the encoder (cvkit's own nets, torchvision's, timm's
features_only), the fcn8s and transposed decoders, logits at the input's size, a classification
run's weights loaded into the encoder, the refusals, ONNX export and what ``cvkit inspect`` says."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import safetensors.torch
import timm.models._builder
import torch
import torch.nn.functional as F
from torch import nn

from cvkit.errors import OptionError
from cvkit.files.jsonio import type_ok
from cvkit.files.run import ARCH_OPTION_TYPES
from cvkit.inspect import inspect_arch
from cvkit.models import arch_options, block_groups, check_input_size, create_model, load_weights
from cvkit.models.fcn import bilinear_, upsampling


def fcn(encoder: str = "smallcnn", decoder: str = "fcn8s", in_chans: int = 3, size: int = 32, **options) -> nn.Module:
    torch.manual_seed(0)
    return create_model("fcn", 5, in_chans, (size, size), encoder=encoder, decoder=decoder, **options)


ENCODERS = [("smallcnn", [2, 4]), ("lenet5", [2, 4]), ("nin", [1, 2, 4]), ("resnet18", [2, 4, 8, 16, 32])]


@pytest.mark.parametrize("decoder", ["fcn8s", "transposed"])
@pytest.mark.parametrize("encoder,strides", ENCODERS, ids=[e for e, _ in ENCODERS])
def test_logits_have_the_input_size(encoder, strides, decoder):
    model = fcn(encoder, decoder, base=8).eval()
    assert model.inspect_notes((32, 32))[0].startswith(
        f"fcn: --encoder {encoder} gives feature maps at strides {', '.join(map(str, strides))}; --decoder {decoder}")
    with torch.no_grad():
        for size in [(32, 32), (37, 50), (64, 33)]:
            assert model(torch.randn(2, 3, *size)).shape == (2, 5, *size)


def test_torchvision_encoder():
    model = fcn("alexnet", size=64).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 70, 64)).shape == (1, 5, 70, 64)


def test_timm_interface_and_one_training_step():
    model = fcn(in_chans=1)
    assert model.dense and model.num_features == 32
    x, y = torch.randn(4, 1, 28, 20), torch.randint(0, 5, (4, 28, 20))
    stem = model.features.encoder.features[0][0][0].weight
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
        assert features.shape == (4, 32, 28, 20)
        torch.testing.assert_close(model.forward_head(features), model(x))
        assert model.forward_head(features, pre_logits=True).shape == (4, 32)
    model.reset_classifier(2)
    with torch.no_grad():
        assert model(x).shape == (4, 2, 28, 20)
    groups = block_groups(model)
    assert [g[0].split(".")[1] for g in groups] == ["encoder", "decoder"]  # --freeze 1: the decoder and head train


def test_fcn8s_fuses_the_last_three_scales_with_bilinear_upsamplings():
    model = fcn("resnet18", size=64)
    decoder = model.features.decoder
    assert [c.in_channels for c in decoder.score] == [128, 256, 512]  # strides 8, 16, 32
    assert [(u.stride, u.kernel_size) for u in decoder.up] == [((2, 2), (4, 4))] * 2
    assert decoder.final.stride == (8, 8) and decoder.final.kernel_size == (16, 16)
    # Initialised to bilinear upsampling: a constant map stays constant (away from the border).
    with torch.no_grad():
        out = decoder.up[0](torch.ones(1, 32, 6, 6))
    torch.testing.assert_close(out[:, :, 1:-1, 1:-1], torch.ones(1, 32, 10, 10))
    odd = upsampling(2, 3)
    assert odd.kernel_size == (5, 5) and odd(torch.zeros(1, 2, 4, 5)).shape == (1, 2, 12, 15)
    conv = nn.ConvTranspose2d(1, 1, 4, 2, 1, bias=False)
    bilinear_(conv)
    torch.testing.assert_close(conv.weight[0, 0, 0], torch.tensor([0.0625, 0.1875, 0.1875, 0.0625]))


def test_transposed_decoder_halves_the_width_down_to_base():
    model = fcn("resnet18", "transposed", size=64, base=16)
    widths = [m.out_channels for m in model.features.decoder.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert widths == [256, 128, 64, 32, 16] and model.num_features == 16


def test_arch_options_resolve_and_rebuild_the_same_net():
    options = arch_options("fcn", decoder="transposed")
    assert options == {"head": "conv", "activation": None, "dropout": None, "batchnorm": None, "hidden": None,
                       "base": 32, "encoder": "smallcnn", "decoder": "transposed"}
    assert all(type_ok(v, ARCH_OPTION_TYPES[k]) for k, v in options.items())
    saved = json.loads(json.dumps(options))
    first, again = fcn(decoder="transposed"), create_model("fcn", 5, 3, (32, 32), **saved)
    assert {k: v.shape for k, v in first.state_dict().items()} == {k: v.shape for k, v in again.state_dict().items()}


def test_a_classification_runs_weights_load_into_the_encoder(tmp_path):
    classifier = create_model("smallcnn", 10, 1, (28, 28))  # its default fc head, sized for 28 px
    safetensors.torch.save_file(classifier.state_dict(), tmp_path / "model.safetensors")
    model = fcn(in_chans=1, size=64)
    report = load_weights(model, tmp_path / "model.safetensors")
    encoder = {k: v for k, v in classifier.state_dict().items() if k.startswith("features.")}
    assert report["loaded"] == len(encoder)
    assert sorted(report["skipped"]) == sorted(k for k in classifier.state_dict() if k.startswith("head."))
    own = model.state_dict()
    for name, tensor in encoder.items():
        assert torch.equal(own[f"features.encoder.{name}"], tensor), name
    assert all(not n.startswith("features.encoder.") for n in report["missing"])  # only the decoder and head are new


def test_a_timm_classifiers_weights_load_into_a_features_only_encoder(tmp_path):
    classifier = create_model("resnet18", 10, 3, (64, 64))  # random weights: nothing downloaded
    safetensors.torch.save_file(classifier.state_dict(), tmp_path / "model.safetensors")
    model = fcn("resnet18", size=64)
    report = load_weights(model, tmp_path / "model.safetensors")
    assert sorted(report["skipped"]) == ["fc.bias", "fc.weight"]
    assert report["loaded"] == len(classifier.state_dict()) - 2
    own = model.state_dict()
    for name, tensor in classifier.state_dict().items():
        if not name.startswith("fc."):
            assert torch.equal(own[f"features.encoder.{name}"], tensor), name


def test_timm_encoders_with_renamed_stages_load_too(tmp_path):
    """timm's features_only nets rename a top-level nn.Sequential's children (vgg's features.0 -> features_0)."""
    classifier = create_model("vgg11", 10, 3, (32, 32))
    safetensors.torch.save_file({k: v for k, v in classifier.state_dict().items() if k.startswith("features.")},
                                tmp_path / "features.safetensors")
    model = fcn("vgg11", size=32)
    report = load_weights(model, tmp_path / "features.safetensors")
    assert report["skipped"] == []
    torch.testing.assert_close(model.state_dict()["features.encoder.features_0.weight"],
                               classifier.state_dict()["features.0.weight"])


def test_pretrained_timm_encoder_offline_says_what_to_do(monkeypatch):
    import cvkit.models.weights

    monkeypatch.setattr(cvkit.models.weights, "cached_timm_weights", lambda arch: None)
    monkeypatch.setattr(cvkit.models.weights, "hub_unreachable", lambda: "huggingface.co cannot be reached (no route)")
    with pytest.raises(OptionError, match=r"^could not fetch pretrained weights for 'resnet18' \(offline\?\): "
                                          r"huggingface.co cannot be reached \(no route\); download them elsewhere "
                                          r"and pass --weights FILE$"):
        create_model("fcn", 3, 3, (64, 64), encoder="resnet18", pretrained=True)

    def offline(*args, **kwargs):
        raise OSError("[Errno -2] Name or service not known")

    monkeypatch.setattr(cvkit.models.weights, "hub_unreachable", lambda: None)  # as if the network were up
    monkeypatch.setattr(timm.models._builder, "load_pretrained", offline)
    with pytest.raises(OptionError, match=r"'resnet18' \(offline\?\): \[Errno -2\] Name or service not known; "
                                          r"download them elsewhere and pass --weights FILE"):
        create_model("fcn", 3, 3, (64, 64), encoder="resnet18", pretrained=True)


@pytest.mark.parametrize("options,message", [
    ({"encoder": "mlp"}, "--encoder mlp flattens the image and cannot give multi-scale feature maps; pick a "
                         "convolutional net such as smallcnn, vgg11 or resnet18"),
    ({"encoder": "vit_tiny_patch16_224"}, "--encoder vit_tiny_patch16_224 gives feature maps at strides 16 only, "
                                          "not at several scales"),
    ({"encoder": "unet"}, "--encoder unet is a segmentation net; give a classifier's architecture"),
    ({"encoder": "smalcnn"}, "--encoder: Unknown architecture 'smalcnn'. Did you mean smallcnn"),
    ({"encoder": "smallcnn", "pretrained": True}, "--encoder smallcnn is one of cvkit's own nets and has no "
                                                  "pretrained weights"),
    ({"decoder": "fpn"}, "--decoder 'fpn' is not one of fcn8s, transposed"),
    ({"padding": "same"}, "--padding does not apply to --arch fcn (only to unet); leave it out"),
    ({"batchnorm": False}, "--batchnorm does not apply to --arch fcn; leave it out"),
    ({"head": "gap"}, "--head gap does not apply to --arch fcn"),
])
def test_bad_options_are_refused_with_the_fix(options, message):
    with pytest.raises(OptionError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        create_model("fcn", 3, 3, (64, 64), **options)


def test_too_small_images_name_the_encoder():
    with pytest.raises(OptionError, match=r"^--encoder resnet18 downsamples 32x: it needs images of at least 16x16, "
                                          r"these are 8x8; pick an --encoder with fewer downsamplings"):
        create_model("fcn", 3, 3, (8, 8), encoder="resnet18")
    model = fcn("resnet18", size=32)
    with pytest.raises(OptionError, match="--arch fcn needs images of at least 16x16, the dataset is 12x12"):
        check_input_size("fcn", model, 3, (12, 12))


def test_same_seed_same_net_same_output():
    x = torch.randn(2, 3, 30, 41)
    a, b = fcn().eval(), fcn().eval()
    with torch.no_grad():
        assert torch.equal(a(x), b(x)) and torch.equal(a(x), a(x))


@pytest.mark.parametrize("encoder", ["smallcnn", "lenet5"])  # lenet5: scales aligned by resizing
def test_onnx_export_takes_any_height_and_width(tmp_path, encoder):
    ort = pytest.importorskip("onnxruntime")
    model = fcn(encoder, base=8).eval()
    path = tmp_path / "fcn.onnx"
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.rand(2, 3, 64, 64),), str(path), dynamo=False, opset_version=18,
                          input_names=["image"], output_names=["logits"], dynamic_axes={"image": axes, "logits": axes})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for size in [(64, 64), (80, 72), (37, 50)]:
        x = torch.rand(2, 3, *size)
        out = session.run(None, {"image": x.numpy()})[0]
        with torch.no_grad():
            expected = model(x).numpy()
        assert out.shape == expected.shape == (2, 5, *size)
        assert np.abs(out - expected).max() < 1e-3


def test_inspect_follows_the_decoder():
    result = inspect_arch("fcn", 5, 3, (64, 64))
    assert result.notes == ["fcn: --encoder smallcnn gives feature maps at strides 2, 4; --decoder fcn8s (fuses 2, 4); "
                            "a 64x64 image needs no padding (each side a multiple of 4)"]
    rows = {r.name: r for r in result.rows}
    assert rows["features.decoder.up.0"].jump == [2, 2] and rows["features.decoder.final"].jump == [1, 1]
    assert rows["head.conv"].receptive_field == [24, 24]
