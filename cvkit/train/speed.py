"""``--precision auto`` / ``--memory-format auto``: time a few real training steps of each
candidate and keep the fastest.

Measured on this project's 2-core Xeon (AMX): bf16 channels-last made a resnet18 step at 224 px
2.5x faster, but made a small resnet at 32 px slower, so no fixed rule is right on the CPU. On
CUDA the answer is known: bf16 autocast where supported (else fp16 with loss scaling), channels-last.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import torch
from torch import nn

from cvkit.device import cpu_bf16_flags, set_memory_format

Candidate = tuple[str, str]  # (precision, memory format)


def candidates(device: torch.device, precision: str, memory_format: str) -> list[Candidate]:
    if device.type == "cuda":
        bf16 = torch.cuda.is_bf16_supported()
        precs = [precision] if precision != "auto" else ["bf16" if bf16 else "fp16"]
        fmts = [memory_format] if memory_format != "auto" else ["channels_last"]
    elif device.type == "mps":
        precs = [precision] if precision != "auto" else ["fp32"]
        fmts = [memory_format] if memory_format != "auto" else ["contiguous"]
    else:  # fp16 autocast is slow on CPUs; bf16 only where the CPU has bf16 instructions
        precs = [precision] if precision != "auto" else ["fp32"] + ([] if skipped(device, precision) else ["bf16"])
        fmts = [memory_format] if memory_format != "auto" else ["contiguous", "channels_last"]
    return [(p, f) for p in precs for f in fmts]


def skipped(device: torch.device, precision: str) -> str | None:
    """Why ``--precision auto`` does not time bf16 here, or None: a CPU with no bf16 instructions emulates
    it in fp32 (about 10x slower), so timing it only costs the run seconds."""
    if device.type != "cpu" or precision != "auto" or cpu_bf16_flags() != []:
        return None
    return "bf16 not timed: this CPU has no bf16 instructions (amx_bf16, avx512_bf16), so fp32 is faster"


def choose(model: nn.Module, optimizer: torch.optim.Optimizer, options: list[Candidate],
           step: Callable[[str, str], None], timed_steps: int = 3,
           always_time: bool = False) -> tuple[Candidate, dict[str, float]]:
    """Time ``step(precision, memory_format)`` for each candidate; model, optimizer and RNG are restored after.
    A single candidate is not timed unless ``always_time`` (``--budget`` needs the step time)."""
    if len(options) == 1 and not always_time:
        return options[0], {}
    saved_model = copy.deepcopy(model.state_dict())
    saved_opt = copy.deepcopy(optimizer.state_dict())
    saved_rng = torch.get_rng_state()
    timings: dict[str, float] = {}
    best: Candidate | None = None
    for cand in options:
        set_memory_format(model, cand[1])
        step(*cand)  # warm-up: kernel selection, allocator
        elapsed = []
        for _ in range(timed_steps):
            start = time.perf_counter()
            step(*cand)
            elapsed.append(time.perf_counter() - start)
            if best is not None and elapsed[-1] > 3 * timings[f"{best[0]}/{best[1]}"]:
                break  # clearly slower: no need to time it further
            if elapsed[-1] > 1.0:
                break  # a step over a second is long enough to time once (resnet18 at 224 px: 3-7 s a step)
        timings[f"{cand[0]}/{cand[1]}"] = min(elapsed)
        if best is None or timings[f"{cand[0]}/{cand[1]}"] < timings[f"{best[0]}/{best[1]}"]:
            best = cand
    model.load_state_dict(saved_model)
    optimizer.load_state_dict(saved_opt)
    torch.set_rng_state(saved_rng)
    set_memory_format(model, best[1])
    return best, {k: round(v * 1000, 2) for k, v in timings.items()}  # milliseconds per step
