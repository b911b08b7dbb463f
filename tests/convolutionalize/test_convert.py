"""The conversion of a classifier's head into convolutions: same logits at the training size, maps beyond it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cvkit.errors import OptionError
from cvkit.models import create_model
from cvkit.models.convolutional import to_convolutional
from cvkit.models.layers import Head, Net

CASES = [("smallcnn", {}, 28, 1, (8, 8)), ("smallcnn", {"head": "gap"}, 32, 3, (16, 16)),
         ("lenet5", {}, 32, 1, (9, 9)), ("mlp", {}, 28, 1, (29, 29)), ("resnet18", {}, 64, 3, (4, 4))]


@pytest.mark.parametrize("arch,options,size,chans,big_map", CASES)
def test_same_logits_at_training_size_and_maps_beyond(arch, options, size, chans, big_map):
    torch.manual_seed(0)
    model = create_model(arch, 5, chans, (size, size), **options).eval()
    x = torch.randn(3, chans, size, size)
    with torch.no_grad():
        reference = model(x)
    dense = to_convolutional(model, chans, (size, size))
    with torch.no_grad():
        assert (dense(x) - reference).abs().max().item() < 1e-4
        maps = dense.score_maps(torch.randn(1, chans, 2 * size, 2 * size))
    assert tuple(maps.shape) == (1, 5, *big_map)
    if arch in ("smallcnn", "lenet5", "mlp") and options.get("head") != "gap":  # fc heads
        with torch.no_grad():
            assert dense.score_maps(x).shape[2:] == (1, 1)  # one window: a 1x1 map


def test_fc_layer_becomes_a_kernel_over_the_whole_feature_map():
    model = create_model("smallcnn", 4, 1, (28, 28)).eval()
    first = model.head.pre[1]
    dense = to_convolutional(model, 1, (28, 28))
    conv = dense.head[0]
    assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (7, 7) and conv.in_channels == 32
    assert torch.equal(conv.weight.flatten(1), first.weight)
    assert all(m.kernel_size == (1, 1) for m in dense.head if isinstance(m, nn.Conv2d) and m is not conv)


def test_a_layer_that_does_not_commute_is_refused_by_name():
    features = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU())
    head = Head(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(4, 8), nn.ReLU()), nn.Linear(8, 2))
    with pytest.raises(OptionError, match=r"head layer 'head.pre.3' \(ReLU\) is not linear and follows the global"):
        to_convolutional(Net(features, head, 4, 2), 1, (16, 16))
    odd = Head(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.LayerNorm(4)), nn.Linear(4, 2))
    with pytest.raises(OptionError, match=r"'head.pre.2' \(LayerNorm\) does not act location by location"):
        to_convolutional(Net(features, odd, 4, 2), 1, (16, 16))


def test_converted_run_loads_and_predicts_as_the_original(trained, tmp_path):
    import numpy as np

    from cvkit.files.run import ModelInfo, save_model_weights
    from cvkit.runtime import load_run

    original = load_run(trained, torch.device("cpu"), "fp32")
    out = tmp_path / "conv"
    out.mkdir()
    info = ModelInfo.read(trained)
    info.convolutional = True
    info.write(out)
    save_model_weights(out, to_convolutional(load_run(trained, torch.device("cpu"), "fp32").model, 1,
                                             original.input_size).state_dict(), info.epoch)
    converted = load_run(out, torch.device("cpu"), "fp32")
    images = np.random.default_rng(0).integers(0, 256, (6, 28, 28, 1), dtype=np.uint8)
    assert np.abs(converted.predict(images)[0] - original.predict(images)[0]).max() < 1e-5
