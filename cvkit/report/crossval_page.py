"""The page of a crossval folder: each grid setting's mean and spread over the folds (table and error bars),
the chosen setting and its refit, and every fold's result, all read from what ``cvkit crossval`` wrote."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from cvkit.errors import ManifestError
from cvkit.files.crossval import BestConfig, CrossvalPlan, plot_path, read_results, read_summary
from cvkit.files.run import ModelInfo, read_metrics
from cvkit.report.context import ReportContext
from cvkit.report.html import Markup, definitions, el, figure, join, number, table

Part = tuple[str, str, Markup]  # (anchor, title, body)

FOLD_WORDS = {"kfold": "stratified k-fold", "manifest": "the manifest's folds", "holdout": "one holdout split",
              "loo": "leave-one-out"}


def _task(folder: Path) -> str | None:
    """The task the fold runs were trained for (the refit's, else the first fold run's)."""
    for run in [folder / "final", *sorted(ModelInfo.runs_under(folder / "folds", 2))]:
        if ModelInfo.present(run):
            try:
                return ModelInfo.read(run).task
            except ManifestError:
                continue
    return None


def metric_name(task: str | None) -> str:
    """What the tables' ``val_acc`` stands for: the task's val metric (``val_acc``, ``val_map``, ``val_mae``...)."""
    from cvkit.tasks import TASKS

    kind = TASKS.get(task) if task else None
    return f"val_{kind.metric}" if kind is not None else "val_acc"


def _cell(value: Any) -> Any:
    """A CSV value as a table cell: numbers as numbers (sortable), NaN (a single fold has no spread) empty."""
    if hasattr(value, "item"):  # a numpy scalar from pandas
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return ""
    return value


def _header(column: str, metric: str) -> str:
    """A column of summary.csv or results.csv as the page titles it."""
    named = {"val_acc": metric, "best_epoch": "best epoch", "best_epoch_mean": "best epoch (mean)"}
    if column in named:
        return named[column]
    for suffix, words in (("_mean", " mean"), ("_std", " ± std")):
        if column.endswith(suffix):
            base = column[: -len(suffix)]
            return (metric if base == "val_acc" else base) + words
    return column


def frame_table(frame: "pd.DataFrame", metric: str, caption: str) -> Markup:  # noqa: F821
    return table([_header(c, metric) for c in frame.columns],
                 [[_cell(v) for v in row] for row in frame.itertuples(index=False)], caption=caption)


def _plot(folder: Path, plan: CrossvalPlan, summary: "pd.DataFrame", results: "pd.DataFrame",  # noqa: F821
          metric: str, ctx: ReportContext) -> Markup:
    """crossval.png as crossval drew it; drawn again (the same plot function) only when it is missing."""
    path = plot_path(folder)
    if not path.is_file():
        from cvkit.plots import plot_crossval

        monitor = plan.base.get("monitor", "val_acc")
        values = [results.loc[results["config"] == name, monitor].tolist() for name in summary["config"]]
        ctx.writer.computed.mkdir(parents=True, exist_ok=True)
        path = ctx.writer.computed / "crossval.png"
        plot_crossval(summary["config"].tolist(), summary[f"{monitor}_mean"].tolist(),
                      summary[f"{monitor}_std"].tolist(), values, monitor, path)
        ctx.note(f"drew the error-bar plot again: {plot_path(folder)} was missing")
    monitor = plan.base.get("monitor", "val_acc")
    said = metric if monitor == "val_acc" else monitor
    return figure(ctx.writer.image(path, "crossval"),
                  f"{said}: each setting's mean ± std over its folds (dots: the folds; the best in red, on top).",
                  alt="error bars of the grid settings over the folds")


def _final(folder: Path, best: BestConfig, metric: str, ctx: ReportContext) -> Markup | None:
    """The refit on train+val in a few lines (``cvkit report CROSSVAL/final`` gives its whole page)."""
    run = folder / (best.final or "final")
    if not ModelInfo.present(run):
        return None
    info = ModelInfo.read(run)
    pairs: list[tuple[str, Any]] = [("folder", str(run)), ("setting", best.config),
                                    ("epochs", f"{info.epoch} (the mean best epoch of the folds)")]
    if info.val_acc is not None and math.isfinite(info.val_acc):
        pairs.append((metric, number(info.val_acc)))
    try:
        last = read_metrics(run).iloc[-1]
        pairs.append(("last epoch's train loss", number(float(last["train_loss"]))))
    except (ManifestError, IndexError, KeyError, ValueError):
        pass
    figures = ctx.current_metrics(run)  # what 'cvkit evaluate' wrote, if it scored these weights
    if figures is not None:
        from cvkit.tasks import TASKS

        kind = TASKS.get(info.task)
        shown = [f"{title} {number(figures[key])}" for key, title in (kind.headline if kind else ())
                 if isinstance(figures.get(key), (int, float))]
        if shown:
            pairs.append((f"on the {ctx.split} split", ", ".join(shown)))
    pairs.append(("its whole page", f"cvkit report {run}"))
    return join(el("h3", "The refit on train+val"), definitions(pairs))


def _best(folder: Path) -> BestConfig | None:
    try:
        return BestConfig.read(folder)
    except ManifestError:  # summarize writes it with the tables; a page without it still shows them
        return None


def summary_section(folder: Path, plan: CrossvalPlan, summary: "pd.DataFrame", results: "pd.DataFrame",  # noqa: F821
                    metric: str, ctx: ReportContext) -> Markup:
    parts = [frame_table(summary, metric, "One row per grid setting, best first; click a header to sort."),
             _plot(folder, plan, summary, results, metric, ctx)]
    best = _best(folder)
    if best is not None:
        spread = f" ± {number(best.std)}" if best.std is not None else ""
        parts += [el("h3", "The best setting"), definitions([
            ("setting", best.config), ("options", json.dumps(best.options)),
            (f"{metric if best.monitor == 'val_acc' else best.monitor} over {best.folds} folds",
             f"{number(best.mean)}{spread}"),
            ("best epochs", ", ".join(map(str, best.best_epochs))), ("refit epochs", str(best.refit_epochs))])]
        parts.append(_final(folder, best, metric, ctx))
    return join(*parts)


def folds_section(plan: CrossvalPlan, results: "pd.DataFrame", metric: str) -> Markup:  # noqa: F821
    how = FOLD_WORDS.get(plan.folds, plan.folds)
    holdout = f" ({plan.holdout:.0%} held out)" if plan.holdout else ""
    about = definitions([("folds", f"{plan.k}: {how}{holdout}, seed {plan.seed}"), ("dataset", plan.data),
                         ("grid", ", ".join(f"{k} = {', '.join(map(str, v))}" for k, v in plan.grid.items()) or "none"),
                         ("architecture", str(plan.base.get("arch", "?")))])
    return join(about, frame_table(results, metric, "One row per setting and fold: the best epoch's val figures."))


def crossval_page(folder: Path, ctx: ReportContext) -> tuple[str, str, list[Part]]:
    """The title, subtitle and sections of a crossval folder's page."""
    folder = Path(folder)
    plan = CrossvalPlan.read(folder)
    summary, results = read_summary(folder), read_results(folder)
    metric = metric_name(_task(folder))
    subtitle = (f"crossval · {len(plan.configs)} grid setting{'s' if len(plan.configs) != 1 else ''} · {plan.k} "
                f"fold{'s' if plan.k != 1 else ''} · {plan.base.get('arch', '?')}")
    return (f"cvkit report: {folder.name}", subtitle,
            [("summary", "Summary", summary_section(folder, plan, summary, results, metric, ctx)),
             ("folds", "Folds", folds_section(plan, results, metric))])
