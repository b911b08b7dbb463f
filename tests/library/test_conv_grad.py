"""The im2col weight gradient (cvkit.train.conv_grad) against PyTorch's own convolution backward."""

import copy

import pytest
import torch
from torch import nn

from cvkit.train.conv_grad import Im2colConv2d, restore_convs, tune_weight_grads, weight_grad_im2col


@pytest.mark.parametrize("kernel,stride,padding,bias", [(3, 1, 1, False), (3, 2, 1, True), (1, 2, 0, False),
                                                         (5, 1, 2, True), (3, 1, 0, False)])
@pytest.mark.parametrize("channels_last", [True, False])
def test_gradients_equal_pytorchs_in_fp32(kernel, stride, padding, bias, channels_last):
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 10, kernel, stride=stride, padding=padding, bias=bias)
    fast = copy.deepcopy(conv)
    fast.__class__ = Im2colConv2d
    x = torch.randn(4, 6, 13, 11)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    g = torch.randn_like(conv(x))
    conv(x1).backward(g)
    out = fast(x2)
    out.backward(g)
    assert torch.allclose(out, conv(x), atol=1e-5)
    assert torch.allclose(fast.weight.grad, conv.weight.grad, rtol=1e-4, atol=1e-4)
    assert torch.allclose(x2.grad, x1.grad, rtol=1e-4, atol=1e-5)
    if bias:
        assert torch.allclose(fast.bias.grad, conv.bias.grad, rtol=1e-4, atol=1e-4)


def test_bf16_autocast_gradient_is_close_and_weights_stay_fp32():
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 32, 3, padding=1, bias=False).to(memory_format=torch.channels_last)
    fast = copy.deepcopy(conv)
    fast.__class__ = Im2colConv2d
    x = torch.randn(8, 16, 7, 7).contiguous(memory_format=torch.channels_last)
    for m in (conv, fast):
        with torch.autocast("cpu", torch.bfloat16):
            out = m(x)
        assert out.dtype == torch.bfloat16
        out.float().square().mean().backward()
    assert fast.weight.grad.dtype == torch.float32
    rel = (fast.weight.grad - conv.weight.grad).norm() / conv.weight.grad.norm()
    assert rel < 2e-2


def test_weight_grad_im2col_matches_the_definition():
    x = torch.randn(2, 3, 5, 5)
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    out = torch.nn.functional.conv2d(x, w, stride=2, padding=1)
    g = torch.randn_like(out)
    out.backward(g)
    assert torch.allclose(weight_grad_im2col(x, g, (3, 3), (2, 2), (1, 1)), w.grad, atol=1e-5)


def test_tune_switches_only_what_wins_and_can_be_undone(monkeypatch):
    import cvkit.train.conv_grad as cg

    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, 8, 3, padding=1, groups=2), nn.Conv2d(8, 8, 3, dilation=2))
    model[0].weight.requires_grad_(True)
    before = copy.deepcopy(model.state_dict())
    monkeypatch.setattr(cg, "WIN", 10.0)  # im2col "wins" wherever it is timed
    example = torch.randn(2, 3, 12, 12)
    rng = torch.get_rng_state()
    switched = tune_weight_grads(model, example, "fp32")
    assert torch.equal(torch.get_rng_state(), rng)  # a seeded run draws the same dropout masks with or without it
    assert list(switched) == ["0"]  # grouped and dilated convolutions are left to PyTorch
    assert type(model[0]) is Im2colConv2d and type(model[3]) is nn.Conv2d
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN statistics untouched
    monkeypatch.setattr(cg, "WIN", 0.0)
    restore_convs(model)
    assert type(model[0]) is nn.Conv2d
    assert tune_weight_grads(model, torch.randn(2, 3, 12, 12), "fp32") == {}
