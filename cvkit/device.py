"""Where compute runs and at what precision: ``--device auto`` picks CUDA, then Apple MPS, then the CPU."""

from __future__ import annotations

import contextlib
import ctypes
import sys

from cvkit.errors import DeviceUnavailable

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


BF16_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")  # x86's matrix unit and vector instructions; Arm's bf16


def cpu_bf16_flags(cpuinfo: str = "/proc/cpuinfo") -> list[str] | None:
    """The CPU's bf16 instruction flags (``amx_bf16``, ``avx512_bf16``, Arm's ``bf16``), [] where it has
    none (bf16 is then emulated in fp32 and many times slower), None where the flags cannot be read."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    flags = set(value.split())
                    return [flag for flag in BF16_FLAGS if flag in flags]
    except OSError:
        return None
    return None


def resolve_device(name: str = "auto") -> "torch.device":  # noqa: F821
    """The torch device for ``--device``; a device this machine lacks is an error, not a silent fallback."""
    import torch

    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps and mps.is_available())
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if has_mps else torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceUnavailable(f"--device {name}: no CUDA device is available here; use --device auto or cpu")
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceUnavailable(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
        return device
    if name == "mps":
        if not has_mps:
            raise DeviceUnavailable("--device mps: Apple MPS is not available here; use --device auto or cpu")
        return torch.device("mps")
    raise DeviceUnavailable(f"--device {name} is not one of auto, cpu, cuda, cuda:N, mps")


def keep_freed_memory() -> bool:
    """Let glibc keep freed memory for reuse instead of handing it back to the kernel.

    By default every block over 32 MB is a fresh mmap, so each training step of a big model pays
    page faults to zero the same activations again. With large blocks served from the heap and no
    trimming, a resnet18 training step at 224 px on this project's CPU went from 2.5-2.9 s to
    2.2-2.4 s and its minor page faults halved. Small models are unaffected. The process keeps its
    peak memory until it exits, which suits a training run. Returns False where it does not apply
    (not Linux, not glibc).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return all([mallopt(_M_MMAP_THRESHOLD, 1 << 30), mallopt(_M_TRIM_THRESHOLD, 2**31 - 1),
                mallopt(_M_TOP_PAD, 64 << 20)])


def autocast(device: "torch.device", precision: str):  # noqa: F821
    """The autocast context for ``precision`` on ``device`` (fp32: none)."""
    import torch

    if precision in ("bf16", "fp16"):
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(device.type, dtype=dtype)
    return contextlib.nullcontext()


def set_memory_format(model: "torch.nn.Module", memory_format: str) -> None:  # noqa: F821
    """Put the model's weights in ``channels_last`` or ``contiguous`` order."""
    import torch

    model.to(memory_format=torch.channels_last if memory_format == "channels_last" else torch.contiguous_format)
