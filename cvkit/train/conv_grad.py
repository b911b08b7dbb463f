"""A faster weight gradient for the convolutions where oneDNN's is slow on the CPU.

oneDNN computes a convolution's weight gradient well when the feature map is large, but badly
for deep layers on small maps: on this project's 2-core Xeon (bf16, channels-last, batch 64), the
weight gradient of resnet18's 512-channel 3x3 convolutions at 7x7 took 58 ms, where one matrix
product over the unfolded input (im2col) takes 37 ms; its strided 256->512 convolution took 58 ms
against 20 ms. At start-up, :func:`tune_weight_grads` times both for each convolution of the model
at its real input shape and switches only the convolutions where the matrix product wins clearly;
forward and input gradient stay oneDNN's. Weights and ``state_dict`` are untouched.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# Switch a convolution when im2col takes at most this fraction of oneDNN's time.
WIN = 0.8
# Leave a layer alone when its unfolded input would take more than this (bytes), or when its output
# map is larger than this many pixels (oneDNN won on every map from 28x28 up: no need to time those).
MAX_COLUMNS_BYTES = 256 << 20
MAX_OUTPUT_PIXELS = 16 * 16


def weight_grad_im2col(x: torch.Tensor, grad_out: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int],
                       padding: tuple[int, int]) -> torch.Tensor:
    """d(loss)/d(weight) of a dense 2-d convolution, as one matrix product: (Co x M) @ (M x kh*kw*Ci)."""
    n, c, _, _ = x.shape
    co, ho, wo = grad_out.shape[1:]
    kh, kw = kernel
    rows = x.permute(0, 2, 3, 1)  # NHWC: free for a channels-last tensor
    if padding != (0, 0):
        rows = F.pad(rows, (0, 0, padding[1], padding[1], padding[0], padding[0]))
    rows = rows.contiguous()
    s_n, s_h, s_w, s_c = rows.stride()
    columns = rows.as_strided((n, ho, wo, kh, kw, c), (s_n, stride[0] * s_h, stride[1] * s_w, s_h, s_w, s_c))
    columns = columns.reshape(n * ho * wo, kh * kw * c)
    grads = grad_out.permute(0, 2, 3, 1).reshape(n * ho * wo, co)
    return (grads.t() @ columns).view(co, kh, kw, c).permute(0, 3, 1, 2)


class _Im2colWeightGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, stride: tuple[int, int],
                padding: tuple[int, int]) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding = stride, padding
        return F.conv2d(x, weight, None, stride, padding)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad_out, x, weight, None, list(ctx.stride), list(ctx.padding), [1, 1], False, [0, 0], 1,
                [True, False, False])[0]
        if ctx.needs_input_grad[1]:
            grad_w = weight_grad_im2col(x, grad_out.contiguous(memory_format=torch.channels_last),
                                        weight.shape[2:], ctx.stride, ctx.padding)
        return grad_x, grad_w, None, None


class Im2colConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose weight gradient is :func:`weight_grad_im2col` while training on the CPU."""

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if not (torch.is_grad_enabled() and weight.requires_grad and x.device.type == "cpu"):
            return super()._conv_forward(x, weight, bias)
        if torch.is_autocast_enabled("cpu"):
            dtype = torch.get_autocast_dtype("cpu")
            x, weight = x.to(dtype), weight.to(dtype)
            bias = bias.to(dtype) if bias is not None else None
        with torch.autocast("cpu", enabled=False):
            out = _Im2colWeightGrad.apply(x, weight, self.stride, self.padding)
        return out if bias is None else out + bias.view(1, -1, 1, 1)


def _eligible(conv: nn.Module) -> bool:
    return (type(conv) is nn.Conv2d and conv.groups == 1 and conv.dilation == (1, 1)
            and isinstance(conv.padding, tuple) and conv.padding_mode == "zeros")


def _best_of(fn, repeats: int = 3) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def tune_weight_grads(model: nn.Module, example: torch.Tensor, precision: str) -> dict[str, list[float]]:
    """Switch each CPU convolution of ``model`` whose im2col weight gradient beats oneDNN's on
    ``example``'s shapes to :class:`Im2colConv2d`. Returns ``{name: [onednn_ms, im2col_ms]}`` for
    the switched layers."""
    if example.device.type != "cpu" or precision not in ("fp32", "bf16"):
        return {}
    shapes: dict[str, tuple[torch.Size, torch.Size]] = {}
    convs = {name: m for name, m in model.named_modules() if _eligible(m) and m.weight.requires_grad}

    def record(name: str):
        def hook(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
            shapes[name] = (args[0].shape, out.shape)

        return hook

    hooks = [conv.register_forward_hook(record(name)) for name, conv in convs.items()]
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    training = model.training
    model.eval()  # one forward for the shapes; BatchNorm's running statistics stay as they are
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            model(example)
    finally:
        model.train(training)
        for hook in hooks:
            hook.remove()
    switched: dict[str, list[float]] = {}
    gen = torch.Generator().manual_seed(0)  # timing data; the global RNG (dropout, ...) is left as it was
    for name, (in_shape, out_shape) in shapes.items():
        conv = convs[name]
        kh, kw = conv.kernel_size
        if out_shape[2] * out_shape[3] > MAX_OUTPUT_PIXELS:
            continue
        if in_shape[0] * out_shape[2] * out_shape[3] * kh * kw * in_shape[1] * dtype.itemsize > MAX_COLUMNS_BYTES:
            continue
        x = torch.randn(in_shape, generator=gen, dtype=dtype).contiguous(memory_format=torch.channels_last)
        g = torch.randn(out_shape, generator=gen, dtype=dtype).contiguous(memory_format=torch.channels_last)
        w = conv.weight.detach().to(dtype)
        onednn = _best_of(partial(torch.ops.aten.convolution_backward, g, x, w, None, list(conv.stride),
                                  list(conv.padding), [1, 1], False, [0, 0], 1, [False, True, False]))
        im2col = _best_of(partial(weight_grad_im2col, x, g, conv.kernel_size, conv.stride, conv.padding))
        if im2col <= WIN * onednn:
            conv.__class__ = Im2colConv2d
            switched[name] = [round(onednn * 1000, 2), round(im2col * 1000, 2)]
    return switched


def restore_convs(model: nn.Module) -> None:
    """Undo :func:`tune_weight_grads` (plain ``nn.Conv2d`` everywhere)."""
    for m in model.modules():
        if type(m) is Im2colConv2d:
            m.__class__ = nn.Conv2d
