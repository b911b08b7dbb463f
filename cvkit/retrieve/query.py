"""``cvkit retrieve query``: the nearest indexed images of new images, a table and a contact sheet."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cvkit.data.decode import check_workers
from cvkit.errors import ManifestError, OptionError, SourceError
from cvkit.files.dataset import write_rejected
from cvkit.files.lock import releasing
from cvkit.files.outputs import check_out, replacing
from cvkit.files.owned import own_query
from cvkit.files.retrieve import IndexMeta, write_neighbors
from cvkit.files.run import ModelInfo
from cvkit.plots.retrieve import write_contact_sheet
from cvkit.retrieve.approx import faiss_search
from cvkit.checks import check_batch_size
from cvkit.retrieve.index import embed, load_index
from cvkit.retrieve.search import Rows, search
from cvkit.runtime import LoadedRun

SHEET_ROWS = 25  # queries per contact-sheet PNG: neighbors.png, then neighbors_2.png, ...


@dataclass
class QueryResult:
    out: Path
    table: "pd.DataFrame"  # noqa: F821 - query, rank, path, label, score
    rejected: list[tuple[str, str]]
    sheets: list[Path]
    exact: bool


def load_index_run(meta: IndexMeta, folder: Path, device: str) -> LoadedRun:
    """The run that made the index (meta.json's ``run``), ready on ``device``."""
    from cvkit.device import resolve_device
    from cvkit.runtime import load_run

    if not ModelInfo.exists(meta.run):
        raise ManifestError(f"{folder}/meta.json names the run {meta.run}, which is gone; restore it there or "
                            f"rebuild the index with 'cvkit retrieve index RUN DATA --out {folder} --force'")
    return load_run(meta.run, resolve_device(device))


def check_k(k: int) -> None:
    if k < 1:
        raise OptionError(f"-k {k} must be at least 1 (the number of neighbours per query)")


def nearest(folder: Path, meta: IndexMeta, embeddings: np.ndarray, vectors: torch.Tensor, k: int,
            exact: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The k best rows of the index for each vector: exact, or through the index's faiss file."""
    if vectors.shape[1] != meta.dimension:
        raise ManifestError(f"the queries' embeddings have {vectors.shape[1]} dimensions, {folder} holds "
                            f"{meta.dimension}: the run changed since indexing; rebuild the index with --force")
    if meta.index_type != "flat" and not exact:
        return faiss_search(folder, meta.index_type, vectors, k)
    return search(vectors, Rows.of(embeddings), k)


@releasing  # the --out lock check_out takes is given up on return
def query(index: str | os.PathLike, inputs: list[str], k: int = 5, out: str | os.PathLike | None = None,
          exact: bool = False, device: str = "auto", batch_size: int = 256, workers: int | None = None) -> QueryResult:
    """The ``k`` nearest indexed images (cosine) of every readable image of ``inputs``, read as the run
    sees them; writes neighbors.csv, the contact sheet(s) and rejected.csv into ``out``."""
    import pandas as pd

    from cvkit.runtime import collect_inputs, read_images

    check_k(k)
    check_batch_size(batch_size)
    check_workers(workers)
    folder = Path(index)
    meta, embeddings, items = load_index(folder)
    loaded = load_index_run(meta, folder, device)
    paths = collect_inputs(inputs)
    out = check_out(out or folder / "query", reads=[folder, meta.run, *inputs], own=own_query, force=True)
    found = read_images(paths, loaded.input_size, loaded.in_chans, loaded.info.resize, workers)
    if not found.paths:
        first = found.rejected[0]
        raise SourceError(f"none of the {len(paths)} input image(s) could be read (first: {first[0]}: {first[1]}); "
                          f"give readable images")
    vectors, _ = embed(loaded, found.images, meta.layer, batch_size)
    scores, rows = nearest(folder, meta, embeddings, vectors, k, exact)
    records = []
    for q, path in enumerate(found.paths):
        for rank, (row, score) in enumerate(zip(rows[q].tolist(), scores[q].tolist()), start=1):
            if row >= 0:
                records.append({"query": path, "rank": rank, "path": items.at[row, "path"],
                                "label": items.at[row, "label"], "score": score})
    table = pd.DataFrame(records, columns=["query", "rank", "path", "label", "score"])
    with replacing(out) as stage:
        write_neighbors(stage, table)
        write_rejected(stage, found.rejected)
        sheets = _sheets(stage, out, loaded, found, table, workers)
    return QueryResult(out, table, found.rejected, sheets, meta.index_type == "flat" or exact)


def _sheets(stage: Path, out: Path, loaded: LoadedRun, found, table, workers: int | None) -> list[Path]:
    """Contact sheets of the queries beside their neighbours (read from their files, as the run sees them)."""
    from cvkit.runtime import read_images

    unique = list(dict.fromkeys(table["path"]))
    pictures = read_images(unique, loaded.input_size, loaded.in_chans, loaded.info.resize, workers) if unique else None
    by_path = dict(zip(pictures.paths, pictures.images)) if pictures is not None else {}
    groups = {q: g for q, g in table.groupby("query", sort=False)}
    rows = []
    for i, path in enumerate(found.paths):
        g = groups.get(path)
        neighbours = [] if g is None else [(by_path.get(p), str(label), float(s))
                                           for p, label, s in zip(g["path"], g["label"], g["score"])]
        rows.append((found.images[i], Path(path).name, neighbours))
    written = []
    for page, start in enumerate(range(0, len(rows), SHEET_ROWS), start=1):
        name = "neighbors.png" if page == 1 else f"neighbors_{page}.png"
        write_contact_sheet(rows[start:start + SHEET_ROWS], stage / name)
        written.append(out / name)
    return written
