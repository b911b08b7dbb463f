"""``cvkit retrieve duplicates``: pairs of indexed images whose embeddings are nearly the same,
flagged when the two lie in different splits (a test image that is a copy of a train image
inflates the test score: data leakage)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cvkit.errors import OptionError
from cvkit.files.lock import releasing
from cvkit.files.outputs import check_out, holds_only
from cvkit.files.retrieve import DUPLICATES_CSV, write_duplicates
from cvkit.retrieve.index import load_index
from cvkit.retrieve.search import Rows, pairs_above

# Scores of identical images differ from 1 by rounding: about 1e-6 in float32 storage, 1e-3 in
# float16 (each component rounded to 11 bits). A pair within this of the threshold counts.
TOLERANCE = {"float32": 1e-5, "float16": 2e-3}
MAX_PAIRS = 1_000_000  # pairs written at most (the most similar): a low threshold on a large index finds billions


@dataclass
class DuplicatesResult:
    out: Path  # the CSV
    pairs: int  # pairs found in all
    written: int
    cross_split: int  # of those written


def check_threshold(threshold: float) -> None:
    if not -1 < threshold <= 1:
        raise OptionError(f"--threshold {threshold} must lie in (-1, 1]: a cosine similarity, 1 for identical "
                          f"embeddings (0.95-0.99 finds near duplicates)")


@releasing  # the --out lock check_out takes is given up on return
def duplicates(index: str | os.PathLike, threshold: float = 0.98, out: str | os.PathLike | None = None,
               max_pairs: int = MAX_PAIRS) -> DuplicatesResult:
    """Every pair with similarity >= ``threshold`` (the ``max_pairs`` most similar written), in
    duplicates.csv in ``out`` (default: the index folder)."""
    import pandas as pd

    check_threshold(threshold)
    if max_pairs < 1:
        raise OptionError(f"--max-pairs {max_pairs} must be at least 1")
    folder = Path(index)
    meta, embeddings, items = load_index(folder)
    if out is not None:
        out = check_out(out, reads=[folder], own=holds_only([DUPLICATES_CSV]), force=True)
    a, b, s, total = pairs_above(Rows.of(embeddings), threshold - TOLERANCE[meta.dtype], max_pairs)
    paths, labels, splits = (items[c].to_numpy() for c in ("path", "label", "split"))
    table = pd.DataFrame({"a": a, "b": b, "similarity": s.clip(max=1.0), "path_a": paths[a], "path_b": paths[b],
                          "label_a": labels[a], "label_b": labels[b], "split_a": splits[a], "split_b": splits[b],
                          "cross_split": splits[a] != splits[b]})
    target = Path(out) if out is not None else folder
    target.mkdir(parents=True, exist_ok=True)
    return DuplicatesResult(write_duplicates(target, table), total, len(table), int(table["cross_split"].sum()))
