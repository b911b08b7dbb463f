"""The page that compares several runs of one task and one set of classes: the runs side by side, their
figures on the split, their training curves in one picture, and the images on which they disagree."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

from cvkit.errors import CvkitError, ManifestError, OptionError
from cvkit.files.config import TrainConfig
from cvkit.files.jsonio import read_json
from cvkit.files.run import ModelInfo, read_metrics
from cvkit.report.context import ReportContext
from cvkit.report.differ import differ_section
from cvkit.report.html import Markup, el, figure, join, number, table

Part = tuple[str, str, Markup]  # (anchor, title, body)

# config.json's fields that always differ between two runs, or that the table shows in columns of its own
NOT_OPTIONS = {"out", "resolved"}
# What ``auto`` became (config.json's "resolved") worth a column when it differs: the rest is set-up detail.
RESOLVED_SHOWN = ("device", "precision", "memory_format", "lr", "epochs", "batch_size", "global_batch_size",
                  "world_size", "weight_decay", "label_smoothing")
# The per-class figures shown side by side, in order of preference (the first two a task's metrics.json has).
PER_CLASS_KEYS = ("ap", "iou", "recall", "f1", "dice", "accuracy", "mean_iou", "precision")
# metrics.json's lists of per-class (or per-target) rows, their title and the figures to show of each
PER_ROW = (("per_class", "Per class", PER_CLASS_KEYS), ("per_target", "Per target", ("mae", "r2", "rmse")))


def run_names(runs: list[Path]) -> list[str]:
    """Each run's folder name, with as many parent folders as make it unique (``a/run``, ``b/run``); the same
    folder given twice is numbered."""
    parts = [Path(r).absolute().parts for r in runs]
    depth = [1] * len(runs)
    while True:
        names = ["/".join(p[-d:]) for p, d in zip(parts, depth)]
        clashes = [i for i, n in enumerate(names) if depth[i] < len(parts[i]) - 1  # (the root "/" never helps)
                   and any(m == n and parts[j] != parts[i] for j, m in enumerate(names))]
        if not clashes:
            break
        for i in clashes:
            depth[i] += 1
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return unique


def _short(values: list[str], limit: int = 6) -> str:
    return ", ".join(values[:limit]) + (f", ... ({len(values)} in all)" if len(values) > limit else "")


def check_comparable(runs: list[Path], infos: list[ModelInfo]) -> None:
    """Runs of another task or other classes than the first cannot be scored on one split: refused, by name."""
    first = infos[0]
    for run, info in zip(runs[1:], infos[1:]):
        if info.task != first.task:
            raise OptionError(f"{run} predicts {info.task} and {runs[0]} predicts {first.task}: a comparison needs "
                              f"runs of one task; report them one by one")
        if info.classes != first.classes:
            raise OptionError(f"{run} was trained on other classes ({_short(info.classes)}) than {runs[0]} "
                              f"({_short(first.classes)}): a comparison needs the same classes in the same order")


def _value(value: Any) -> str:
    if value is None:
        return "default"
    if isinstance(value, (list, dict, bool)):
        return json.dumps(value)
    return number(value) if isinstance(value, float) else str(value)


def differing_options(configs: list[TrainConfig | None]) -> list[tuple[str, list[str]]]:
    """(option, each run's value) for the train options whose values differ between the runs (a run with no
    config.json shows ``?``), then what ``auto`` became where that differs."""
    if all(c is None for c in configs):
        return []
    plain = [None if c is None else {k: v for k, v in c.to_json().items() if k not in NOT_OPTIONS} for c in configs]
    resolved = [None if c is None else c.resolved.to_json() for c in configs]
    rows = []
    for key in plain[next(i for i, c in enumerate(configs) if c is not None)]:
        values = ["?" if p is None else _value(p.get(key)) for p in plain]
        if len(set(values)) > 1:
            rows.append((key, values))
    listed = dict(rows)
    for key in RESOLVED_SHOWN:
        values = ["?" if r is None else _value(r.get(key)) for r in resolved]
        if len(set(values)) > 1 and listed.get(key) != values:  # (--epochs 4 resolved to 4 says nothing new)
            rows.append((f"{key} (resolved)", values))
    return rows


def _size(info: ModelInfo) -> tuple[int | None, int | None]:
    """Parameters and multiply-accumulates per image, as ``cvkit inspect`` counts them (on the meta device:
    no weights are read)."""
    from cvkit.inspect import inspect_arch

    try:
        totals = inspect_arch(info.arch, info.num_outputs, info.in_chans, tuple(info.input_size),
                              **info.build_options()).totals
    except (CvkitError, RuntimeError, ValueError, TypeError):  # a net inspect cannot trace: the table leaves it out
        return None, None
    return int(totals["parameters"]), int(totals["macs"])


def _history(run: Path) -> Any:
    try:
        return read_metrics(run)
    except ManifestError:  # a run made by other means (a converted net) has model.json alone
        return None


def runs_section(runs: list[Path], names: list[str], infos: list[ModelInfo], histories: list[Any]) -> Markup:
    """The runs in rows (what they are, how long they trained), then the train options that differ between
    them, one column per run."""
    configs = [TrainConfig.read_if_present(run) for run in runs]
    header = ["run", "task", "architecture", "parameters", "MACs", "epochs", "best epoch", "training seconds",
              "device"]
    rows = []
    for run, name, info, history, config in zip(runs, names, infos, histories, configs):
        params, macs = _size(info)
        seconds = float(history["seconds"].sum()) if history is not None and "seconds" in history else None
        device = config.resolved.device if config is not None else None
        rows.append([name, info.task, info.arch, params if params is not None else "?",
                     macs if macs is not None else "?", len(history) if history is not None else "?", info.epoch,
                     round(seconds, 2) if seconds is not None else "?", device or "?"])
    options = differing_options(configs)
    parts = [table(header, rows)]
    if options:
        parts += [el("h3", "Options that differ"),
                  table(["option", *names], [[key, *values] for key, values in options])]
    else:
        parts.append(el("p", "They were trained with the same options.", class_="note"))
    renamed = [(name, run) for name, run in zip(names, runs) if name != str(run)]
    if renamed:
        parts.append(el("ul", *(el("li", el("b", name), ": ", str(run)) for name, run in renamed), class_="note"))
    return join(*parts)


def _headline(task: str) -> tuple[tuple[str, str], ...]:
    from cvkit.tasks import TASKS

    kind = TASKS.get(task)
    return kind.headline if kind is not None else ()


def metrics_section(names: list[str], task: str, scores: list[dict[str, Any]], split: str) -> Markup:
    """One row per run of the task's headline figures; the per-class figures with one column per run."""
    heads = [(key, title) for key, title in _headline(task) if any(_is_number(s.get(key)) for s in scores)]
    if not heads:  # a task without a headline list: every top-level number metrics.json holds
        keys = [k for k, v in scores[0].items() if _is_number(v) and k != "count"]
        heads = [(k, k) for k in keys]
    rows = [[name, s.get("count", "?"), *(_cell(s.get(key)) for key, _ in heads)] for name, s in zip(names, scores)]
    parts = [table(["run", "images", *(title for _, title in heads)], rows,
                   caption=f"On the {split} split; click a header to sort.")]
    for key, title, figures in PER_ROW:
        per_row = [s.get(key) for s in scores]
        if all(isinstance(p, list) and p and all(isinstance(row, dict) for row in p) for p in per_row):
            parts.append(per_class_table(names, per_row, figures, title))
    return join(*parts)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value


def per_class_table(names: list[str], per_class: list[list[dict[str, Any]]], figures: tuple[str, ...] = PER_CLASS_KEYS,
                    title: str = "Per class") -> Markup:
    """class (or target), its count, then the first two of ``figures`` the task has, one column per run."""
    first = per_class[0]
    keys = [k for k in figures if all(k in row for row in first)][:2]
    count = next((k for k in ("support", "count", "pixels") if k in first[0]), None)
    label = "class" if "class" in first[0] else "name"
    header = [label if label == "class" else "target", *([count] if count else []),
              *(f"{key}: {name}" for key in keys for name in names)]
    rows = []
    for c, row in enumerate(first):
        cells = [row.get(label, str(c)), *([row.get(count, "")] if count else [])]
        for key in keys:
            cells += [_cell(p[c].get(key)) if c < len(p) else "" for p in per_class]
        rows.append(cells)
    return join(el("h3", title), table(header, rows))


def curves_section(names: list[str], infos: list[ModelInfo], histories: list[Any], ctx: ReportContext) -> Markup:
    from cvkit.plots.compare import plot_runs_curves

    curves = {name: h for name, h in zip(names, histories) if h is not None and len(h)}
    missing = [name for name, h in zip(names, histories) if h is None or not len(h)]
    note = (el("p", f"No training history (no metrics.csv) for {', '.join(missing)}.", class_="note")
            if missing else None)
    if not curves:
        return join(note)
    best = {name: info.epoch for name, info in zip(names, infos) if name in curves}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "curves.png"
        plot_runs_curves(curves, path, best)
        src = ctx.writer.image(path, "curves")
    return join(figure(src, "Per epoch: the val metric (left) and the losses (right), one colour per run.",
                       alt="training curves of the runs"), note)


def _scores(folder: Path) -> dict[str, Any]:
    return read_json(folder / "metrics.json", "rerun 'cvkit evaluate' on the run")


def compare_page(runs: list[Path], ctx: ReportContext) -> tuple[str, str, list[Part]]:
    """The title, subtitle and sections of the page that compares ``runs`` (one task, the same classes)."""
    runs = [Path(r) for r in runs]
    infos = [ModelInfo.read(run) for run in runs]
    check_comparable(runs, infos)
    names = run_names(runs)
    histories = [_history(run) for run in runs]
    evaluations = [ctx.evaluation(run) for run in runs]
    scores = [_scores(folder) for folder in evaluations]
    task = infos[0].task
    title = "cvkit report: " + (" vs ".join(names) if len(names) <= 3 else f"{len(names)} runs compared")
    subtitle = f"{len(runs)} runs · {task} · {len(infos[0].classes)} classes · {ctx.split} split"
    parts: list[Part] = [
        ("runs", "The runs", runs_section(runs, names, infos, histories)),
        ("metrics", "Metrics", metrics_section(names, task, scores, ctx.split)),
        ("curves", "Training curves", curves_section(names, infos, histories, ctx)),
        ("differ", "Where they differ", differ_section(runs, names, infos, evaluations, scores, ctx)),
    ]
    return title, subtitle, parts
