"""The architecture registry: every cvkit net and a sample of timm and torchvision ones train one
step and offer timm's interface; options, input sizes, weight loading and the unknown-name errors."""

from __future__ import annotations

import functools
import json
import os
import pickle

import pytest
import safetensors.torch
import timm
import timm.models._builder
import torch
import torchvision
from torch import nn

from cvkit.errors import CvkitError, OptionError, UnknownArchitecture, UnsafeCheckpoint
from cvkit.models import (
    arch_options,
    block_groups,
    check_input_size,
    count_parameters,
    create_model,
    head_parameter_names,
    list_models,
    load_weights,
    resolve_arch,
)
from cvkit.models.registry import CVKIT_MODELS
from tests.conftest import run_stdout


@functools.cache
def built(arch: str, in_chans: int, size: int, **options) -> nn.Module:
    """One instance per configuration for the whole module (VGG takes seconds to initialise)."""
    torch.manual_seed(0)
    return create_model(arch, 3, in_chans, (size, size), **options)


@pytest.fixture(autouse=True, scope="module")
def free_models():
    yield
    built.cache_clear()  # free the VGGs (1.5 GB) for the tests after these


# (arch, in_chans, image size, options). Every cvkit classifier with 1 and 3 channels; then timm and torchvision.
# The segmentation nets (per-pixel logits) have the same test in tests/models/test_unet.py and test_fcn.py.
DENSE = {"unet", "fcn"}
CASES = [
    *((arch, c, 28, {}) for arch in CVKIT_MODELS if arch not in DENSE for c in (1, 3)),
    ("lenet5", 1, 32, {"head": "gap"}),
    ("smallcnn", 3, 32, {"head": "fc"}),
    ("nin", 1, 28, {"batchnorm": True}),
    ("resnet18", 1, 32, {}),
    ("vgg11", 1, 32, {}),
    ("vgg11", 3, 32, {"head": "gap"}),
    ("vgg11_bn", 3, 32, {}),
    ("mobilenetv3_small_050", 3, 32, {"head": "gap"}),
    ("efficientnet_b0", 1, 32, {}),
    ("alexnet", 1, 63, {}),
    ("alexnet", 3, 64, {"head": "gap"}),
    ("googlenet", 1, 32, {}),
    ("shufflenet_v2_x0_5", 3, 32, {}),
    ("squeezenet1_1", 1, 32, {}),
]
FLAT = {"perceptron", "mlp"}  # nets whose features are a vector, not a feature map


@pytest.mark.parametrize("arch,in_chans,size,options", CASES,
                         ids=[f"{a}-{c}ch-{s}px{'-' + '-'.join(f'{k}={v}' for k, v in o.items()) if o else ''}"
                              for a, c, s, o in CASES])
def test_one_training_step_and_timm_interface(arch, in_chans, size, options):
    model = built(arch, in_chans, size, **options)
    check_input_size(arch, model, in_chans, (size, size))
    x = torch.randn(2, in_chans, size, size)
    y = torch.tensor([0, 2])
    model.train()
    stem = next(p for n, p in model.named_parameters() if p.ndim > 1)
    before = {"stem": stem.detach().clone(), "classifier": model.get_classifier().weight.detach().clone()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    logits = model(x)
    loss = nn.functional.cross_entropy(logits, y)
    loss.backward()
    # BatchNorm over a batch of two 1x1 maps makes huge gradients (EfficientNet at 32 px): clip them.
    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad()  # the cached model keeps no gradients (VGG's would hold 500 MB)

    assert logits.shape == (2, 3)
    assert torch.isfinite(loss)
    assert not torch.equal(before["stem"], stem), "the first layer did not learn"
    assert not torch.equal(before["classifier"], model.get_classifier().weight), "the classifier did not learn"

    model.eval()
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.ndim == (2 if arch in FLAT else 4)
        assert features.shape[1] == model.num_features
        logits = model(x)
        assert torch.isfinite(logits).all()
        torch.testing.assert_close(model.forward_head(features), logits)


def test_gap_head_on_vgg_replaces_its_fully_connected_layers():
    model = built("vgg11", 3, 32, head="gap")
    fc = model.get_classifier()
    assert isinstance(fc, nn.Linear) and (fc.in_features, fc.out_features) == (model.num_features, 3) == (512, 3)
    assert head_parameter_names(model) == {"head.fc.weight", "head.fc.bias"}
    # The 4096-wide layers (120M parameters) are gone, not merely unused: vgg11's convs hold 9.2M.
    assert count_parameters(model) < 10_000_000
    assert not any("pre_logits" in name for name, _ in model.named_parameters())
    assert not any(isinstance(m, nn.Dropout) for m in model.head.modules())
    with torch.no_grad():
        pooled = model.forward_head(model.forward_features(torch.randn(2, 3, 32, 32)), pre_logits=True)
    assert pooled.shape == (2, 512)


def test_own_head_of_timm_models_and_its_parameter_names():
    vgg = built("vgg11", 1, 32)
    head = head_parameter_names(vgg)
    assert {"head.fc.weight", "pre_logits.fc1.weight", "pre_logits.fc2.weight"} <= head
    resnet = built("resnet18", 1, 32)
    head = head_parameter_names(resnet)
    assert head == {"fc.weight", "fc.bias"}
    groups = block_groups(resnet)
    assert groups[0][0] == "conv1.weight" and groups[-1][0].startswith("layer4.")
    in_groups = [n for group in groups for n in group]
    assert sorted(in_groups + sorted(head)) == sorted(n for n, _ in resnet.named_parameters())


def test_smallcnn_head_fc_flattens_into_hidden_layers():
    model = built("smallcnn", 3, 32, head="fc")
    linears = [m for m in model.head.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(32 * 8 * 8, 256), (256, 3)]
    assert head_parameter_names(model) == {f"head.{n}" for n, _ in model.head.named_parameters()}
    assert len(block_groups(model)) == 2
    with pytest.raises(OptionError, match="built for 32x32 images.*--head gap"):
        check_input_size("smallcnn", model, 3, (64, 64))


def test_smallcnn_default_is_small_modern_and_channels_last_friendly():
    model = create_model("smallcnn", 10, 3, (32, 32))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 16, 32, 32]
    assert all(c.bias is None for c in convs)  # BatchNorm follows each
    assert isinstance(model.get_classifier(), nn.Linear) and model.get_classifier().in_features == 256
    gap = create_model("smallcnn", 10, 3, (32, 32), head="gap")
    assert gap.get_classifier().in_features == 32
    x = torch.randn(2, 3, 32, 32).to(memory_format=torch.channels_last)
    assert model.to(memory_format=torch.channels_last)(x).shape == (2, 10)


def test_smallcnn_base_and_depth_shape_its_stages():
    narrow = create_model("smallcnn", 10, 1, (28, 28), base=16)
    assert [c.out_channels for c in narrow.modules() if isinstance(c, nn.Conv2d)] == [16, 16, 32, 32]
    assert narrow.get_classifier().in_features == 256 and narrow.head.pre[1].in_features == 32 * 7 * 7
    deep = create_model("smallcnn", 10, 1, (32, 32), base=8, depth=3)
    assert [c.out_channels for c in deep.modules() if isinstance(c, nn.Conv2d)] == [8, 8, 16, 16, 32, 32]
    assert deep.num_features == 32 and deep.head.pre[1].in_features == 32 * 4 * 4
    assert arch_options("smallcnn", base=8, depth=3)["base"] == 8
    with pytest.raises(OptionError, match=r"--arch smallcnn needs images of at least 16x16, the dataset is 8x8"):
        create_model("smallcnn", 3, 1, (8, 8), depth=4)  # four 2x2 pools


def test_options_change_the_modules():
    def kinds(model: nn.Module) -> set[type]:
        return {type(m) for m in model.modules()}

    plain = create_model("smallcnn", 3, 1, (28, 28), activation="elu", dropout=0.0, batchnorm=False)
    assert nn.ELU in kinds(plain) and nn.ReLU not in kinds(plain)
    assert nn.BatchNorm2d not in kinds(plain) and nn.Dropout not in kinds(plain)
    assert all(m.bias is not None for m in plain.modules() if isinstance(m, nn.Conv2d))
    dropped = create_model("smallcnn", 3, 1, (28, 28), dropout=0.3)
    assert [m.p for m in dropped.modules() if isinstance(m, nn.Dropout)] == [0.3]
    assert nn.BatchNorm1d in kinds(create_model("mlp", 3, 1, (28, 28), batchnorm=True, hidden=[32]))
    lenet = create_model("lenet5", 3, 1, (28, 28))
    assert {nn.Tanh, nn.AvgPool2d} <= kinds(lenet) and nn.ReLU not in kinds(lenet)
    assert nn.GELU in kinds(create_model("lenet5", 3, 1, (28, 28), activation="gelu"))
    nin = create_model("nin", 3, 1, (28, 28))
    assert not any(isinstance(m, nn.Linear) for m in nin.modules())  # class maps + global average pooling
    resnet = create_model("resnet18", 3, 1, (32, 32), activation="elu", dropout=0.25)
    assert nn.ELU in kinds(resnet) and resnet.drop_rate == 0.25


@pytest.mark.parametrize("arch,options,message", [
    ("smallcnn", {"activation": "swish"},
     "--activation 'swish' is not one of relu, leaky_relu, elu, tanh, sigmoid, gelu"),
    ("smallcnn", {"head": "max"}, "--head 'max' is not one of auto, gap, gmp, fc"),
    ("smallcnn", {"dropout": 1.5}, "--dropout 1.5"),
    ("smallcnn", {"init": "zeros"}, "--init 'zeros' is not one of"),
    ("perceptron", {"head": "gap"}, "--head gap needs a feature map"),
    ("perceptron", {"activation": "relu"}, "--activation does not apply to --arch perceptron"),
    ("nin", {"head": "fc"}, "no fully connected head by design"),
    ("resnet18", {"batchnorm": True}, "--batchnorm apply to cvkit's own nets"),
    ("resnet18", {"hidden": [64]}, "--hidden apply to cvkit's own nets"),
    ("alexnet", {"activation": "elu"}, "--activation apply to cvkit's own nets"),
    ("smallcnn", {"pretrained": True}, "has no pretrained weights"),
    ("resnet18", {"pretrained": True, "init": "he"}, "would overwrite the pretrained weights"),
    ("vit_b_16", {}, "use timm's vit_base_patch16_224"),
])
def test_bad_options_are_refused_with_the_fix(arch, options, message):
    with pytest.raises(OptionError, match=message.replace("(", r"\(").replace("[", r"\[")):
        create_model(arch, 3, 1, (28, 28), **options)


def test_arch_options_resolve_defaults_and_rebuild_the_same_net():
    options = arch_options("lenet5", head="auto", dropout=0.1)
    assert options == {"head": "fc", "activation": "tanh", "dropout": 0.1, "batchnorm": False, "hidden": [120, 84]}
    assert arch_options(head="gap") == {"head": "gap", "activation": None, "dropout": None, "batchnorm": None,
                                        "hidden": None}
    saved = json.loads(json.dumps(options))
    first = create_model("lenet5", 3, 1, (28, 28), dropout=0.1)
    again = create_model("lenet5", 3, 1, (28, 28), **saved)
    assert {k: v.shape for k, v in first.state_dict().items()} == {k: v.shape for k, v in again.state_dict().items()}
    assert arch_options("resnet18", dropout=0.2)["dropout"] == 0.2


def test_init_redraws_weights_and_zeroes_biases():
    torch.manual_seed(0)
    default = create_model("lenet5", 3, 1, (28, 28))
    torch.manual_seed(0)
    xavier = create_model("lenet5", 3, 1, (28, 28), init="xavier")
    assert not torch.equal(default.get_classifier().weight, xavier.get_classifier().weight)
    assert all(not m.bias.any() for m in xavier.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


@pytest.mark.parametrize("arch", ["smallcnn", "nin", "googlenet", "squeezenet1_1"])
def test_reset_classifier_gives_a_new_number_of_outputs(arch):
    model = create_model(arch, 10, 1, (32, 32))
    model.reset_classifier(7)
    with torch.no_grad():
        assert model.eval()(torch.randn(2, 1, 32, 32)).shape == (2, 7)


def test_unknown_architecture_suggests_the_closest_names():
    with pytest.raises(UnknownArchitecture,
                       match=r"Unknown architecture 'resnt18'\. Did you mean resnet18.*See 'cvkit models'"):
        resolve_arch("resnt18")
    with pytest.raises(UnknownArchitecture, match=r"Unknown architecture 'qqqqqq'. See 'cvkit models'"):
        create_model("qqqqqq", 3, 1, (28, 28))


def test_resolution_order_and_listing():
    assert resolve_arch("smallcnn") == "cvkit"
    assert resolve_arch("resnet18") == "timm"
    assert resolve_arch("alexnet") == resolve_arch("googlenet") == "torchvision"
    everything = list_models()
    assert everything[:len(CVKIT_MODELS)] == [(name, "cvkit") for name in CVKIT_MODELS]
    assert ("resnet18", "timm") in list_models("resnet1*")
    assert all(name.startswith("resnet1") for name, _ in list_models("resnet1*"))
    assert ("alexnet", "torchvision") in list_models("alex")
    assert sum(source == "timm" for _, source in everything) == len(timm.list_models())
    assert not any(source == "torchvision" and timm.is_model(name) for name, source in everything)


@pytest.mark.parametrize("arch,size,smallest", [("vgg11", 28, 32), ("resnet50", 8, 16), ("alexnet", 32, 63)])
def test_too_small_images_are_refused_with_the_smallest_size(arch, size, smallest):
    model = create_model(arch, 3, 1, (size, size)) if arch != "vgg11" else built("vgg11", 1, 32)
    expected = (rf"--arch {arch} needs images of at least {smallest}x{smallest}, the dataset is {size}x{size}; "
                rf"rerun 'cvkit prepare \.\.\. --size {smallest}' \(or larger\)")
    with pytest.raises(OptionError, match=expected):
        check_input_size(arch, model, 1, (size, size))


def test_small_images_fit_cvkit_nets_and_lenet5_names_its_minimum():
    check_input_size("resnet18", create_model("resnet18", 10, 1, (28, 28)), 1, (28, 28))  # the Fashion-MNIST baseline
    check_input_size("smallcnn", create_model("smallcnn", 3, 1, (28, 28)), 1, (28, 28))
    check_input_size("smallcnn", create_model("smallcnn", 3, 1, (28, 28), head="gap"), 1, (8, 8))
    with pytest.raises(OptionError, match="--arch lenet5 needs images of at least 12x12, the dataset is 8x8"):
        create_model("lenet5", 3, 1, (8, 8))


# --------------------------------------------------------------------------- --weights


def test_safetensors_round_trip(tmp_path):
    source = create_model("smallcnn", 3, 1, (28, 28))
    safetensors.torch.save_file(source.state_dict(), tmp_path / "w.safetensors")
    target = create_model("smallcnn", 3, 1, (28, 28))
    report = load_weights(target, tmp_path / "w.safetensors")
    assert report == {"loaded": len(source.state_dict()), "skipped": [], "missing": []}
    for name, tensor in source.state_dict().items():
        assert torch.equal(tensor, target.state_dict()[name])


def test_torch_file_nested_state_dict_round_trip(tmp_path):
    source = create_model("mlp", 3, 1, (28, 28), hidden=[16])
    torch.save({"epoch": 3, "model": source.state_dict()}, tmp_path / "last.ckpt")
    target = create_model("mlp", 3, 1, (28, 28), hidden=[16])
    assert load_weights(target, tmp_path / "last.ckpt")["loaded"] == len(source.state_dict())
    assert torch.equal(target.get_classifier().weight, source.get_classifier().weight)


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_a_file_that_would_run_code_is_refused_unrun(tmp_path, writer):
    marker = tmp_path / "MARKER"
    path = tmp_path / "evil.pt"
    payload = {"weight": torch.zeros(2), "x": _Payload(str(marker))}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(UnsafeCheckpoint, match="is not a plain file of tensors that loads without running code.*cvkit refuses"):
        load_weights(create_model("smallcnn", 3, 1, (28, 28)), path)
    assert not marker.exists()


def test_a_classifier_of_another_shape_is_skipped_and_reported(tmp_path):
    source = create_model("smallcnn", 10, 3, (28, 28))
    torch.save(source.state_dict(), tmp_path / "ten.pt")
    target = create_model("smallcnn", 4, 3, (28, 28))
    report = load_weights(target, tmp_path / "ten.pt")
    assert sorted(report["skipped"]) == sorted(report["missing"]) == ["head.fc.bias", "head.fc.weight"]
    assert report["loaded"] == len(source.state_dict()) - 2


def test_rgb_first_conv_is_summed_for_one_channel(tmp_path):
    source = create_model("smallcnn", 3, 3, (28, 28))
    safetensors.torch.save_file(source.state_dict(), tmp_path / "rgb.safetensors")
    target = create_model("smallcnn", 3, 1, (28, 28))
    report = load_weights(target, tmp_path / "rgb.safetensors")
    assert report["skipped"] == [] and report["missing"] == []
    stem = "features.0.0.0.weight"
    torch.testing.assert_close(target.state_dict()[stem], source.state_dict()[stem].sum(1, keepdim=True))


def test_plain_torchvision_and_timm_weights_load_into_the_adapters(tmp_path):
    plain = torchvision.models.shufflenet_v2_x0_5(num_classes=3)
    torch.save(plain.state_dict(), tmp_path / "shufflenet.pth")
    adapted = create_model("shufflenet_v2_x0_5", 3, 3, (32, 32))
    assert load_weights(adapted, tmp_path / "shufflenet.pth")["loaded"] == len(plain.state_dict())
    torch.testing.assert_close(adapted.get_classifier().weight, plain.fc.weight)

    timm_model = timm.create_model("mobilenetv3_small_050", num_classes=1000)
    safetensors.torch.save_file(timm_model.state_dict(), tmp_path / "mnv3.safetensors")
    gap = create_model("mobilenetv3_small_050", 3, 3, (32, 32), head="gap")
    report = load_weights(gap, tmp_path / "mnv3.safetensors")
    assert set(report["skipped"]) == {"conv_head.weight", "conv_head.bias", "classifier.weight", "classifier.bias"}
    assert report["missing"] == ["head.fc.weight", "head.fc.bias"]


def test_unreadable_weights_name_the_option(tmp_path):
    model = create_model("smallcnn", 3, 1, (28, 28))
    with pytest.raises(OptionError, match="--weights .*missing.pt: no such file"):
        load_weights(model, tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not weights at all")
    with pytest.raises(CvkitError, match="junk.pt is not a plain file of tensors"):
        load_weights(model, tmp_path / "junk.pt")
    torch.save({"w": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(OptionError, match="none of its 1 tensors fits this model"):
        load_weights(model, tmp_path / "other.pt")


# --------------------------------------------------------------------------- --pretrained


def test_pretrained_weights_that_cannot_be_fetched_say_what_to_do(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("[Errno -2] Name or service not known")

    import cvkit.models.weights

    monkeypatch.setattr(cvkit.models.weights, "hub_unreachable", lambda: None)  # as if the network were up
    monkeypatch.setattr(timm.models._builder, "load_pretrained", offline)
    monkeypatch.setattr(torchvision.models._api.WeightsEnum, "get_state_dict", offline)
    for arch in ("resnet18", "alexnet"):
        with pytest.raises(OptionError, match=rf"could not fetch pretrained weights for '{arch}' \(offline\?\): "
                                              r"\[Errno -2\] Name or service not known; download them elsewhere "
                                              r"and pass --weights FILE"):
            create_model(arch, 3, 1, (64, 64), pretrained=True)
    # no network at all: refused before timm's hub client retries for a minute
    monkeypatch.setattr(cvkit.models.weights, "hub_unreachable", lambda: "huggingface.co cannot be reached (no route)")
    with pytest.raises(OptionError, match=r"'resnet18' \(offline\?\): huggingface.co cannot be reached \(no route\); "
                                          r"download them elsewhere and pass --weights FILE"):
        create_model("resnet18", 3, 1, (64, 64), pretrained=True)


def test_cvkit_nets_build_without_importing_timm_or_torchvision():
    import subprocess
    import sys

    code = ("import sys; from cvkit.models import create_model, check_input_size, head_parameter_names; "
            "m = create_model('smallcnn', 10, 1, (28, 28)); check_input_size('smallcnn', m, 1, (28, 28)); "
            "head_parameter_names(m); print(sorted(k for k in ('timm', 'torchvision') if k in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_models_command_lists_cvkit_nets_first():
    names = run_stdout("-q", "models").split()
    assert names[:5] == ["perceptron", "mlp", "lenet5", "nin", "smallcnn"]
    assert "resnet18" in names and "alexnet" in names
    rows = json.loads(run_stdout("models", "lenet*", "--params", "--input-size", "28", "--channels", "1", "--json"))
    assert rows[0]["name"] == "lenet5" and rows[0]["parameters"] > 10_000
