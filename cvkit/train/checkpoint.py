"""What ``last.ckpt`` holds for ``--resume``, and putting a :class:`~cvkit.train.trainer.Trainer` back in that state.

Every process builds the state (the augmentation generators are gathered from all of them), rank 0
writes it. A run resumed on another number of processes draws fresh augmentation, seeded by the epoch.
On CUDA the device's generator (dropout masks) and fp16's loss scale are kept too, so a resumed run
goes on as the uninterrupted one would.
"""

from __future__ import annotations

from typing import Any

import torch

SEED_STRIDE = 1_000_003  # between the augmentation seeds of the processes (as the trainer draws them)


def checkpoint_state(trainer: Any, epoch: int, history: list[dict], best: dict,
                     bad_epochs: int) -> dict[str, Any]:
    """The state to resume from after ``epoch``."""
    world = trainer.world
    return {"epoch": epoch, "model": trainer.model.state_dict(), "optimizer": trainer.optimizer.state_dict(),
            "scheduler": trainer.scheduler.state_dict(), "rng_torch": torch.get_rng_state(),
            "rng_gen": trainer.gen.get_state(), "rng_gen_ranks": world.gather(trainer.gen.get_state()),
            "rng_order": trainer.order_gen.get_state(), "world_size": world.world_size,
            "history": history, "best": best, "bad_epochs": bad_epochs,
            "precision": trainer.precision, "memory_format": trainer.memory_format,
            "unfrozen": not trainer.freezer.frozen,
            # every process's CUDA generator is in the same state (one seed, the same draws): rank 0's serves all
            "rng_cuda": torch.cuda.get_rng_state(trainer.device) if trainer.device.type == "cuda" else None,
            "scaler": trainer.scaler.state_dict() if trainer.scaler is not None else None,
            "ema": trainer.ema.state_dict() if trainer.ema is not None else None}


def restore(trainer: Any, ckpt: dict[str, Any]) -> None:
    """Weights (and their ``--ema`` average), optimizer, schedule, generators and freezing as ``ckpt`` left them."""
    if ckpt.get("unfrozen"):
        trainer.freezer.set(False)
    trainer.model.load_state_dict(ckpt["model"])
    if trainer.ema is not None:  # a checkpoint without one (not written by an --ema run) starts it from the weights
        if ckpt.get("ema"):
            trainer.ema.load_state_dict(ckpt["ema"])
        else:
            trainer.ema.model.load_state_dict(ckpt["model"])
    trainer.optimizer.load_state_dict(ckpt["optimizer"])
    trainer.scheduler.load_state_dict(ckpt["scheduler"])
    torch.set_rng_state(ckpt["rng_torch"])
    if ckpt.get("rng_cuda") is not None and trainer.device.type == "cuda":
        torch.cuda.set_rng_state(ckpt["rng_cuda"], trainer.device)
    if ckpt.get("scaler") and trainer.scaler is not None:
        trainer.scaler.load_state_dict(ckpt["scaler"])
    world = trainer.world
    ranks = ckpt.get("rng_gen_ranks") or [ckpt["rng_gen"]]
    if len(ranks) == world.world_size:
        trainer.gen.set_state(ranks[world.rank])
    else:  # resumed on another number of processes: fresh augmentation draws, seeded by the epoch
        trainer.gen.manual_seed(trainer.cfg.seed + SEED_STRIDE * world.rank + int(ckpt["epoch"]))
    if "rng_order" in ckpt:
        trainer.order_gen.set_state(ckpt["rng_order"])
