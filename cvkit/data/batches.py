"""Batches straight from the packed uint8 cache, with no per-image Python.

When the split fits the memory budget it is copied once into a uint8 tensor on the training
device and each batch is one ``index_select``; otherwise batches are gathered from the memory map
in sorted index order (sequential reads) by a background thread, so the next batch is read while
the current one trains. On 2 CPU cores, DataLoader worker processes would only take the cores the
model needs.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import numpy as np
import torch

# Keep a split resident on the device when it takes less than this.
RESIDENT_BYTES = {"cpu": 4 << 30, "cuda": 2 << 30, "mps": 1 << 30}


def steps_per_epoch(n: int, batch_size: int, drop_last: bool) -> int:
    """Batches in an epoch of ``n`` images; ``drop_last`` drops a last partial batch (unless it is the only one)."""
    if drop_last and n >= batch_size:
        return n // batch_size
    return -(-n // batch_size)


class Batches:
    """Shuffled (or ordered) batches of (uint8 images N x H x W x C, targets: int64 labels or float32 rows)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, device: torch.device,
                 shuffle: bool, drop_last: bool = False, rank: int = 0, world_size: int = 1,
                 weights: np.ndarray | None = None) -> None:
        """``weights``: each image's chance to be drawn (``--sampler``): a shuffled epoch then draws as many
        images as there are, with replacement, instead of each once."""
        self.batch_size = batch_size
        self.weights = torch.as_tensor(weights, dtype=torch.float64) if weights is not None else None
        self.shuffle, self.drop_last = shuffle, drop_last
        self.device = device
        self.rank, self.world_size = rank, world_size
        labels = np.asarray(labels)  # class indices, one row of targets per image (multi-hot, boxes, ...), or
        # uint8 planes per image (segment masks), kept as uint8: a mask per image would take 8x the memory as int64
        if labels.dtype == np.uint8 and labels.ndim > 2:
            self.labels = torch.from_numpy(np.array(labels)).to(device)
        else:
            self.labels = torch.as_tensor(labels, dtype=torch.int64 if labels.dtype.kind in "iub" else torch.float32).to(device)
        self.n = len(labels)
        self.resident = images.nbytes <= RESIDENT_BYTES.get(device.type, 1 << 30)
        if self.resident:
            self.images = torch.from_numpy(np.array(images)).to(device)  # one copy, off the memory map
        else:
            self.images = images  # the memory map

    def _shard_size(self) -> int:
        """Images this process takes per epoch. Training (``drop_last``) gives every process the same
        number, so that all take the same number of steps (DDP's gradient averaging waits for each);
        evaluation takes every image once."""
        if self.drop_last:
            return self.n // self.world_size
        return len(range(self.rank, self.n, self.world_size))

    def _order(self, gen: torch.Generator | None) -> torch.Tensor:
        if not self.shuffle:
            order = torch.arange(self.n)
        elif self.weights is not None:
            order = torch.multinomial(self.weights, self.n, replacement=True, generator=gen)
        else:
            order = torch.randperm(self.n, generator=gen)
        # each process of a distributed run takes its share (the same permutation on every rank)
        return order[self.rank::self.world_size][:self._shard_size()]

    def __len__(self) -> int:
        return steps_per_epoch(self._shard_size(), self.batch_size, self.drop_last)

    def epoch(self, gen: torch.Generator | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self._order(gen)
        chunks = [order[i * self.batch_size:(i + 1) * self.batch_size] for i in range(len(self))]
        if self.resident:
            for idx in chunks:
                idx = idx.to(self.device)
                yield self.images.index_select(0, idx), self.labels.index_select(0, idx)
        else:
            yield from self._streamed(chunks)

    def _streamed(self, chunks: list[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        pending: queue.Queue = queue.Queue(maxsize=2)
        pin = self.device.type == "cuda"

        def read() -> None:
            try:
                for idx in chunks:
                    # read in file order (sequential), then put the images back in the batch's order, so
                    # a streamed epoch is the resident one image for image (augmentation draws included)
                    sorted_idx, order = torch.sort(idx)
                    batch = torch.from_numpy(self.images[sorted_idx.numpy()])
                    batch = batch[torch.argsort(order)]
                    pending.put((batch.pin_memory() if pin else batch, idx))
                pending.put(None)
            except BaseException as e:  # handed to the consumer, which raises it
                pending.put(e)

        thread = threading.Thread(target=read, daemon=True)
        thread.start()
        while (item := pending.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            batch, idx = item
            idx = idx.to(self.device)
            yield batch.to(self.device, non_blocking=True), self.labels.index_select(0, idx)
        thread.join()
