"""``cvkit retrieve``'s files: the index folder (``embeddings.npy``, ``items.csv``, ``meta.json``,
``faiss.index``) and the outputs of query, eval and duplicates. Nothing else opens them by name.

``embeddings.npy``: N x D, float32 or float16, each row L2-normalized (cosine = dot product).
``items.csv``: ``row,path,label,split``, one line per embedding row, paths absolute.
``meta.json``: ``format``, ``run``, ``layer``, ``dimension``, ``count``, ``dtype``, ``data`` (the
datasets indexed, in order), ``index_type`` (``flat``, ``ivf`` or ``hnsw``).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cvkit.errors import ManifestError
from cvkit.files.atomic import atomic_path, read_csv_checked, write_csv, write_npy
from cvkit.files.jsonio import from_json, read_json, write_json

EMBEDDINGS = "embeddings.npy"
ITEMS_CSV = "items.csv"
META_JSON = "meta.json"
FAISS_INDEX = "faiss.index"
NEIGHBORS_CSV = "neighbors.csv"
EVAL_JSON = "retrieve_eval.json"
DUPLICATES_CSV = "duplicates.csv"
ITEM_COLUMNS = ("row", "path", "label", "split")
NEIGHBOR_COLUMNS = ("query", "rank", "path", "label", "score")
DUPLICATE_COLUMNS = ("a", "b", "similarity", "path_a", "path_b", "label_a", "label_b", "split_a", "split_b",
                     "cross_split")
# What an index folder may hold (what `index --force` may replace): its own files and the outputs
# query, eval and duplicates write into it by default.
INDEX_FILES = (EMBEDDINGS, ITEMS_CSV, META_JSON, FAISS_INDEX, EVAL_JSON, DUPLICATES_CSV, "query", "shard-*-of-*")
QUERY_FILES = (NEIGHBORS_CSV, "neighbors*.png", "rejected.csv")
DTYPES = ("float32", "float16")
INDEX_TYPES = ("flat", "ivf", "hnsw")
REINDEX = "rebuild it with 'cvkit retrieve index RUN DATA --out INDEX --force'"


@dataclass
class IndexMeta:
    """``INDEX/meta.json``: which run and layer made the embeddings, their size and storage."""

    run: str
    layer: str
    dimension: int
    count: int
    dtype: str
    data: list[str] = field(default_factory=list)
    index_type: str = "flat"

    def write(self, folder: str | os.PathLike) -> None:
        write_json(Path(folder) / META_JSON, asdict(self))

    @classmethod
    def read(cls, folder: str | os.PathLike) -> "IndexMeta":
        folder = Path(folder)
        if not (folder / META_JSON).is_file():
            what = "is not a folder" if not folder.is_dir() else f"has no {META_JSON}"
            raise ManifestError(f"{folder} {what}: it is not a retrieval index; make one with "
                                f"'cvkit retrieve index RUN DATA --out {folder}'")
        path = folder / META_JSON
        meta = from_json(cls, read_json(path, REINDEX), path, REINDEX)
        if meta.dtype not in DTYPES or meta.index_type not in INDEX_TYPES or meta.dimension < 1 or meta.count < 0:
            raise ManifestError(f"{path}: dtype, index_type, dimension or count is invalid; {REINDEX}")
        return meta


def is_index(folder: str | os.PathLike) -> bool:
    return (Path(folder) / META_JSON).is_file()


def write_items(folder: str | os.PathLike, items: "pd.DataFrame") -> None:  # noqa: F821
    """``items.csv``: ``row,path,label,split`` (rows numbered from 0, in embedding order)."""
    write_csv(Path(folder) / ITEMS_CSV, items[list(ITEM_COLUMNS)])


def read_items(folder: str | os.PathLike, count: int) -> "pd.DataFrame":  # noqa: F821
    path = Path(folder) / ITEMS_CSV
    items = read_csv_checked(path, ITEM_COLUMNS, REINDEX, dtype={"path": str, "label": str, "split": str})
    if len(items) != count or not (items["row"].to_numpy() == np.arange(count)).all():
        raise ManifestError(f"{path} has {len(items)} rows numbered out of order, meta.json counts {count}; {REINDEX}")
    return items


def write_embeddings(folder: str | os.PathLike, array: np.ndarray) -> None:
    write_npy(Path(folder) / EMBEDDINGS, array)


def open_embeddings(folder: str | os.PathLike, meta: IndexMeta) -> np.ndarray:
    """The N x D embeddings, memory-mapped (copy-on-write, so torch can wrap slices without a copy)."""
    path = Path(folder) / EMBEDDINGS
    try:
        array = np.load(path, mmap_mode="c")
    except (OSError, ValueError) as e:
        raise ManifestError(f"{path} cannot be read ({e}); {REINDEX}") from None
    if array.shape != (meta.count, meta.dimension) or str(array.dtype) != meta.dtype:
        raise ManifestError(f"{path} is {array.shape} {array.dtype}, meta.json says ({meta.count}, {meta.dimension}) "
                            f"{meta.dtype}; {REINDEX}")
    return array


def write_faiss(folder: str | os.PathLike, index: Any) -> None:
    import faiss

    with atomic_path(Path(folder) / FAISS_INDEX) as tmp:
        faiss.write_index(index, str(tmp))


def read_faiss(folder: str | os.PathLike) -> Any:
    import faiss

    path = Path(folder) / FAISS_INDEX
    if not path.is_file():
        raise ManifestError(f"{path} is missing though meta.json names a faiss index; {REINDEX}")
    return faiss.read_index(str(path))


def write_neighbors(folder: str | os.PathLike, table: "pd.DataFrame") -> Path:  # noqa: F821
    path = Path(folder) / NEIGHBORS_CSV
    write_csv(path, table[list(NEIGHBOR_COLUMNS)], "%.6f")
    return path


def write_eval(folder: str | os.PathLike, data: dict[str, Any]) -> Path:
    path = Path(folder) / EVAL_JSON
    write_json(path, data)
    return path


def write_duplicates(folder: str | os.PathLike, table: "pd.DataFrame") -> Path:  # noqa: F821
    path = Path(folder) / DUPLICATES_CSV
    write_csv(path, table[list(DUPLICATE_COLUMNS)], "%.6f")
    return path
