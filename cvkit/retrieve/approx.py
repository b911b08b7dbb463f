"""Approximate search with faiss (optional: ``pip install cvkit[faiss]``): IVF and HNSW indexes over
the same normalized embeddings, inner product as the metric, for collections too large to scan."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import torch

from cvkit.errors import OptionError
from cvkit.files.retrieve import INDEX_TYPES, read_faiss, write_faiss

FAISS_MISSING = ("--index-type {kind} needs faiss, which is not installed: pip install 'cvkit[faiss]' "
                 "(or pip install faiss-cpu), or use --index-type flat (exact search)")
HNSW_LINKS = 32  # neighbours per node: faiss' usual choice for recall above 0.95
HNSW_EF_SEARCH = 128  # candidates kept while searching: recall against speed
IVF_PROBE_SHARE = 8  # lists visited per query: nlist / 8 (at least 1)


def check_index_type(kind: str) -> None:
    if kind not in INDEX_TYPES:
        raise OptionError(f"--index-type {kind} must be one of {', '.join(INDEX_TYPES)}")
    if kind != "flat" and importlib.util.find_spec("faiss") is None:
        raise OptionError(FAISS_MISSING.format(kind=kind))


def build_faiss(folder: str | os.PathLike, vectors: np.ndarray, kind: str) -> None:
    """An IVF (about sqrt(N) lists, k-means on the vectors) or HNSW index of ``vectors``, saved in ``folder``."""
    import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n, d = x.shape
    if kind == "ivf":
        lists = max(1, min(int(np.sqrt(n)), n // 39))  # faiss wants about 39 training points per list
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, lists, faiss.METRIC_INNER_PRODUCT)
        index.train(x)
    else:
        index = faiss.IndexHNSWFlat(d, HNSW_LINKS, faiss.METRIC_INNER_PRODUCT)
    index.add(x)
    write_faiss(folder, index)


def faiss_search(folder: str | os.PathLike, kind: str, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores and rows (Q x k, best first) from the index's faiss file."""
    import faiss

    if importlib.util.find_spec("faiss") is None:
        raise OptionError(FAISS_MISSING.format(kind=kind))
    index = read_faiss(folder)
    if kind == "ivf":
        faiss.extract_index_ivf(index).nprobe = max(1, index.nlist // IVF_PROBE_SHARE)
    else:
        index.hnsw.efSearch = max(HNSW_EF_SEARCH, k)
    scores, rows = index.search(np.ascontiguousarray(queries.float().numpy()), k)
    return torch.from_numpy(scores), torch.from_numpy(rows.astype(np.int64))
