"""Where compute runs: ``--device auto`` picks CUDA, then Apple MPS, then the CPU."""

from __future__ import annotations

from cvkit.errors import DeviceUnavailable


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
