"""``cvkit evaluate``: metrics, confusion matrix and worst predictions of one run or an ensemble."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from cvkit.cli.common import emit, state
from cvkit.cli.options import (BatchSize, Calibration, Json, NoTta, Out, ShardOption, Threshold, Tta, TtaCommand,
                               parse_shard, tta_choice)
from cvkit.progress import console


def evaluate_command(
    runs: Annotated[list[Path], typer.Argument(help="One run directory, or several for an ensemble.")],
    data: Annotated[Optional[Path], typer.Option(help="Dataset directory (default: the one the run was trained on).")] = None,
    split: Annotated[str, typer.Option(help="train, val or test.")] = "test",
    out: Out = None,
    tta: Tta = None,
    no_tta: NoTta = False,
    top: Annotated[int, typer.Option(help="How many worst predictions to show in top_losses.")] = 16,
    batch_size: BatchSize = 512,
    shard: ShardOption = None,
    merge: Annotated[bool, typer.Option("--merge", help=(
        "Put the shard-I-of-N folders of --out together: the report of the whole split, as one run writes it "
        "(no forward pass)."))] = False,
    as_json: Json = False,
    threshold: Threshold = None,
    calibrate: Annotated[bool, typer.Option("--calibrate", help=(
        "First fit temperature scaling on the val split (classify: one temperature; multilabel: one per class; "
        "minimizing the NLL of the logits) and save it in RUN/calibration.json; evaluate and predict apply it "
        "from then on."))] = False,
    calibration: Calibration = True,
) -> None:
    """Score RUN (or the ensemble of several RUNs: mean of their probabilities) on a dataset split.

    Writes metrics.json, predictions.csv and the task's tables and pictures (classify: confusion_matrix.csv/.png
    and top_losses.csv/.png; multilabel: per_class.csv and precision_recall.png) into --out
    (default: RUN/eval_SPLIT, replaced whole when it is run again).

    A large split can be scored in shares on several machines: --shard I/N (I from 0) writes share I into
    OUT/shard-I-of-N; then 'cvkit evaluate RUN --split SPLIT --merge' writes the whole report into OUT.

    --calibrate fits a temperature that makes the probabilities as sure as they are right on val (accuracy and
    ranking stay); a calibrated run's report adds NLL and ECE before and after (metrics.json's calibration) and
    reliability.png.

    Example: cvkit evaluate runs/fmnist --split test
    """
    from cvkit.errors import OptionError
    from cvkit.evaluate.command import EvalResult, evaluate

    parsed = parse_shard(shard)
    if merge:
        from cvkit.evaluate.shards import merge_shards

        if parsed is not None or threshold is not None or calibrate:
            raise OptionError("--merge puts the shards together as they were scored; drop --shard, --threshold and "
                              "--calibrate")
        target = Path(out) if out else runs[0] / f"eval_{split}" if len(runs) == 1 else runs[0] / f"ensemble_eval_{split}"
        result = EvalResult(target, merge_shards(target, split, top), [])
        if not state.quiet:
            _summary(result)
        emit(json.dumps(result.metrics) if as_json else str(result.out))
        return
    result = evaluate([str(r) for r in runs], data, split, out, tta_choice(tta, no_tta), top, state.device, batch_size,
                      parsed, threshold, calibrate, calibration)
    if parsed is not None:
        if not state.quiet:
            console.print(f"share {parsed[0]} of {parsed[1]}: {result.metrics.get('count', 0):,} images in {result.out}; "
                          f"merge with --merge once every share is done", highlight=False)
        emit(json.dumps(result.metrics) if as_json else str(result.out))
        return
    if not state.quiet:
        _summary(result)
    emit(json.dumps(result.metrics) if as_json else str(result.out))


def _summary(result) -> None:
    from rich.table import Table

    from cvkit.tasks import TASKS

    m = result.metrics
    headline = TASKS[m.get("task", "classify")].headline  # the task's own figures, under its keys
    tta = f", tta {','.join(m.get('tta_views') or ['flip'])}" if m["tta"] else ""  # shards merged before: flip
    table = Table(title=f"{', '.join(m['runs'])} on {m['split']} ({m['count']:,} images{tta})")
    table.add_column("run")
    for _, title in headline:
        table.add_column(title, justify="right")

    def cells(figures: dict, bold: str = "") -> list[str]:
        return [f"{bold}{figures[key]:.4f}" if isinstance(figures.get(key), (int, float)) else "-" for key, _ in headline]

    for member in result.members if len(result.members) > 1 else []:
        table.add_row(Path(member["run"]).name, *cells(member))
    table.add_row("[bold]ensemble" if len(result.members) > 1 else Path(m["runs"][0]).name, *cells(m, "[bold]"))
    console.print(table)
    scaled = m.get("calibration") or {}
    if "nll_after" in scaled:
        from cvkit.files.calibration import describe

        fit = scaled["fit"]
        console.print(f"Calibrated ({scaled['method']} {describe(scaled['temperature'])}, fit on {fit['count']:,} "
                      f"{fit['split']} images): NLL {scaled['nll_before']:.4f} -> {scaled['nll_after']:.4f}, "
                      f"ECE {scaled['ece_before']:.4f} -> {scaled['ece_after']:.4f} on {m['split']}", highlight=False)
    pairs = [f"{p['true']} -> {p['predicted']} ({p['count']})" for p in m.get("most_confused", [])[:5]]
    if pairs:
        console.print("Most confused: " + ", ".join(pairs), highlight=False)


def register(app: typer.Typer) -> None:
    app.command("evaluate", cls=TtaCommand)(evaluate_command)
