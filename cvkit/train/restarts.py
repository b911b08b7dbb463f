"""``train --restarts N``: random restarts, of which the run with the best val figure is kept.

Restart i trains from seed ``--seed + i`` (its initial weights, shuffles and augmentation draws) into a
hidden folder beside ``--out``; the best one by ``--monitor`` on val then takes ``--out``'s place whole,
with ``restarts.csv`` listing every restart, and the others are removed. A ``--budget`` is shared: each
restart gets an equal share of what is left when it starts.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cvkit.data.selection import Selection
from cvkit.errors import OptionError
from cvkit.files.atomic import swap_dir
from cvkit.files.config import Resolved, TrainConfig, parse_budget
from cvkit.files.lock import locked
from cvkit.files.outputs import check_out
from cvkit.files.owned import own_run
from cvkit.files.run import write_restarts
from cvkit.progress import info
from cvkit.train import setup
from cvkit.train.distributed import single_process_only


def fit_restarts(fit: Callable[..., Any], cfg: TrainConfig, train: Selection | None = None,
                 val: Selection | None = None, *, force: bool = False, callbacks: tuple[Callable, ...] = (),
                 started: float | None = None) -> Any:
    """``cfg.restarts`` runs of ``cfg`` from consecutive seeds, each trained by ``fit`` (train.fit's single
    run); the best on val is written to ``cfg.out`` and its TrainResult returned."""
    single_process_only("--restarts", "train the restarts as separate runs (--seed) and compare them")
    cfg.check()
    if train is None:
        train, val = setup.default_selections(Path(cfg.data))
    if val is None:
        raise OptionError("--restarts keeps the run with the best val figure, and there is no val split to pick "
                          "it on; prepare the dataset with --val, or drop --restarts")
    task = setup.build_task(cfg)
    started = started or time.perf_counter()
    total = parse_budget(cfg.budget) if cfg.budget else None
    reads = [cfg.data, *(p for p in (cfg.weights, cfg.teacher) if p)]
    with locked(cfg.out):
        out = check_out(cfg.out, reads=reads, own=own_run, force=force, lock=False)
        out.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.restarts-", suffix=".new", dir=out.parent))
        try:
            results: list[tuple[int, Any]] = []
            for i in range(cfg.restarts):
                one = copy.deepcopy(cfg)
                one.seed, one.restarts, one.out, one.resolved = cfg.seed + i, 1, str(stage / f"seed{cfg.seed + i}"), Resolved()
                if total is not None:  # an equal share of what is left
                    one.budget = f"{max(1.0, total - (time.perf_counter() - started)) / (cfg.restarts - i):.3f}s"
                info(f"restart {i + 1} of {cfg.restarts}: --seed {one.seed}")
                results.append((one.seed, fit(one, train, val, callbacks=callbacks)))
            best_seed, best = results[0]
            for seed, result in results[1:]:
                if result.best_metric is not None and task.better(result.monitor, result.best_metric, best.best_metric):
                    best_seed, best = seed, result
            rows = [{"seed": seed, "monitor": r.monitor, "best": r.best_metric, "best_epoch": r.best_epoch,
                     "epochs_run": r.epochs_run, "seconds": round(r.seconds, 2), "kept": seed == best_seed}
                    for seed, r in results]
            kept = stage / f"seed{best_seed}"
            record = TrainConfig.read(kept)
            record.restarts, record.out, record.budget = cfg.restarts, cfg.out, cfg.budget
            record.resolved.restarts = rows
            record.write(kept)
            write_restarts(kept, rows)
            swap_dir(kept, out)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    figures = ", ".join(f"--seed {s}: {_figure(r.best_metric)}" for s, r in results)
    info(f"--restarts {cfg.restarts}: kept --seed {best_seed} by {best.monitor} on val ({figures}); see restarts.csv")
    best.run = out
    best.seconds = time.perf_counter() - started
    return best


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
