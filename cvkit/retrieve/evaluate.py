"""``cvkit retrieve eval``: precision@k, recall@k and mAP of the learned embeddings, by label, against
raw pixels searched the same way, so the user sees what the learned features buy.

Relevant = an indexed item with the query's label. A query that is itself indexed (the same file)
is never its own result, so evaluating the indexed split against itself is leave-one-out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cvkit.errors import ManifestError, OptionError
from cvkit.files.dataset import SPLITS, is_dataset
from cvkit.files.jsonio import finite
from cvkit.files.lock import releasing
from cvkit.files.outputs import check_out, holds_only
from cvkit.files.retrieve import EVAL_JSON, write_eval
from cvkit.retrieve.approx import faiss_search
from cvkit.checks import check_batch_size
from cvkit.retrieve.index import absolute, embed, load_index
from cvkit.retrieve.query import load_index_run
from cvkit.retrieve.search import BLOCK_ELEMENTS, Rows, all_scores, normalize, search
from cvkit.runtime import LoadedRun


@dataclass
class RetrievalEval:
    out: Path  # the retrieve_eval.json written
    report: dict[str, Any]


def parse_ks(text: str) -> list[int]:
    """``5,10`` -> [5, 10]; every k at least 1."""
    try:
        ks = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        ks = []
    if not ks or ks[0] < 1:
        raise OptionError(f"-k {text} must be whole numbers of at least 1 separated by commas, for example -k 5,10")
    return ks


def ranking_metrics(queries: Rows, index: Rows, query_labels: np.ndarray, item_labels: np.ndarray, ks: list[int],
                    exclude: torch.Tensor, budget: int = BLOCK_ELEMENTS) -> dict[str, float]:
    """Mean precision@k, recall@k (over queries with a relevant item) and mAP over full rankings."""
    items = torch.from_numpy(item_labels)
    block = max(1, budget // max(index.count, 1))
    hits = {k: [] for k in ks}
    recalls = {k: [] for k in ks}
    aps = []
    for start in range(0, queries.count, block):
        stop = min(start + block, queries.count)
        scores = all_scores(queries.chunk(start, stop), index, exclude[start:stop], budget)
        relevant = items[None, :] == torch.from_numpy(query_labels[start:stop])[:, None]
        rows = (exclude[start:stop] >= 0).nonzero()[:, 0]
        relevant[rows, exclude[start:stop][rows]] = False
        order = torch.argsort(scores, dim=1, descending=True, stable=True)
        ranked = relevant.gather(1, order).float()
        total = ranked.sum(1)
        has = total > 0
        for k in ks:
            found = ranked[:, :k].sum(1)
            hits[k].append(found / k)
            recalls[k].append((found / total.clamp_min(1))[has])
        precision_at = ranked.cumsum(1) / torch.arange(1, ranked.shape[1] + 1)
        aps.append(((precision_at * ranked).sum(1) / total.clamp_min(1))[has])
    result: dict[str, float] = {}
    for k in ks:
        result[f"precision@{k}"] = float(torch.cat(hits[k]).mean())
        result[f"recall@{k}"] = float(torch.cat(recalls[k]).mean()) if torch.cat(recalls[k]).numel() else float("nan")
    every = torch.cat(aps)
    result["map"] = float(every.mean()) if every.numel() else float("nan")
    return result


def pixel_rows(loaded: LoadedRun, images: np.ndarray | list[tuple[np.ndarray, np.ndarray]],
               where: tuple[np.ndarray, np.ndarray] | None = None) -> Rows:
    """Raw pixels at the run's input size, normalized with the run's mean/std, flattened, L2-normalized.

    ``images`` is one uint8 array, or several (``where``: each row's array and position in it).
    """
    from cvkit.data.cache import take

    arrays = images if isinstance(images, list) else [images]
    source, position = where if where is not None else (np.zeros(len(arrays[0]), np.int64), np.arange(len(arrays[0])))
    h, w = loaded.input_size

    def chunk(start: int, stop: int) -> torch.Tensor:
        batch = np.empty((stop - start, h, w, loaded.in_chans), np.uint8)
        for s in np.unique(source[start:stop]):
            mask = source[start:stop] == s
            batch[mask] = take(arrays[s], position[start:stop][mask])
        x = loaded.pre(torch.from_numpy(batch).to(loaded.device)).float().reshape(stop - start, -1)
        return normalize(x).cpu()

    return Rows(len(source), h * w * loaded.in_chans, chunk)


def _indexed_pixels(loaded: LoadedRun, items: "pd.DataFrame", datasets: list[str]) -> Rows:  # noqa: F821
    """The indexed images' pixels, found by path in the datasets' caches."""
    from cvkit.data import load_split

    arrays, at = [], {}
    for data in datasets:
        for split in sorted(set(items["split"]) & set(SPLITS)):
            try:
                part = load_split(data, split, loaded.input_size)
            except ManifestError:
                continue
            for i, p in enumerate(part.paths):
                at.setdefault(absolute(Path(data), p), (len(arrays), i))
            arrays.append(part.images)
    missing = [p for p in items["path"] if p not in at]
    if missing:
        raise ManifestError(f"the raw-pixel baseline needs the indexed images, and {missing[0]} is in none of the "
                            f"datasets meta.json names; restore it, or pass --no-baseline")
    where = np.array([at[p] for p in items["path"]], dtype=np.int64).reshape(-1, 2)
    return pixel_rows(loaded, arrays, (where[:, 0], where[:, 1]))


@releasing  # the --out lock check_out takes is given up on return
def evaluate_index(index: str | os.PathLike, queries: str | os.PathLike, split: str = "test",
                   ks: list[int] | None = None, out: str | os.PathLike | None = None, baseline: bool = True,
                   device: str = "auto", batch_size: int = 256) -> RetrievalEval:
    """Retrieval figures of ``split`` of the dataset ``queries`` against the index; retrieve_eval.json
    in ``out`` (default: the index folder)."""
    from cvkit.data import load_split

    ks = ks or [5, 10]
    if min(ks) < 1:
        raise OptionError(f"-k {min(ks)} must be at least 1")
    if split not in SPLITS:
        raise OptionError(f"--split {split} must be one of {', '.join(SPLITS)}")
    check_batch_size(batch_size)
    folder, data = Path(index), Path(queries)
    meta, embeddings, items = load_index(folder)
    if not is_dataset(data):
        raise OptionError(f"--queries {data} is not a dataset directory; make one with 'cvkit prepare'")
    if meta.count == 0:
        raise ManifestError(f"{folder} holds no items; index a split first")
    loaded = load_index_run(meta, folder, device)
    if out is not None:
        out = check_out(out, reads=[folder, data, meta.run], own=holds_only([EVAL_JSON]), force=True)
    part = load_split(data, split, loaded.input_size)
    if not part.classes:
        raise OptionError(f"--queries {data} has no labels (a regress dataset without a label column), and "
                          f"retrieve eval counts an item relevant when it shares the query's label; give a "
                          f"labelled dataset")
    names = sorted(set(items["label"]) | set(part.classes))
    code = {name: i for i, name in enumerate(names)}
    item_labels = np.array([code[x] for x in items["label"]], dtype=np.int64)
    query_labels = np.array([code[part.classes[i]] for i in part.labels], dtype=np.int64)
    row_of = {p: i for i, p in enumerate(items["path"])}
    exclude = torch.tensor([row_of.get(absolute(data, p), -1) for p in part.paths], dtype=torch.int64)
    vectors, _ = embed(loaded, part.images, meta.layer, batch_size)
    report: dict[str, Any] = {
        "index": str(folder), "count": meta.count, "layer": meta.layer, "dimension": meta.dimension,
        "queries": str(data), "split": split, "query_count": len(part.paths),
        "excluded_self": int((exclude >= 0).sum()), "ks": ks,
        "learned": ranking_metrics(Rows.of(vectors), Rows.of(embeddings), query_labels, item_labels, ks, exclude)}
    if baseline:
        report["raw_pixels"] = ranking_metrics(pixel_rows(loaded, part.images),
                                               _indexed_pixels(loaded, items, meta.data), query_labels, item_labels,
                                               ks, exclude)
    if meta.index_type != "flat":
        report["approximate"] = _approximate(folder, meta.index_type, vectors, embeddings, exclude, ks)
    target = Path(out) if out is not None else folder
    target.mkdir(parents=True, exist_ok=True)
    return RetrievalEval(write_eval(target, finite(report)), report)


def _approximate(folder: Path, kind: str, vectors: torch.Tensor, embeddings: np.ndarray, exclude: torch.Tensor,
                 ks: list[int]) -> dict[str, Any]:
    """The faiss index's recall@k against exact search: the share of the exact top k it also returns."""
    top = max(ks)
    _, exact = search(vectors, Rows.of(embeddings), top, exclude)
    _, approx = faiss_search(folder, kind, vectors, top + 1)
    approx = [[r for r in row if r != exclude[q] and r >= 0][:top] for q, row in enumerate(approx.tolist())]
    result: dict[str, Any] = {"index_type": kind}
    for k in ks:
        shares = [len(set(a[:k]) & set(e[:k])) / k for a, e in zip(approx, exact.tolist())]
        result[f"recall@{k}_vs_exact"] = float(np.mean(shares))
    return result
