"""``cvkit retrieve index``: embeddings of a dataset split in the classifier's latent space.

The default embedding is the penultimate layer, what the classifier's last linear layer reads
(timm's ``forward_head(..., pre_logits=True)``): the most class-aware features the net has that are
not yet tied to the fixed list of classes, so images of one class lie close together even when
the classifier would confuse them. Models whose own head cannot stop before the logits (a
torchvision model's own head) use the global average of the last feature map instead.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cvkit.device import autocast
from cvkit.checks import check_batch_size
from cvkit.errors import ManifestError, OptionError
from cvkit.files.dataset import SPLITS, is_dataset
from cvkit.files.lock import releasing
from cvkit.files.outputs import check_out, replacing
from cvkit.files.owned import own_index
from cvkit.files.retrieve import (EMBEDDINGS, FAISS_INDEX, INDEX_FILES, ITEMS_CSV, META_JSON,
                                  IndexMeta, is_index, open_embeddings, read_items, write_embeddings, write_items)
from cvkit.progress import progress_bar
from cvkit.retrieve.approx import build_faiss, check_index_type
from cvkit.retrieve.search import normalize
from cvkit.runtime import LoadedRun, capture

PRE_LOGITS = "pre_logits"  # meta.json's layer for the default: the features the classifier's last layer reads
FEATURES_GAP = "features_gap"  # the fallback: the last feature map, globally average-pooled


@dataclass
class IndexResult:
    out: Path
    meta: IndexMeta
    added: int
    already: int  # images of the split that were in the index before


def _pool(x: torch.Tensor) -> torch.Tensor:
    """A feature map's global average (N x C), any other output flattened."""
    return x.float().mean((2, 3)) if x.ndim == 4 else x.float().flatten(1)


def _default_layer(loaded: LoadedRun) -> str:
    head = getattr(loaded.model, "forward_head", None)
    if head is None:
        return FEATURES_GAP
    x = loaded.pre(torch.zeros(1, *loaded.input_size, loaded.in_chans, dtype=torch.uint8, device=loaded.device))
    try:
        with torch.inference_mode():
            head(loaded.model.forward_features(x), pre_logits=True)
    except OptionError:
        return FEATURES_GAP
    return PRE_LOGITS


def embed(loaded: LoadedRun, images: np.ndarray, layer: str | None = None, batch_size: int = 256,
          description: str = "Embedding") -> tuple[torch.Tensor, str]:
    """L2-normalized embeddings (N x D float32, CPU) of uint8 images and the layer they come from:
    the penultimate features by default, else ``layer`` (global-average-pooled when it is a map)."""
    layer = layer or _default_layer(loaded)
    if layer == PRE_LOGITS:
        features = loaded.penultimate(images, batch_size, description)
        return (normalize(features) if len(features) else features), layer
    model, parts = loaded.model, []
    with progress_bar(description, len(images)) as bar, torch.inference_mode():
        for batch, _ in loaded.batches(images, batch_size):
            x = loaded.pre(batch)
            with autocast(loaded.device, loaded.precision):
                if layer == FEATURES_GAP:
                    f = model.forward_features(x)
                else:
                    with capture(model, [layer]) as seen:
                        model(x)
                    f = seen[layer]
                    if not isinstance(f, torch.Tensor):
                        raise OptionError(f"--layer {layer} gives a {type(f).__name__}, not a tensor; choose a "
                                          f"layer whose output is a feature map or a vector")
            parts.append(normalize(_pool(f)).cpu())
            bar.advance(len(batch))
    if not parts:
        return torch.zeros(0, 0), layer
    return torch.cat(parts), layer


def absolute(data: Path, path: str) -> str:
    """A manifest path as the absolute path items.csv keeps (items stay findable from anywhere)."""
    return os.path.abspath(path if os.path.isabs(path) else data / path)


@releasing  # the --out lock check_out takes is given up on return
def build_index(run: str | os.PathLike, data: str | os.PathLike, out: str | os.PathLike, split: str = "train",
                layer: str | None = None, half: bool = False, index_type: str = "flat", device: str = "auto",
                batch_size: int = 256, force: bool = False, shard: tuple[int, int] | None = None) -> IndexResult:
    """Embed every image of ``split`` into the index ``out``; an existing index (same run and layer)
    gets the images it does not hold yet appended. The folder is swapped in whole when complete.
    ``shard=(I, N)``: share I of the split only, into ``out/shard-I-of-N`` (flat; ``merge_index`` puts the
    shares together and builds an approximate index then)."""
    import pandas as pd

    from cvkit.data import load_split
    from cvkit.data.cache import label_names, take
    from cvkit.device import resolve_device
    from cvkit.runtime import load_run

    if split not in SPLITS:
        raise OptionError(f"--split {split} must be one of {', '.join(SPLITS)}")
    check_batch_size(batch_size)
    check_index_type(index_type)
    data, out = Path(data), Path(out)
    if shard is not None:
        if index_type != "flat":
            raise OptionError(f"--index-type {index_type} is built over the whole index: give it to 'cvkit retrieve "
                              f"merge {out}' once every share is indexed, not to --shard")
        out = out / f"shard-{shard[0]}-of-{shard[1]}"
    if not is_dataset(data):
        raise OptionError(f"DATA {data} is not a dataset directory; make one with 'cvkit prepare'")
    loaded = load_run(run, resolve_device(device))
    run_path = os.path.abspath(run)
    layer = layer or _default_layer(loaded)
    dtype = "float16" if half else "float32"
    old = IndexMeta.read(out) if is_index(out) and not force else None
    if old is not None:
        _check_same(old, out, run_path, layer, dtype)
    check_out(out, reads=[run, data], own=own_index, force=force or old is not None)

    part = load_split(data, split, loaded.input_size)
    if shard is not None:
        from cvkit.data.selection import take_shard

        part = take_shard(part, shard)
    if part.images.shape[3] != loaded.in_chans:
        raise ManifestError(f"{data} has {part.images.shape[3]} channel(s), {run} takes {loaded.in_chans}; "
                            f"prepare the dataset with --channels {loaded.in_chans}")
    paths = [absolute(data, p) for p in part.paths]
    old_items = read_items(out, old.count) if old is not None else pd.DataFrame(columns=["row", "path", "label", "split"])
    held = set(old_items["path"])
    new = np.array([i for i, p in enumerate(paths) if p not in held], dtype=np.int64)
    if old is not None and len(new) == 0:
        return IndexResult(out, old, 0, len(paths))
    vectors, layer = embed(loaded, take(part.images, new), layer, batch_size)
    vectors = vectors.numpy().astype(dtype)
    start = old.count if old is not None else 0
    names = label_names(part)
    items = pd.DataFrame({"row": np.arange(start, start + len(new)), "path": [paths[i] for i in new],
                          "label": [names[i] for i in new], "split": split})
    if old is not None:
        vectors = np.concatenate([open_embeddings(out, old), vectors])
        items = pd.concat([old_items, items], ignore_index=True)
    datasets = [*(old.data if old is not None else []), os.path.abspath(data)]
    meta = IndexMeta(run_path, layer, int(vectors.shape[1]), len(vectors), dtype,
                     list(dict.fromkeys(datasets)), index_type if old is None else old.index_type)
    with replacing(out) as stage:
        if old is not None:  # the outputs of query, eval, duplicates stay (they name the count they saw)
            for entry in out.iterdir():
                if entry.name not in (EMBEDDINGS, ITEMS_CSV, META_JSON, FAISS_INDEX) and entry.name in INDEX_FILES:
                    (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, stage / entry.name)
        write_embeddings(stage, vectors)
        write_items(stage, items)
        if meta.index_type != "flat":
            build_faiss(stage, vectors, meta.index_type)
        meta.write(stage)
    return IndexResult(out, meta, len(new), len(paths) - len(new))


def _check_same(old: IndexMeta, out: Path, run: str, layer: str, dtype: str) -> None:
    fix = f"choose another --out, or pass --force to replace {out}"
    if old.run != run:
        raise OptionError(f"{out} indexes the run {old.run}, not {run}; images are appended only with the same "
                          f"run; {fix}")
    if old.layer != layer:
        raise OptionError(f"{out} holds layer {old.layer}, not {layer}; images are appended only from the same "
                          f"layer; {fix}")
    if old.dtype != dtype:
        raise OptionError(f"{out} stores {old.dtype}; append with{'' if old.dtype == 'float16' else 'out'} --half, "
                          f"or {fix}")


def load_index(folder: str | os.PathLike) -> tuple[IndexMeta, np.ndarray, "pd.DataFrame"]:  # noqa: F821
    """An index's meta.json, memory-mapped embeddings and items, each checked against the others."""
    meta = IndexMeta.read(folder)
    return meta, open_embeddings(folder, meta), read_items(folder, meta.count)
