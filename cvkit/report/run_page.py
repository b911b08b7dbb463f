"""The page of one run: what it is, how it trained, how it scores on the split, where it fails.

Sections (anchors): ``run``, ``curves``, ``metrics``, ``worst``, ``calibration``, ``augmentation``. A classify
run's ``metrics`` and ``worst`` are drawn here (:mod:`cvkit.report.run_sections`, :mod:`cvkit.report.worst`);
the other tasks' come from :func:`cvkit.report.task_sections.task_parts`.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from cvkit.files.config import TrainConfig, cli_fields, flag
from cvkit.files.dataset import (LABELS_COLUMN, MULTILABEL, SEGMENT, SPLITS, DatasetInfo, label_sets,
                                 read_manifest)
from cvkit.report.context import ReportContext
from cvkit.report.html import Markup, definitions, el, join, number, table
from cvkit.report.run_data import RunData
from cvkit.tasks import TASKS
from cvkit.tasks.classify import Classify

Part = tuple[str, str, Markup]  # (anchor, title, body)


def count(n: float) -> str:
    """1234567 -> '1.23M': thousands, millions, billions (as 'cvkit inspect' prints them)."""
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.2f}{prefix}"
    return f"{n:.0f}"


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def text(value: Any) -> str:
    """An option's value as the command line would spell it."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, tuple)):
        return ",".join(text(v) for v in value)
    return number(value) if isinstance(value, float) else str(value)


def changed_options(config: TrainConfig) -> list[tuple[str, str, str]]:
    """(--option, value, default) of every train option the run set away from TrainConfig's defaults."""
    default = TrainConfig()
    rows = [(flag(f.name), text(getattr(config, f.name)), text(getattr(default, f.name))) for f in cli_fields()
            if getattr(config, f.name) != getattr(default, f.name)]
    if config.seed != default.seed:
        rows.append(("--seed", text(config.seed), text(default.seed)))
    return rows


def class_counts(dataset: Path, classes: list[str]) -> tuple[list[list[Any]], dict[str, int]]:
    """Rows (class, images in train, val, test, total) from the dataset's manifest, and images per split.
    A multi-label or segment image counts once for every class it holds."""
    frame = read_manifest(dataset)
    task = DatasetInfo.read(dataset).task
    names = label_sets(frame) if LABELS_COLUMN in frame.columns and task in (MULTILABEL, SEGMENT) \
        else [[label] for label in frame["label"]]
    counts = Counter((name, split) for labels, split in zip(names, frame["split"]) for name in labels if name)
    order = [*classes, *sorted({name for name, _ in counts} - set(classes))]
    rows = [[name, *(counts[name, split] for split in SPLITS), sum(counts[name, split] for split in SPLITS)]
            for name in order]
    return rows, {split: int((frame["split"] == split).sum()) for split in SPLITS}


def run_section(data: RunData) -> Markup:
    from cvkit.inspect import inspect_run

    model, config = data.model, data.config
    sizes = inspect_run(data.run, _cpu()).totals
    epochs = data.epochs
    seconds = float(epochs["seconds"].sum()) if epochs is not None and "seconds" in epochs.columns else None
    resolved = config.resolved if config is not None else None
    h, w = model.input_size
    score = f"val_{data.task.metric}"
    best = model.val_acc
    pairs: list[tuple[str, Any]] = [
        ("run", str(data.run)), ("task", model.task),
        ("architecture", join(model.arch, " ", el("span", ", ".join(f"{k}={text(v)}" for k, v in
                                                                    sorted(model.arch_options.items())),
                                                  class_="note"))),
        ("input", f"{h}x{w} pixels, {model.in_chans} channel{'s' if model.in_chans != 1 else ''}"),
        (data.task.outputs_are, _names(model.classes)),
        ("parameters", f"{number(int(sizes['parameters']))} ({count(sizes['parameters'])})"),
        ("multiply-accumulates", f"{number(int(sizes['macs']))} ({count(sizes['macs'])}) per image"),
        ("best epoch", f"{model.epoch}" + (f" of {len(epochs)}" if epochs is not None else "")
         + (f" ({score} {number(best)})" if best is not None else "")),
        ("training time", f"{duration(seconds)} (the sum of metrics.csv's seconds)" if seconds is not None
         else "not recorded"),
    ]
    if resolved is not None:
        where = ", ".join(text(v) for v in (resolved.device, resolved.precision, resolved.memory_format) if v)
        if resolved.world_size and resolved.world_size > 1:
            where += f", {resolved.world_size} processes"
        pairs.append(("device", where or "not recorded"))
    pairs.append(("dataset", str(data.dataset) if data.dataset is not None else "not found (pass --data)"))
    body = [definitions(pairs)]
    if config is not None:
        options = changed_options(config)
        body.append(el("h3", "Options that differ from the defaults"))
        body.append(table(["option", "value", "default"], options, caption=None) if options
                    else el("p", "None: the run was trained with every default.", class_="note"))
    else:
        body.append(el("p", "The run has no config.json, so its options are unknown.", class_="note"))
    if data.dataset is not None:
        rows, images = class_counts(data.dataset, model.classes)
        body.append(el("h3", "Images per class and split"))
        body.append(el("p", ", ".join(f"{split} {number(images[split])}" for split in SPLITS) + " images in all.",
                       class_="note"))
        if rows:
            body.append(table(["class", *SPLITS, "total"], rows))
    return join(*body)


def _names(names: list[str], shown: int = 20) -> str:
    """'3: a, b, c', or the first ``shown`` names and how many more."""
    if not names:
        return "none"
    more = f", ... ({len(names) - shown} more)" if len(names) > shown else ""
    return f"{len(names)}: {', '.join(names[:shown])}{more}"


def _cpu() -> Any:
    import torch

    return torch.device("cpu")


def run_page(run: Path, ctx: ReportContext) -> tuple[str, str, list[Part]]:
    """The title, subtitle and sections of a run's page."""
    from cvkit.report.run_sections import augmentation_section, calibration_section, curves_section, metrics_section

    data = RunData.read(run, ctx)
    parts: list[Part] = [("run", "The run", run_section(data)), ("curves", "Training curves", curves_section(data))]
    if TASKS.get(data.model.task) is Classify:  # the classify sections; the other tasks' come from task_parts
        from cvkit.report.worst import worst_section

        parts += [("metrics", f"Metrics on the {ctx.split} split", metrics_section(data)),
                  ("worst", "The worst images", worst_section(data))]
    else:
        from cvkit.report.task_sections import task_parts

        parts += task_parts(run, ctx, data.model, data.evaluation)
    parts += [("calibration", "Calibration", calibration_section(data)),
              ("augmentation", "Augmentation", augmentation_section(data))]
    return (f"cvkit report: {run.name}", f"{data.model.task} · {data.model.arch} · {ctx.split} split", parts)
