"""``cvkit retrieve``: image search in a trained classifier's latent space.

A Typer sub-app with four commands (index, query, eval, duplicates); each is wrapped in the app's
one error handler here, as the app wraps its top-level commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from cvkit.cli.common import emit, handle_errors, state
from cvkit.cli.options import BatchSize, Inputs, Json, Out, ShardOption, Workers, parse_shard
from cvkit.progress import console

retrieve_app = typer.Typer(name="retrieve", no_args_is_help=True,
                           help="Image search with a trained run's features: index a split, query it, "
                                "evaluate it against raw pixels, find near duplicates.")

Index = Annotated[Path, typer.Argument(help="An index folder written by 'cvkit retrieve index'.")]


def index_command(
    run: Annotated[Path, typer.Argument(help="A run directory written by 'cvkit train'.")],
    data: Annotated[Path, typer.Argument(help="A dataset directory written by 'cvkit prepare'.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The index folder (an existing index of the same run "
                                                          "and layer gets the new images appended).")],
    split: Annotated[str, typer.Option(help="The split to index: train, val or test.")] = "train",
    layer: Annotated[Optional[str], typer.Option(
        help="A named layer to embed instead (global-average-pooled when it is a feature map); default: the "
             "penultimate features, what the classifier's last layer reads.")] = None,
    half: Annotated[bool, typer.Option("--half", help="Store the embeddings as float16 (half the size).")] = False,
    index_type: Annotated[str, typer.Option(
        help="flat: exact search (default); ivf or hnsw: an approximate faiss index as well "
             "(pip install 'cvkit[faiss]').")] = "flat",
    batch_size: BatchSize = 256,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing index instead of appending to it.")] = False,
    shard: ShardOption = None,
    as_json: Json = False,
) -> None:
    """Embed every image of a dataset split with RUN's model into an index folder: embeddings.npy \
(L2-normalized), items.csv (row, path, label, split) and meta.json.

    A large split can be indexed in shares on several machines: --shard I/N (I from 0) indexes share I into \
OUT/shard-I-of-N; 'cvkit retrieve merge OUT' then makes them one index.

    Example: cvkit retrieve index runs/fmnist data/fmnist --split train --out runs/fmnist/index
    """
    from cvkit.retrieve import build_index

    result = build_index(run, data, out, split, layer, half, index_type, state.device, batch_size, force,
                         parse_shard(shard))
    out = result.out
    meta = result.meta
    if not state.quiet:
        console.print(f"{result.added} image(s) of {split} added ({result.already} already indexed); {out} holds "
                      f"{meta.count} x {meta.dimension} {meta.dtype} from layer {meta.layer}, index {meta.index_type}",
                      highlight=False, soft_wrap=True)
    emit(json.dumps({"out": str(out), "added": result.added, "count": meta.count, "dimension": meta.dimension,
                     "layer": meta.layer}) if as_json else str(out))


def query_command(
    index: Index,
    inputs: Inputs,
    k: Annotated[int, typer.Option("-k", "--top-k", help="Neighbours per query image.")] = 5,
    out: Out = None,
    exact: Annotated[bool, typer.Option("--exact", help="Exact search even when the index has a faiss index.")] = False,
    batch_size: BatchSize = 256,
    workers: Workers = None,
) -> None:
    """The K nearest indexed images (cosine similarity) of each INPUT image: neighbors.csv (query, rank, \
path, label, score), a contact sheet neighbors.png and rejected.csv in --out (default: INDEX/query, \
replaced whole when run again). The table goes to stdout.

    Example: cvkit retrieve query runs/fmnist/index photos/shoe.png -k 8
    """
    from cvkit.retrieve import query

    result = query(index, inputs, k, out, exact, state.device, batch_size, workers)
    emit(result.table.to_csv(index=False, float_format="%.4f", lineterminator="\n"))
    if not state.quiet:
        console.print(f"{result.table['query'].nunique()} quer(ies), {'exact' if result.exact else 'approximate'} "
                      f"search; {result.out}/neighbors.csv, contact sheet {result.sheets[0]}", highlight=False,
                      soft_wrap=True)
        for path, why in result.rejected:
            console.print(f"[yellow]skipped[/] {path}: {why}", highlight=False)


def eval_command(
    index: Index,
    queries: Annotated[Path, typer.Option("--queries", help="The dataset whose split is the queries.")],
    split: Annotated[str, typer.Option(help="The query split.")] = "test",
    k: Annotated[str, typer.Option("-k", help="Cut-offs for precision@k and recall@k, separated by commas.")] = "5,10",
    out: Out = None,
    baseline: Annotated[bool, typer.Option("--baseline/--no-baseline",
                                           help="Also search raw pixels, the same way.")] = True,
    batch_size: BatchSize = 256,
    as_json: Json = False,
) -> None:
    """Precision@k, recall@k (relevant: same label) and mAP of a split's images against the index, beside \
a raw-pixel baseline searched the same way; a query that is itself indexed is left out of its own \
results. Writes retrieve_eval.json into --out (default: INDEX).

    Example: cvkit retrieve eval runs/fmnist/index --queries data/fmnist --split test -k 5,10
    """
    from cvkit.retrieve import evaluate_index, parse_ks

    result = evaluate_index(index, queries, split, parse_ks(k), out, baseline, state.device, batch_size)
    if not state.quiet:
        _eval_table(result.report)
    emit(json.dumps(result.report, indent=2) if as_json else str(result.out))


def _eval_table(report: dict) -> None:
    from rich.table import Table

    table = Table(title=f"{report['query_count']} {report['split']} queries against {report['count']} items "
                        f"(layer {report['layer']})")
    names = [name for name in report["learned"]]
    table.add_column("features")
    for name in names:
        table.add_column(name, justify="right")
    for label, key in (("learned", "learned"), ("raw pixels", "raw_pixels")):
        if key in report:
            table.add_row(label, *(f"{report[key][n]:.4f}" for n in names))
    console.print(table)
    if "approximate" in report:
        console.print(", ".join(f"{n} {v:.4f}" for n, v in report["approximate"].items() if n != "index_type")
                      + f" ({report['approximate']['index_type']} against exact search)", highlight=False)


def duplicates_command(
    index: Index,
    threshold: Annotated[float, typer.Option(help="Cosine similarity at or above which a pair is listed, in "
                                                  "(-1, 1].")] = 0.98,
    out: Out = None,
    max_pairs: Annotated[int, typer.Option(help="Write at most this many pairs (the most similar).")] = 1_000_000,
    as_json: Json = False,
) -> None:
    """Pairs of indexed images with similarity >= --threshold, most similar first, in duplicates.csv \
(default: in INDEX), with each one's split and a cross_split flag: a copy across splits is data leakage.

    Example: cvkit retrieve duplicates runs/fmnist/index --threshold 0.99
    """
    from cvkit.retrieve import duplicates

    result = duplicates(index, threshold, out, max_pairs)
    if not state.quiet:
        console.print(f"{result.pairs} pair(s) at or above {threshold}, {result.cross_split} across splits "
                      f"(of {result.written} written)", highlight=False)
    emit(json.dumps({"out": str(result.out), "pairs": result.pairs, "written": result.written,
                     "cross_split": result.cross_split}) if as_json else str(result.out))


def merge_command(
    out: Annotated[Path, typer.Argument(metavar="INDEX", help="The --out of 'retrieve index --shard I/N'.")],
    index_type: Annotated[str, typer.Option(help="flat (exact), or ivf / hnsw: an approximate faiss index built "
                                                 "over the merged embeddings.")] = "flat",
) -> None:
    """Put the shares INDEX/shard-I-of-N written by 'retrieve index --shard I/N' together into INDEX: the same
    index one unsharded 'retrieve index' writes (the shard folders stay).

    Example: cvkit retrieve merge runs/fmnist/index --index-type ivf
    """
    from cvkit.retrieve import merge_index

    meta = merge_index(out, index_type)
    if not state.quiet:
        console.print(f"{out} holds {meta.count} x {meta.dimension} {meta.dtype} from layer {meta.layer}, index "
                      f"{meta.index_type}", highlight=False, soft_wrap=True)
    emit(str(out))


def register(app: typer.Typer) -> None:
    for name, command in (("index", index_command), ("merge", merge_command), ("query", query_command), ("eval", eval_command),
                          ("duplicates", duplicates_command)):
        retrieve_app.command(name)(handle_errors(command))
    app.add_typer(retrieve_app, name="retrieve")
