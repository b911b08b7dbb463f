"""Training on several processes with PyTorch's own engine: ``torchrun`` + DistributedDataParallel.

``torchrun --nproc_per_node N -m cvkit train DATA ...`` starts N copies of the command with
``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` in their environment; :func:`World.start` joins them in a
process group (NCCL on CUDA, Gloo on the CPU). Each process reads its own shard of the packed cache
(:class:`cvkit.data.batches.Batches` takes the rank), DDP averages the gradients, and only rank 0
writes files and prints. ``--batch-size`` is the **global** batch, split evenly over the processes,
so the same command gives the same optimization on 1 or N processes (and the default learning rate,
which follows the global batch, stays what it is on one). Without torchrun's variables, or with
``WORLD_SIZE=1``, nothing here does anything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from cvkit.errors import OptionError


@dataclass
class World:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    started_here: bool = False  # this World created the process group (and destroys it)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes files and prints."""
        return self.rank == 0

    @staticmethod
    def launched_rank() -> int:
        """This process's rank as torchrun launched it (0 without torchrun), known before :meth:`start`:
        rank 0 alone locks and writes the run, and reports on the terminal."""
        return int(os.environ.get("RANK", "0"))

    @classmethod
    def start(cls, device_name: str) -> "World":
        """Join the process group torchrun describes in the environment (a no-op world of one without it)."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls()
        rank, local_rank = cls.launched_rank(), int(os.environ.get("LOCAL_RANK", "0"))
        if dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size(), local_rank)
        cuda = device_name != "cpu" and device_name != "mps" and torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if cuda else "gloo")
        return cls(rank, world_size, local_rank, started_here=True)

    def device_name(self, device_name: str) -> str:
        """On CUDA each process takes the GPU of its local rank."""
        if self.distributed and device_name in ("auto", "cuda") and torch.cuda.is_available():
            return f"cuda:{self.local_rank}"
        return device_name

    def finished(self, result: Any) -> Any:
        """``result``, once every rank has got this far: rank 0 still writes and plots after the last
        collective, and a rank that tore the process group down meanwhile could abort in gloo's threads
        ("terminate called without an active exception"). Only on success: after an error a rank
        waiting here for one that failed would hang."""
        if self.distributed and dist.is_initialized():
            dist.barrier()
        return result

    def stop(self) -> None:
        if self.started_here and dist.is_initialized():
            dist.destroy_process_group()

    # ------------------------------------------------------------------ agreeing on things

    def agree(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank: choices that are timed (precision, epochs under --budget)
        must be the same everywhere, or the processes would train different things."""
        if not self.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order (on every rank)."""
        if not self.distributed:
            return [value]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out

    def sum(self, *values: float) -> list[float]:
        """Sums over the ranks (train loss, correct counts, images seen)."""
        if not self.distributed:
            return list(values)
        # NCCL reduces CUDA tensors only (torch.cuda.set_device picked this process's GPU in start)
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.tolist()

    def per_process_batch(self, global_batch: int) -> int:
        """Each process's share of the global batch; refused when it does not split evenly."""
        if global_batch % self.world_size:
            raise OptionError(f"--batch-size {global_batch} does not split evenly over {self.world_size} processes; "
                              f"use a multiple of {self.world_size} (it is the global batch)")
        return global_batch // self.world_size

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """``model`` in DistributedDataParallel (which starts from rank 0's weights and averages the
        gradients in each backward pass); the model itself on one process."""
        if not self.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)


def check_sync_bn(sync_bn: bool, device: torch.device) -> None:
    """torch's SyncBatchNorm runs on CUDA only: refuse it elsewhere rather than fail in the first step."""
    if sync_bn and device.type != "cuda":
        raise OptionError(f"--sync-bn synchronizes BatchNorm statistics across GPUs, and torch's SyncBatchNorm runs "
                          f"on CUDA only (this run is on {device.type}); drop --sync-bn")


def single_process_only(what: str, instead: str) -> None:
    """Refuse a command that writes shared files from every process when started by torchrun."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise OptionError(f"{what} runs on one process, and torchrun started {os.environ['WORLD_SIZE']}; {instead}")
