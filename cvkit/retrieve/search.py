"""Exact cosine search: a chunked matrix product with a running top-k merge, in bounded memory.

The index is read a chunk of rows at a time (from a memory map, or made on the fly, as the
raw-pixel baseline is) and each chunk's scores are merged into the best k so far with
``torch.topk``: memory is a chunk of the index and a block of scores, whatever the index's size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

# Elements of one block of scores (queries x index rows) and of one float32 index chunk: 64 MB each,
# so a search holds well under 1 GiB besides the memory-mapped index, and each matrix product is
# large enough to run at full speed.
BLOCK_ELEMENTS = 1 << 24


@dataclass
class Rows:
    """N x D row vectors read ``chunk(start, stop)`` at a time as float32 torch tensors (L2-normalized)."""

    count: int
    dimension: int
    chunk: Callable[[int, int], torch.Tensor]

    @classmethod
    def of(cls, array: np.ndarray | torch.Tensor) -> "Rows":
        """Rows of an in-memory or memory-mapped array. float16 rows are widened chunk by chunk into one
        reused buffer (6x faster than a fresh tensor per chunk, whose pages the kernel must fault in
        and zero each time), so a chunk is valid only until the next one is read."""
        buffer = torch.empty(0)

        def chunk(start: int, stop: int) -> torch.Tensor:
            nonlocal buffer
            part = array[start:stop]
            part = part if isinstance(part, torch.Tensor) else torch.from_numpy(np.asarray(part))
            if part.dtype == torch.float32:
                return part
            if buffer.numel() < part.numel():
                buffer = torch.empty(part.numel())
            return buffer[:part.numel()].view(part.shape).copy_(part)
        return cls(int(array.shape[0]), int(array.shape[1]), chunk)


def chunk_rows(queries: int, dimension: int, budget: int = BLOCK_ELEMENTS) -> int:
    """Index rows per chunk: scores (queries x rows) and the chunk (rows x dimension) within ``budget``."""
    return max(256, budget // max(queries, dimension, 1))


def dot(q: torch.Tensor, rows: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``q @ rows.T`` (float32), into the flat buffer ``out`` when given: a block of scores reused
    from chunk to chunk costs no fresh pages to fault in and zero each time."""
    if out is None:
        return q @ rows.T
    return torch.matmul(q, rows.T, out=out[:len(q) * len(rows)].view(len(q), len(rows)))


def normalize(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit length (a zero row stays zero)."""
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


@torch.inference_mode()
def search(queries: torch.Tensor, index: Rows, k: int, exclude: torch.Tensor | None = None,
           budget: int = BLOCK_ELEMENTS) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` highest dot products of each query (Q x D float32) over ``index``: scores and row
    numbers (Q x k, best first; -1 and -inf where the index has fewer than k rows).

    ``exclude[q]`` is a row never returned for query q (-1: none): a query that is itself in the index.
    """
    q = queries.float().contiguous()
    n_q = len(q)
    k_eff = min(k, index.count - (1 if exclude is not None and bool((exclude >= 0).any()) else 0))
    best_s = torch.full((n_q, max(k_eff, 0)), -torch.inf)
    best_i = torch.full((n_q, max(k_eff, 0)), -1, dtype=torch.int64)
    step = chunk_rows(n_q, index.dimension, budget)
    buffer = torch.empty(n_q * min(step, index.count))  # one block of scores, reused
    for start in range(0, index.count if k_eff > 0 else 0, step):
        stop = min(start + step, index.count)
        scores = dot(q, index.chunk(start, stop), buffer)
        if exclude is not None:
            inside = (exclude >= start) & (exclude < stop)
            if bool(inside.any()):
                scores[inside.nonzero()[:, 0], exclude[inside] - start] = -torch.inf
        top_s, top_i = torch.topk(scores, min(k_eff, stop - start), dim=1)
        both_s = torch.cat([best_s, top_s], 1)
        both_i = torch.cat([best_i, top_i + start], 1)
        best_s, at = torch.topk(both_s, k_eff, dim=1)
        best_i = torch.gather(both_i, 1, at)
    if k_eff < k:  # pad: fewer rows than asked
        best_s = torch.cat([best_s, torch.full((n_q, k - k_eff), -torch.inf)], 1)
        best_i = torch.cat([best_i, torch.full((n_q, k - k_eff), -1, dtype=torch.int64)], 1)
    return best_s, best_i


@torch.inference_mode()
def all_scores(queries: torch.Tensor, index: Rows, exclude: torch.Tensor | None = None,
               budget: int = BLOCK_ELEMENTS) -> torch.Tensor:
    """Every query's score against every row (Q x N, the excluded row -inf): for full rankings (mAP)
    of a block of queries; callers keep Q x N within their memory."""
    q = queries.float().contiguous()
    out = torch.empty(len(q), index.count)
    step = chunk_rows(len(q), index.dimension, budget)
    for start in range(0, index.count, step):
        stop = min(start + step, index.count)
        out[:, start:stop] = dot(q, index.chunk(start, stop))
    if exclude is not None:
        rows = (exclude >= 0).nonzero()[:, 0]
        out[rows, exclude[rows]] = -torch.inf
    return out


@torch.inference_mode()
def pairs_above(index: Rows, threshold: float, limit: int,
                budget: int = BLOCK_ELEMENTS) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Pairs (a < b) of rows whose dot product is at least ``threshold``: rows a, rows b and scores of
    the ``limit`` most similar (best first), and how many pairs there are in all.

    Blocks of rows against the rows after them: never the N x N matrix at once.
    """
    step = max(256, int(budget ** 0.5))
    found_a, found_b, found_s, total = [], [], [], 0
    kept = 0
    for start in range(0, index.count, step):
        stop = min(start + step, index.count)
        block = index.chunk(start, stop).clone()  # the next chunk may reuse the memory it is read into
        for other in range(start, index.count, step):
            end = min(other + step, index.count)
            scores = dot(block, block if other == start else index.chunk(other, end))
            if other == start:  # each pair once, never an item with itself
                scores.masked_fill_(torch.ones_like(scores, dtype=torch.bool).tril(), -torch.inf)
            a, b = (scores >= threshold).nonzero(as_tuple=True)
            if len(a) == 0:
                continue
            total += len(a)
            found_a.append(a + start)
            found_b.append(b + other)
            found_s.append(scores[a, b])
            kept += len(a)
            if kept > 2 * limit:  # keep memory bounded: only the best ``limit`` can be written
                found_a, found_b, found_s = _best(found_a, found_b, found_s, limit)
                kept = len(found_s[0])
    if not found_s:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32), 0
    (a,), (b,), (s,) = _best(found_a, found_b, found_s, limit)
    return a.numpy(), b.numpy(), s.numpy(), total


def _best(a: list, b: list, s: list, limit: int) -> tuple[list, list, list]:
    a, b, s = torch.cat(a), torch.cat(b), torch.cat(s)
    # best first; ties by row numbers, so the order does not depend on chunking
    order = np.lexsort((b.numpy(), a.numpy(), -s.double().numpy()))[:limit]
    order = torch.from_numpy(order)
    return [a[order]], [b[order]], [s[order]]
