"""``--weights FILE``: start a model from another model's weights (transfer learning).

A file is read as safetensors, or with ``torch.load(weights_only=True)``, which only rebuilds
tensors and plain containers: a file whose unpickling would call a function is refused, never run.
Tensors are matched by name, tolerating the wrappers names pick up on the way (``module.`` from
DistributedDataParallel, ``_orig_mod.`` from torch.compile, cvkit's adapters around torchvision
and timm models), and by shape: a classifier for another number of classes is skipped and reported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from cvkit.errors import OptionError
from cvkit.files.run import torch_load_safe
from cvkit.models.inspection import first_conv

NESTED_KEYS = ("state_dict", "model", "model_state")  # where checkpoints keep the state dict


def _is_safetensors(path: Path) -> bool:
    """safetensors files start with an 8-byte header length and the JSON header's ``{``."""
    with path.open("rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file: a plain state dict, or one under 'state_dict', 'model' or 'model_state'."""
    path = Path(path)
    if not path.is_file():
        raise OptionError(f"--weights {path}: no such file")
    if _is_safetensors(path):
        try:
            data: Any = load_file(path)
        except (SafetensorError, OSError) as e:
            raise OptionError(f"--weights {path} cannot be read ({_first_line(e)}); pass a safetensors file or a "
                              "state dict saved with torch.save") from None
    else:
        data = torch_load_safe(path, "weights file")  # weights_only: refuses pickled code
    while isinstance(data, dict) and any(isinstance(data.get(k), dict) for k in NESTED_KEYS):
        data = next(data[k] for k in NESTED_KEYS if isinstance(data.get(k), dict))
    tensors = {}
    if isinstance(data, dict):
        tensors = {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        raise OptionError(f"--weights {path} holds no state dict (names mapped to tensors, at the top or under "
                          f"{', '.join(repr(k) for k in NESTED_KEYS)}); save model.state_dict() instead")
    bad = sum(int((~t.isfinite()).sum()) for t in tensors.values() if t.is_floating_point())
    if bad:  # training from them ends in a NaN loss whose message would point at --lr
        raise OptionError(f"--weights {path} holds {bad:,} NaN or infinite values; pass the weights of a model that "
                          f"did not diverge")
    return tensors


def cached_timm_weights(arch: str) -> dict[str, str] | None:
    """timm's pretrained weights for ``arch`` when a file of them is in the local cache, as
    ``timm.create_model``'s ``pretrained_cfg_overlay`` (read with no network), else None."""
    import timm
    from huggingface_hub import try_to_load_from_cache

    cfg = timm.models.get_pretrained_cfg(arch)
    if cfg is None:
        return None
    if cfg.hf_hub_id:
        for name in filter(None, (cfg.hf_hub_filename, "model.safetensors", "pytorch_model.bin")):
            found = try_to_load_from_cache(cfg.hf_hub_id, name)
            if isinstance(found, str):
                return {"file": found}
    if cfg.url:
        local = Path(torch.hub.get_dir()) / "checkpoints" / Path(cfg.url).name
        if local.is_file():
            return {"file": str(local)}
    return None


def hub_unreachable(seconds: float = 3.0) -> str | None:
    """Why the Hugging Face hub cannot be reached from here (None: it can). Without this check an
    offline download retries for about a minute before it fails."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=seconds).close()
    except OSError as e:
        return f"{host} cannot be reached ({e.strerror or e})"
    return None


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:160]}" if text else type(error).__name__


def match_names(names: list[str], model_names: list[str], prefix: str | None = None) -> dict[str, str]:
    """File tensor name -> model tensor name. A name matches as it is; else, with a model's ``prefix``
    (an fcn's ``features.encoder.``, where a classifier's weights go), as ``prefix + name`` or as
    timm's ``features_only`` nets rename it (``prefix + stages_0.x`` for ``stages.0.x``); else, after
    dropping leading parts (``module.conv1.weight``), as it is or with the shallowest prefix the model
    adds (``conv1.weight`` -> ``features.conv1.weight``)."""
    exact = set(model_names)
    by_suffix: dict[str, str] = {}
    for full in sorted(model_names, key=lambda n: n.count(".")):  # shallowest first
        parts = full.split(".")
        for i in range(1, len(parts) - 1):
            by_suffix.setdefault(".".join(parts[i:]), full)
    matches = {}
    for name in names:
        if prefix and name not in exact:
            # timm's features_only nets join a top-level nn.Sequential's name to its children's.
            found = next((c for c in (prefix + name, prefix + name.replace(".", "_", 1)) if c in exact), None)
            if found is not None:
                matches[name] = found
                continue
        parts = name.split(".")
        for i in range(max(1, len(parts) - 1)):  # drop no further than "module.param"
            candidate = ".".join(parts[i:])
            target = candidate if candidate in exact else by_suffix.get(candidate)
            if target is not None:
                matches[name] = target
                break
    return matches


def load_weights(model: nn.Module, path: str | Path) -> dict[str, Any]:
    """Load the tensors of ``path`` that fit ``model``; returns
    ``{"loaded": n, "skipped": [file names not loaded], "missing": [model names left as they were]}``.

    A tensor is skipped when no model tensor has its name or its shape (a classifier for another
    number of classes). The one exception: RGB kernels of the first conv loaded into a model for
    other channels are adapted, summed over RGB for one channel, as timm does.
    """
    state = read_state_dict(path)
    own = model.state_dict()
    targets = match_names(list(state), list(own), getattr(model, "weights_prefix", None))
    conv = first_conv(model)
    stem = f"{conv[0]}.weight" if conv else None
    loaded: dict[str, torch.Tensor] = {}
    skipped = []
    for name, tensor in state.items():
        target = targets.get(name)
        want = own[target].shape if target else None
        if (target == stem and want is not None and tensor.ndim == 4 and tensor.shape[1] == 3
                and tensor.shape[0] == want[0] and tensor.shape[2:] == want[2:]):
            from timm.models import adapt_input_conv

            tensor = adapt_input_conv(want[1], tensor)
        if target is None or tensor.shape != want or target in loaded:
            skipped.append(name)
            continue
        loaded[target] = tensor
    if not loaded:
        raise OptionError(f"--weights {path}: none of its {len(state)} tensors fits this model "
                          f"(first names: {', '.join(list(state)[:3])}); is it from another --arch?")
    model.load_state_dict(loaded, strict=False)
    return {"loaded": len(loaded), "skipped": skipped, "missing": [n for n in own if n not in loaded]}
