"""cvkit's batched CAM methods against pytorch-grad-cam, CAM against its definition, refusals, and
memory: hooks gone, no gradients left on the parameters, no tensors piling up over many calls."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch
from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, LayerCAM, ScoreCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from cvkit.errors import OptionError
from cvkit.explain.gradients import normalize_maps
from cvkit.explain.methods import METHODS, CamResult, class_maps
from cvkit.models import create_model

REFERENCES = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "layercam": LayerCAM, "eigencam": EigenCAM}
TOLERANCE = 1e-4  # on maps scaled to [0, 1]: float32 rounding, numpy's order of sums against torch's


def small_gap(outputs: int = 3, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("smallcnn", outputs, 3, (32, 32), head="gap").eval()


@pytest.fixture(scope="module")
def gap_model() -> torch.nn.Module:
    return small_gap()


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Six images, and the three classes twice as targets (so some class has positive evidence)."""
    torch.manual_seed(1)
    return torch.randn(6, 3, 32, 32), torch.arange(6) % 3


def reference_maps(cls, model: torch.nn.Module, layer: str, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """pytorch-grad-cam's map at the layer's resolution: its own steps up to ``np.maximum(cam, 0)``,
    before ``scale_cam_image`` resizes it with OpenCV; then min-max scaled as cvkit scales."""
    module = dict(model.named_modules())[layer]
    with cls(model=model, target_layers=[module]) as cam:
        wanted = [ClassifierOutputTarget(int(t)) for t in targets]
        outputs = cam.activations_and_grads(x)
        if cam.uses_gradients:
            model.zero_grad()
            sum(t(o) for t, o in zip(wanted, outputs)).backward()
        activations = cam.activations_and_grads.activations[0].cpu().numpy()
        grads = [g.cpu().numpy() for g in cam.activations_and_grads.gradients]
        raw = cam.get_cam_image(x, module, wanted, activations, grads[0] if grads else None, False)
    model.zero_grad(set_to_none=True)
    return normalize_maps(torch.from_numpy(np.maximum(raw, 0)).float())


def assert_maps_match(ours: CamResult, theirs: torch.Tensor) -> None:
    assert ours.maps.shape == theirs.shape
    varied = (theirs.flatten(1).amax(1) > 0).sum()
    assert varied >= len(theirs) // 2, "too few maps with any positive evidence to compare"
    assert torch.allclose(ours.maps, theirs, atol=TOLERANCE), float((ours.maps - theirs).abs().max())


@pytest.mark.parametrize("method", sorted(REFERENCES))
def test_smallcnn_matches_pytorch_grad_cam(gap_model, batch, method):
    x, targets = batch
    ours = class_maps(gap_model, x, "features.1", targets, method, upsample=False)
    assert_maps_match(ours, reference_maps(REFERENCES[method], gap_model, "features.1", x, targets))
    assert torch.equal(ours.targets, targets)


def test_scorecam_channel_softmax_matches_pytorch_grad_cam(gap_model, batch):
    x, targets = batch
    ours = class_maps(gap_model, x[:3], "features.1", targets[:3], "scorecam", upsample=False,
                      score="channel-softmax", batch_size=50)
    assert_maps_match(ours, reference_maps(ScoreCAM, gap_model, "features.1", x[:3], targets[:3]))


def test_scorecam_class_softmax_is_the_papers_weighting(gap_model, batch):
    """The default weighs each channel by the target's softmax probability on the masked image."""
    x, targets = batch
    ours = class_maps(gap_model, x[:2], "features.1", targets[:2], "scorecam", upsample=False, batch_size=7)
    with torch.no_grad():
        acts = gap_model.features(x[:2])
        expected = []
        for i in range(2):  # one image and one channel at a time, as the authors' code
            cam = torch.zeros(acts.shape[-2:])
            for c in range(acts.shape[1]):
                up = torch.nn.functional.interpolate(acts[i:i + 1, c:c + 1], size=(32, 32), mode="bilinear",
                                                     align_corners=True)
                mask = (up - up.min()) / (up.max() - up.min() + 1e-8)
                prob = torch.softmax(gap_model(x[i:i + 1] * mask), 1)[0, targets[i]]
                cam += prob * acts[i, c]
            expected.append(cam.relu())
    assert torch.allclose(ours.maps, normalize_maps(torch.stack(expected)), atol=TOLERANCE)


@pytest.fixture(scope="module")
def resnet() -> torch.nn.Module:
    """timm's resnet18, random weights; its blocks' last BatchNorm is zero-initialized (each block
    starts as its shortcut), so every BatchNorm gets a random scale to make the blocks count."""
    torch.manual_seed(0)
    model = create_model("resnet18", 10, 3, (64, 64)).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
    return model


@pytest.mark.parametrize("method", sorted(REFERENCES))
def test_timm_resnet18_matches_pytorch_grad_cam(resnet, method):
    torch.manual_seed(2)
    x, targets = torch.randn(3, 3, 64, 64), torch.tensor([0, 4, 9])
    ours = class_maps(resnet, x, "layer4", targets, method, upsample=False)
    assert ours.maps.shape == (3, 2, 2)
    assert_maps_match(ours, reference_maps(REFERENCES[method], resnet, "layer4", x, targets))
    inner = class_maps(resnet, x, "layer3.1.conv2", targets, method, upsample=False)
    assert_maps_match(inner, reference_maps(REFERENCES[method], resnet, "layer3.1.conv2", x, targets))


def test_a_layer_whose_output_timm_adds_to_in_place_is_explained(resnet):
    """timm's block does ``x = bn2(x); x += shortcut``: the map reads bn2's own output, and the
    in-place add after it neither fails nor changes what was captured."""
    from cvkit.explain.gradients import layer_pass

    x = torch.randn(2, 3, 64, 64)
    seen = layer_pass(resnet, x, "layer3.1.bn2", None)
    with torch.no_grad():
        block = resnet.layer3[1]
        stem = resnet.layer3[0](resnet.layer2(resnet.layer1(resnet.maxpool(resnet.act1(resnet.bn1(resnet.conv1(x)))))))
        expected = block.bn2(block.conv2(block.act1(block.bn1(block.conv1(stem)))))
    assert torch.allclose(seen.activations, expected, atol=1e-5)
    assert seen.gradients.abs().sum() > 0


def test_cam_is_the_classifier_weighted_feature_map_and_grad_cam_its_positive_part(gap_model, batch):
    """For GAP then linear, Grad-CAM's weights are w_c / (h w): Grad-CAM is CAM's positive part."""
    x, targets = batch
    cam = class_maps(gap_model, x, "features.1", targets, "cam", upsample=False)
    with torch.no_grad():
        raw = torch.einsum("nc,nchw->nhw", gap_model.head.fc.weight[targets], gap_model.features(x))
        logits = gap_model(x)
    assert torch.allclose(cam.maps, normalize_maps(raw), atol=TOLERANCE)
    assert torch.allclose(cam.logits, logits, atol=1e-5)
    grad = class_maps(gap_model, x, "features.1", targets, "gradcam", upsample=False)
    assert torch.allclose(grad.maps, normalize_maps(raw.relu()), atol=TOLERANCE)


def test_cam_reads_timm_heads_and_nin_class_maps(resnet):
    x = torch.randn(2, 3, 64, 64)
    cam = class_maps(resnet, x, "layer4", None, "cam", upsample=False)
    with torch.no_grad():
        raw = torch.einsum("nc,nchw->nhw", resnet.fc.weight[cam.targets], resnet.forward_features(x))
    assert torch.allclose(cam.maps, normalize_maps(raw), atol=TOLERANCE)
    nin = create_model("nin", 3, 3, (32, 32)).eval()  # its classifier is a 1x1 conv before the pooling
    assert class_maps(nin, torch.randn(2, 3, 32, 32), "features.6", None, "cam").maps.shape == (2, 32, 32)


def test_cam_weights_the_feature_map_of_a_gmp_head_by_its_class_weights():
    model = create_model("smallcnn", 3, 3, (32, 32), head="gmp").eval()
    x = torch.randn(2, 3, 32, 32)
    cam = class_maps(model, x, "features.1", None, "cam", upsample=False)
    with torch.no_grad():
        features = model.forward_features(x)
        raw = torch.einsum("nc,nchw->nhw", model.head.fc.weight[cam.targets], features)
        # the logit is the class weights over each map's maximum, not its mean
        expected = features.amax((2, 3)) @ model.head.fc.weight.T + model.head.fc.bias
    assert torch.allclose(cam.logits, expected, atol=1e-5)
    assert torch.allclose(cam.maps, normalize_maps(raw), atol=TOLERANCE)


def test_cam_refuses_a_head_that_is_not_gap_then_linear_and_another_layer(gap_model):
    fc_model = create_model("smallcnn", 3, 3, (32, 32)).eval()
    with pytest.raises(OptionError) as e:
        class_maps(fc_model, torch.randn(2, 3, 32, 32), "features.1", None, "cam")
    assert str(e.value) == ("--method cam needs a model whose head is global average or max pooling then one linear "
                            "layer; this model's head is Flatten -> Linear -> ReLU -> Linear: retrain with --head gap "
                            "or gmp, "
                            "or use --method gradcam")
    with pytest.raises(OptionError, match=r"reads the last feature map .*layer features\.1\); --layer features\.0 is"):
        class_maps(gap_model, torch.randn(2, 3, 32, 32), "features.0", None, "cam")


def test_single_output_model_explains_class_one_by_its_logit_and_class_zero_by_its_negation():
    model = small_gap(outputs=1)
    x = torch.randn(4, 3, 32, 32)
    one = class_maps(model, x, "features.1", torch.ones(4, dtype=torch.long), "cam", upsample=False)
    zero = class_maps(model, x, "features.1", torch.zeros(4, dtype=torch.long), "cam", upsample=False)
    assert torch.allclose(one.maps, 1 - zero.maps, atol=TOLERANCE)
    assert torch.equal(class_maps(model, x, "features.1").targets, (one.logits[:, 0] > 0).long())


def test_maps_are_scaled_upsampled_and_explain_the_prediction(gap_model, batch):
    x, _ = batch
    for method in METHODS:
        result = class_maps(gap_model, x[:2], "features.1", None, method, steps=5) if method == "augmented-gradcam" \
            else class_maps(gap_model, x[:2], "features.1", None, method)
        assert result.maps.shape == (2, 32, 32) and result.maps.dtype == torch.float32
        assert float(result.maps.min()) >= 0 and float(result.maps.max()) <= 1
        assert torch.equal(result.targets, gap_model(x[:2]).argmax(1))
    constant = normalize_maps(torch.stack([torch.full((4, 4), 3.0), torch.zeros(4, 4), torch.arange(16.0).view(4, 4)]))
    assert constant[:2].abs().sum() == 0 and constant[2].max() == 1 and constant[2].min() == 0


def test_works_in_inference_mode_and_under_bf16_autocast(gap_model, batch):
    x, targets = batch
    expected = class_maps(gap_model, x, "features.1", targets, "gradcam").maps
    with torch.inference_mode():
        inferred = class_maps(gap_model, x, "features.1", targets, "gradcam").maps
    assert torch.allclose(inferred, expected)
    low = class_maps(gap_model, x, "features.1", targets, "gradcam", precision="bf16").maps
    assert low.dtype == torch.float32 and float((low - expected).abs().mean()) < 0.05


def test_unknown_method_option_layer_and_targets_are_refused(gap_model):
    x = torch.randn(2, 3, 32, 32)
    with pytest.raises(OptionError) as e:
        class_maps(gap_model, x, "features.1", None, "gradcampp")
    assert str(e.value) == ("--method gradcampp is not a CAM method (did you mean gradcam or gradcam++?); the methods "
                            "are cam, gradcam, gradcam++, scorecam, layercam, eigencam, augmented-gradcam")
    with pytest.raises(OptionError, match="--method gradcam takes no option steps"):
        class_maps(gap_model, x, "features.1", None, "gradcam", steps=3)
    with pytest.raises(OptionError, match=r"--layer features\.9: .*valid layers: .*features\.1"):
        class_maps(gap_model, x, "features.9", None, "gradcam")
    with pytest.raises(OptionError, match="3 target classes for a batch of 2"):
        class_maps(gap_model, x, "features.1", torch.tensor([0, 1, 2]))
    with pytest.raises(OptionError, match="target class 5 is not one of the model's 3 classes"):
        class_maps(gap_model, x, "features.1", torch.tensor([0, 5]))


def live_tensors() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if issubclass(type(o), torch.Tensor))  # type(): no __class__ lookups


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_hooks_removed_no_parameter_gradients_and_memory_flat_over_many_calls(gap_model, batch):
    x, _ = batch
    for method in METHODS:  # every method once, then Grad-CAM many times
        class_maps(gap_model, x[:2], "features.1", None, method, **({"steps": 3} if method == "augmented-gradcam" else {}))
    for _ in range(10):
        class_maps(gap_model, x, "features.1")
    tensors, rss = live_tensors(), rss_bytes()
    for _ in range(200):
        result = class_maps(gap_model, x, "features.1")
    del result
    assert live_tensors() <= tensors
    assert rss_bytes() - rss < 16 * 2**20
    for module in gap_model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks and not module._backward_hooks
    assert all(p.grad is None for p in gap_model.parameters())
    assert torch.is_grad_enabled()
