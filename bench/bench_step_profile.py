"""Where a default training step's time goes: its share of the fp32 matmul peak measured in the same
run, and each layer's forward + backward time on the step's own shapes (issue 22, "Efficiency").

Usage: python bench/bench_step_profile.py [--arch smallcnn] [--base 32] [--batch 128] [--size 28]
Writes bench/results/step_profile.json (one entry per net, kept across runs):
- the full step (augment-free: the model's forward, loss, backward and the fused Adam step), its
  FLOPs counted by torch's FlopCounterMode, and its GFLOP/s against the matmul peak;
- each leaf module timed alone (forward + backward on a tensor of its input's shape and memory
  format), its FLOPs, and its share of the sum of the leaves; the optimizer step on its own.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from common import RESULTS, best_time, cpu, write_result


def timed(fn, repeat: int = 20) -> float:
    """Seconds per call: the median of ``repeat`` calls after 3 warm-up calls."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def matmul_peak(side: int = 2048) -> float:
    """fp32 GFLOP/s of a square matrix product: the best of 10 (the machine's speed drifts)."""
    a, b = torch.randn(side, side), torch.randn(side, side)
    a @ b  # warm-up
    return 2 * side**3 / best_time(lambda: a @ b, 10) / 1e9


def flops(fn) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def leaves(model: nn.Module, x: torch.Tensor) -> list[tuple[str, nn.Module, torch.Tensor]]:
    """Every leaf module with a copy of the input it gets in the forward pass."""
    seen: list[tuple[str, nn.Module, torch.Tensor]] = []
    hooks = [m.register_forward_pre_hook(lambda mod, args, name=name: seen.append((name, mod, args[0].detach().clone())))
             for name, m in model.named_modules() if not list(m.children())]
    model(x)
    for h in hooks:
        h.remove()
    return seen


def profile(arch: str, base: int | None, batch: int, size: int) -> dict:
    from cvkit.models import create_model
    from cvkit.train.optim import make_optimizer, param_groups

    torch.manual_seed(0)
    options = {"base": base} if base else {}
    model = create_model(arch, 10, 1, (size, size), **options).to(memory_format=torch.channels_last).train()
    opt = make_optimizer("adam", param_groups(model, 0.0, 3e-3), 3e-3)
    x = torch.randn(batch, 1, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))

    def step():
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    peak = matmul_peak()
    step_flops = flops(step)
    step_s = timed(step)
    peak = max(peak, matmul_peak())  # before and after the step's timing
    parts = []
    for name, module, inp in leaves(model, x):
        inp = inp.requires_grad_(inp.is_floating_point())
        out = module(inp)
        grad = torch.randn_like(out)
        wanted = [t for t in (inp, *module.parameters()) if t.requires_grad]

        def fwd_bwd(module=module, inp=inp, grad=grad, wanted=wanted):
            for t in wanted:
                t.grad = None
            module(inp).backward(grad)

        parts.append({"layer": name, "module": type(module).__name__, "input": list(inp.shape),
                      "ms": round(timed(fwd_bwd) * 1000, 2), "gflop": round(flops(fwd_bwd) / 1e9, 3)})
    params = [p for p in model.parameters()]
    for p in params:
        p.grad = torch.randn_like(p)
    parts.append({"layer": "optimizer", "module": "Adam (fused)", "input": [sum(p.numel() for p in params)],
                  "ms": round(timed(opt.step) * 1000, 2), "gflop": 0.0})
    total = sum(p["ms"] for p in parts)
    for p in parts:
        p["share"] = round(p["ms"] / total, 3)
        p["gflop_s"] = round(p["gflop"] / p["ms"] * 1000, 1) if p["ms"] and p["gflop"] else None
    return {"arch": arch, "options": options, "batch": batch, "size": size, "cpu": cpu(),
            "matmul_peak_gflop_s": round(peak, 1), "step_ms": round(step_s * 1000, 2),
            "step_gflop": round(step_flops / 1e9, 3), "step_gflop_s": round(step_flops / step_s / 1e9, 1),
            "share_of_peak": round(step_flops / step_s / 1e9 / peak, 3), "images_per_s": round(batch / step_s, 1),
            "sum_of_layers_ms": round(total, 2), "layers": parts,
            "measured_at": time.strftime("%Y-%m-%d %H:%M:%S")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--arch", default="smallcnn")
    parser.add_argument("--base", type=int, default=None)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--size", type=int, default=28)
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    result = profile(args.arch, args.base, args.batch, args.size)
    key = f"{args.arch}" + (f"_base{args.base}" if args.base else "") + f"_b{args.batch}_{args.size}px"
    path = RESULTS / "step_profile.json"
    nets = json.loads(path.read_text()).get("nets", {}) if path.is_file() else {}
    nets[key] = result
    for p in sorted(result["layers"], key=lambda p: -p["ms"])[:8]:
        print(f"{p['layer']:24s} {p['module']:12s} {p['ms']:7.2f} ms {p['share']:6.1%}  {p['gflop_s'] or '':>7}")
    write_result("step_profile", {"nets": nets})


if __name__ == "__main__":
    main()
