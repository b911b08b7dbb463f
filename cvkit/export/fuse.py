"""Batch normalization folded into the convolution or linear layer before it.

At test time a BatchNorm layer is a fixed affine map per channel, ``y = (x - mean) / sqrt(var + eps)
* gamma + beta``, so after a convolution ``w x + b`` it is the same as one convolution with weights
``w * gamma / sqrt(var + eps)`` and bias ``(b - mean) * gamma / sqrt(var + eps) + beta``. The pairs
are found on the model's data-flow graph (``torch.fx``), not by module order: cvkit's smallcnn
max-pools between a convolution and its BatchNorm, and folding across the pooling would be wrong
for a negative gamma. torch's own ``torch.fx.experimental.optimization.fuse`` does the graph
rewrite (conv-BN in 1, 2 and 3 d, and linear-BN1d) and is used as is.
"""

from __future__ import annotations

import torch
from torch import nn

from cvkit.errors import OptionError


def count_batchnorms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def fuse_batchnorm(model: nn.Module, arch: str) -> tuple[nn.Module, int, int]:
    """(fused copy of ``model`` in eval mode, BatchNorm layers folded, BatchNorm layers left)."""
    from torch.fx.experimental.optimization import fuse

    before = count_batchnorms(model)
    if before == 0:
        return model, 0, 0
    try:
        fused = fuse(model.eval())
    except Exception as e:  # noqa: BLE001 - symbolic tracing fails on data-dependent Python in many ways
        raise OptionError(f"--fuse-bn: {arch} cannot be traced by torch.fx ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:120]}); export it without --fuse-bn") from None
    used = {node.target for node in fused.graph.nodes if node.op == "call_module"}
    left = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for name, m in fused.named_modules() if name in used)
    return fused.eval(), before - left, left


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max()) if a.numel() else 0.0
