"""``cvkit crossval``: train every configuration of a grid on every fold of train+val, rank the configurations
by their mean validation metric, and refit the best one on all of train+val.

Each fold run is a call of :func:`cvkit.train.fit` on a data selection, so its normalization statistics
come from that fold's training images only; the test split is never read. A rerun of the same plan
into the same ``--out`` skips the finished fold runs; another plan is refused unless ``--force``,
which builds the new output beside the old one and swaps it in only when complete.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cvkit import __version__
from cvkit.crossval.folds import FoldPlan, from_file, plan_folds, rows_key, train_val
from cvkit.crossval.grid import check_grid, expand
from cvkit.crossval.runs import base_options, config_for, fold_dir, relocate, run_finished
from cvkit.crossval.summary import Collected, choose_best, collect, write_tables
from cvkit.data.selection import Selection
from cvkit.errors import Interrupted, ManifestError, OptionError, OutputExists
from cvkit.files.config import TrainConfig
from cvkit.files.crossval import DEFAULT_LOO_LIMIT, BestConfig, CrossvalPlan, read_folds, write_folds
from cvkit.files.lock import releasing
from cvkit.files.outputs import check_out, replacing
from cvkit.files.owned import own_crossval
from cvkit.progress import info, progress_bar


@dataclass
class CrossvalResult:
    out: Path
    plan: CrossvalPlan
    trained: int = 0  # fold runs trained by this call
    skipped: int = 0  # fold runs finished before
    missing: list[tuple[str, int]] = field(default_factory=list)  # (config, fold) not finished yet
    summary: Any = None  # summary.csv as a DataFrame, when every fold was looked at
    best: BestConfig | None = None
    final: Path | None = None  # the refit run directory

    def to_json(self) -> dict[str, Any]:
        rows = [] if self.summary is None else self.summary.to_dict("records")
        return {"out": str(self.out), "folds": self.plan.folds, "k": self.plan.k,
                "configs": len(self.plan.configs), "trained": self.trained, "skipped": self.skipped,
                "missing": [{"config": c, "fold": i} for c, i in self.missing],
                "best": asdict(self.best) if self.best else None, "final": str(self.final) if self.final else None,
                "summary": [{k: _plain(v) for k, v in row.items()} for row in rows]}


def _plain(value: Any) -> Any:
    """A JSON-safe cell: NaN becomes null, numpy scalars plain numbers."""
    if hasattr(value, "item"):
        value = value.item()
    return None if isinstance(value, float) and math.isnan(value) else value


@releasing  # the --out lock check_out takes is given up on return
def crossval(base: TrainConfig, out: str | os.PathLike, *, folds: int | None = None, holdout: float | None = None,
             loo: bool = False, loo_limit: int = DEFAULT_LOO_LIMIT, grid: dict[str, list[Any]] | None = None,
             refit: bool = True, fold: int | None = None, force: bool = False) -> CrossvalResult:
    """Cross-validate ``base`` (data, seed, device and every train option) and each point of ``grid`` on the
    folds of ``base.data``'s train+val; see ``cvkit crossval --help``. ``fold``: train that fold of every
    configuration only, to merge later with :func:`summarize`."""
    if not base.data:
        raise OptionError("give DATA, a dataset directory written by 'cvkit prepare'")
    dataset = Path(base.data).resolve()
    grid = check_grid(grid or {})
    configs = expand(grid)
    frame = train_val(dataset)
    folds_plan = plan_folds(dataset, frame, folds, holdout, loo, loo_limit, base.seed)
    plan = CrossvalPlan(str(dataset), folds_plan.kind, folds_plan.k, base.seed, grid,
                        [{"name": c.name, "options": c.options} for c in configs], base_options(base), rows_key(frame),
                        folds_plan.holdout, refit, __version__)
    for config in configs:  # refuse a bad value before any fold trains
        try:
            config_for(plan, config.options, Path(out), base.device)
        except OptionError as e:
            raise (OptionError(f"--grid configuration {config.name}: {e}") if config.options else e) from None
    if fold is not None and not 0 <= fold < plan.k:
        raise OptionError(f"--fold {fold} does not exist: {folds_plan.describe()} are numbered 0 to {plan.k - 1}")
    out = Path(out)
    with _workspace(out, plan, force) as (work, resumed):
        if resumed and (work / "folds.csv").is_file():
            folds_plan = from_file(read_folds(work), frame, plan.folds, plan.k, plan.holdout, work / "folds.csv")
        old = CrossvalPlan.read(work) if resumed else None
        if old is None or old.refit != refit:
            plan.write(work)
        if not (work / "folds.csv").is_file():
            write_folds(work, folds_plan.frame)
        indices = list(range(plan.k)) if fold is None else [fold]
        info(f"Cross-validating {len(configs)} configuration(s) on {folds_plan.describe()} of the {len(frame):,} "
             f"train+val images of {dataset} (the test split is not read): {len(configs) * len(indices)} fold run(s)"
             f"{f' of fold {fold}' if fold is not None else ''}, results in {out}")
        result = CrossvalResult(out, plan)
        result.trained, result.skipped = _train_folds(work, plan, folds_plan, indices, base.device,
                                                      staged=work != out)
        if fold is None:
            _finish(work, plan, folds_plan, refit, base.device, result, staged=work != out)
        else:
            result.missing = collect(work, plan, folds_plan, base.device).missing
    if work != out:
        relocate(out, work)
    if result.final is not None:
        result.final = out / "final"
    return result


@releasing  # the --out lock check_out takes is given up on return
def summarize(out: str | os.PathLike, refit: bool | None = None, device: str = "auto") -> CrossvalResult:
    """Merge the fold runs under ``out`` (e.g. trained by separate ``--fold`` runs) into ``results.csv``,
    ``summary.csv`` and ``crossval.png``; when every fold is finished, choose the best configuration and,
    with ``refit`` (default: the setting the crossval was started with), refit it into ``out/final``."""
    out = Path(out)
    plan = CrossvalPlan.read(out)
    check_out(out, reads=[plan.data], own=own_crossval, force=True)
    frame = train_val(plan.data)
    if rows_key(frame) != plan.rows_key:
        raise ManifestError(f"{plan.data} changed since {out} was started (its train+val images or folds differ); "
                            f"rerun 'cvkit crossval' with --force to start over")
    folds_plan = from_file(read_folds(out), frame, plan.folds, plan.k, plan.holdout, out / "folds.csv")
    result = CrossvalResult(out, plan)
    _finish(out, plan, folds_plan, plan.refit if refit is None else refit, device, result)
    return result


@contextlib.contextmanager
def _workspace(out: Path, plan: CrossvalPlan, force: bool) -> Iterator[tuple[Path, bool]]:
    """Where to write, and whether an earlier run of the same plan is continued there."""
    own = own_crossval
    if not force and CrossvalPlan.exists(out):
        check_out(out, reads=[plan.data], own=own, force=True)
        differ = CrossvalPlan.read(out).differences(plan)
        if differ:
            raise OutputExists(f"--out {out} holds a crossval with another plan (different {', '.join(differ)}); "
                               f"rerun with the same options to continue it, pass --force to replace it, or choose "
                               f"another --out")
        yield out, True
        return
    check_out(out, reads=[plan.data], own=own, force=force)
    if out.is_dir() and any(out.iterdir()):
        with replacing(out) as stage:  # the old output stays whole until the new one is complete
            yield stage, False
    else:
        out.mkdir(parents=True, exist_ok=True)
        yield out, False


def _train_folds(work: Path, plan: CrossvalPlan, folds: FoldPlan, indices: list[int], device: str,
                 staged: bool) -> tuple[int, int]:
    from cvkit.train import fit

    todo = [(config, i) for config in plan.configs for i in indices]
    trained = skipped = 0
    started = time.perf_counter()
    with progress_bar("Cross-validation", total=len(todo), unit="fold", summary=False) as bar:
        for n, (config, i) in enumerate(todo, 1):
            run = fold_dir(work, config["name"], i, plan.k)
            cfg = config_for(plan, config["options"], run, device)
            train, val = folds.selections(i)
            where = f"[{n}/{len(todo)}] {config['name']}, fold {i}"
            if run_finished(run, cfg, train, val):
                info(f"{where}: finished before, skipped")
                skipped += 1
                bar.advance()
                continue
            info(f"{where}: training on {train.describe()}, validating on {val.describe()}")
            try:
                result = fit(cfg, train=train, val=val, force=True)
            except Interrupted:
                kept = ("the old output is unchanged; rerun with --force to start again" if staged else
                        f"{trained + skipped} finished fold run(s) are kept: rerun the same command to go on")
                raise Interrupted(f"interrupted in {config['name']}, fold {i}; {kept}") from None
            value = f"{result.best_metric:.4f}" if result.best_metric is not None else "-"
            info(f"{where}: {result.monitor} {value} at epoch {result.best_epoch}")
            trained += 1
            bar.advance()
    info(f"Cross-validation: {len(todo)} fold run(s) in {time.perf_counter() - started:.1f} s ({trained} trained, "
         f"{skipped} finished before)")
    return trained, skipped


def _finish(work: Path, plan: CrossvalPlan, folds: FoldPlan, refit: bool, device: str,
            result: CrossvalResult, staged: bool = False) -> None:
    """Tables and plot from the fold runs; with every fold finished, the best configuration and its refit."""
    collected: Collected = collect(work, plan, folds, device)
    result.missing = collected.missing
    result.summary = write_tables(work, plan, collected)
    if collected.missing:
        name, i = collected.missing[0]
        info(f"[yellow]{len(collected.missing)} of {len(plan.configs) * plan.k} fold runs are not finished[/] "
             f"(first: {name}, fold {i}); run them (e.g. with --fold {i}), then 'cvkit crossval summarize {work}'")
        return
    best = choose_best(result.summary, collected.results, plan)
    final = _refit(work, plan, best, device, train_now=refit, staged=staged)
    best.final = "final" if final else None
    best.write(work)
    result.best, result.final = best, final


def _refit(work: Path, plan: CrossvalPlan, best: BestConfig, device: str, train_now: bool,
           staged: bool = False) -> Path | None:
    """``final/``: the best configuration trained on all of train+val for the mean best epoch of its folds
    (no validation split is left, so no early stopping); None without ``refit`` and no such run yet."""
    from cvkit.train import fit

    run = work / "final"
    cfg = config_for(plan, best.options, run, device, epochs=best.refit_epochs, patience=None)
    train = Selection.of_splits("train", "val")
    if run_finished(run, cfg, train, None):
        info(f"final: {best.config} was refit before, kept")
        return run
    if not train_now:
        return None
    info(f"Refit {best.config} on all of train+val for {best.refit_epochs} epoch(s) (the mean best epoch of its "
         f"folds: {', '.join(map(str, best.best_epochs))})")
    try:
        fit(cfg, train=train, val=None, force=True)
    except Interrupted:
        kept = ("the old output is unchanged; rerun with --force to start again" if staged else
                f"every fold run is kept: 'cvkit crossval summarize {work}' refits again")
        raise Interrupted(f"interrupted in the refit; {kept}") from None
    return run
