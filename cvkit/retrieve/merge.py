"""``cvkit retrieve merge INDEX``: the shares written by ``retrieve index --shard I/N`` as one index.

The N folders ``INDEX/shard-I-of-N`` must all be there and come from the same run, layer, storage
type and split; their embeddings and items are concatenated in share order (so the merged index is
the one an unsharded ``retrieve index`` writes), the rows renumbered, and an approximate faiss index
built over the whole, if asked. The shard folders stay.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np

from cvkit.errors import ManifestError, OptionError
from cvkit.files.lock import releasing
from cvkit.files.outputs import check_out, replacing
from cvkit.files.owned import own_index
from cvkit.files.retrieve import IndexMeta, is_index, open_embeddings, read_items, write_embeddings, write_items
from cvkit.retrieve.approx import build_faiss, check_index_type

SHARD = re.compile(r"^shard-(\d+)-of-(\d+)$")


@releasing  # the --out lock check_out takes is given up on return
def merge_index(out: str | Path, index_type: str = "flat") -> IndexMeta:
    import pandas as pd

    check_index_type(index_type)
    out = Path(out)
    found = sorted((int(m.group(1)), int(m.group(2)), p) for p in out.iterdir() if (m := SHARD.match(p.name))) \
        if out.is_dir() else []
    if not found:
        raise OptionError(f"{out} holds no shard-I-of-N folders; index each share with 'cvkit retrieve index RUN DATA "
                          f"--out {out} --shard I/N' first")
    counts = {n for _, n, _ in found}
    if len(counts) > 1:
        raise ManifestError(f"{out} holds shards of different N ({sorted(counts)}); remove the stale ones")
    count = counts.pop()
    missing = sorted(set(range(count)) - {i for i, _, _ in found})
    if missing:
        raise ManifestError(f"shard {missing[0]}/{count} is missing from {out} ({len(missing)} of {count} missing); "
                            f"index it with --shard {missing[0]}/{count}")
    metas = []
    for _, _, path in found:
        if not is_index(path):
            raise ManifestError(f"{path} is not a complete index; rerun that share")
        metas.append(IndexMeta.read(path))
    first = metas[0]
    for meta, (_, _, path) in zip(metas, found):
        if (meta.run, meta.layer, meta.dtype, meta.dimension, meta.data) != (first.run, first.layer, first.dtype,
                                                                           first.dimension, first.data):
            raise ManifestError(f"{path} was indexed with another run, layer, dataset or --half than "
                                f"{found[0][2].name}; rerun it")
    vectors = np.concatenate([np.asarray(open_embeddings(p, m)) for (_, _, p), m in zip(found, metas)])
    items = pd.concat([read_items(p, m.count) for (_, _, p), m in zip(found, metas)], ignore_index=True)
    items["row"] = np.arange(len(items))
    if items["path"].duplicated().any():
        raise ManifestError(f"the shards of {out} hold an image twice ({items['path'][items['path'].duplicated()].iloc[0]}); "
                            f"they are shares of different splits: rerun them")
    check_out(out, own=own_index, force=True)  # only cvkit's own files get replaced
    meta = IndexMeta(first.run, first.layer, first.dimension, len(vectors), first.dtype, first.data, index_type)
    with replacing(out) as stage:
        for _, _, path in found:
            shutil.copytree(path, stage / path.name)
        write_embeddings(stage, vectors)
        write_items(stage, items)
        if index_type != "flat":
            build_faiss(stage, vectors, index_type)
        meta.write(stage)
    return meta
