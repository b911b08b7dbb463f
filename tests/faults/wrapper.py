"""Run ``cvkit`` with one fault injected, for the fault tests (test-only code).

    python tests/faults/wrapper.py MODE ARG -- cvkit arguments...

MODE slow SECONDS: each training step also sleeps SECONDS (numerics unchanged), so a test can kill
    the process inside an epoch.
MODE hang-in-checkpoint N: the N-th ``last.ckpt`` write stops half-way through its temporary file,
    creates ``<run>/../writing`` and sleeps, so a test can kill -9 it mid-write.
MODE nan-at STEP: the loss of the STEP-th training step (1-based, over the run) is NaN; just before,
    the run's files are copied to ``<run>/../snapshot/``.
MODE nan-weights-at STEP: after the STEP-th training step (whose loss was finite) one weight becomes NaN,
    as an optimizer step can make it; the run's files are copied to ``<run>/../snapshot/`` first.
"""

from __future__ import annotations

import io
import shutil
import sys
import time
from pathlib import Path

mode, arg = sys.argv[1], sys.argv[2]
argv = sys.argv[sys.argv.index("--") + 1:]
out = Path(argv[argv.index("--out") + 1]) if "--out" in argv else Path(argv[argv.index("--resume") + 1])

import torch  # noqa: E402

import cvkit.train.trainer as trainer  # noqa: E402


def snapshot() -> None:
    """Copy the run's files as they are to ``<run>/../snapshot/`` (what a fault must leave unchanged)."""
    folder = out.parent / "snapshot"
    folder.mkdir()
    for name in ("model.safetensors", "last.ckpt", "metrics.csv"):
        shutil.copy(out / name, folder / name)


if mode == "slow":
    real_step = trainer.Trainer.step

    def slow_step(self, *args, **kwargs):
        time.sleep(float(arg))
        return real_step(self, *args, **kwargs)

    trainer.Trainer.step = slow_step
elif mode == "hang-in-checkpoint":
    real_save, calls = torch.save, []

    def hanging_save(obj, f, *args, **kwargs):
        if Path(str(f)).name.startswith(".last.ckpt."):
            calls.append(f)
            if len(calls) == int(arg):
                buffer = io.BytesIO()
                real_save(obj, buffer)
                data = buffer.getvalue()
                with open(f, "wb") as file:
                    file.write(data[:len(data) // 2])
                (out.parent / "writing").touch()
                time.sleep(120)
        return real_save(obj, f, *args, **kwargs)

    torch.save = hanging_save
elif mode == "nan-at":
    import cvkit.models.losses as losses

    real_call, calls = losses.Criterion.__call__, []

    def nan_loss(self, out_, targets):
        loss = real_call(self, out_, targets)
        if torch.is_grad_enabled():  # training steps, not validation
            calls.append(1)
            if len(calls) == int(arg):
                snapshot()
                return loss * float("nan")
        return loss

    losses.Criterion.__call__ = nan_loss
elif mode == "nan-weights-at":
    real_step, calls = trainer.Trainer.step, []

    def poisoning_step(self, *args, **kwargs):
        result = real_step(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == int(arg):
            snapshot()
            with torch.no_grad():
                next(self.model.parameters()).view(-1)[0] = float("nan")
        return result

    trainer.Trainer.step = poisoning_step
else:
    sys.exit(f"unknown mode {mode}")

from cvkit.cli import app  # noqa: E402

app(argv, prog_name="cvkit")
