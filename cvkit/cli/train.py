"""``cvkit train``: train a classifier on a prepared dataset into a run directory."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from cvkit.cli.common import emit, given, seed_or_global, state
from cvkit.cli.options import Force, Seed, config_parameters, parse_hidden, with_parameters
from cvkit.errors import OptionError
from cvkit.files.config import cli_fields, flag
from cvkit.progress import console

P = inspect.Parameter


def train_command(ctx: typer.Context, data: Optional[Path] = None, out: Optional[Path] = None,
                  resume: Optional[Path] = None, lr_find: bool = False, seed: Optional[int] = None,
                  force: bool = False, **options: Any) -> None:
    """Train --arch on DATA's train split, pick the best epoch on val, and write a run directory.

    The run holds model.safetensors (best epoch), model.json, last.ckpt, metrics.csv, config.json and curves.png.

    Example: cvkit train data/fmnist --arch smallcnn --out runs/fmnist
    """
    from cvkit.files.config import TrainConfig
    from cvkit.train import fit
    from cvkit.train import lr_find as run_lr_find
    from cvkit.train import resume as resume_run
    from cvkit.train.perceptron import check_options as check_rule

    if resume is not None:
        extra = [name for name in ("data", "out", "lr_find", "seed", "force", *(f.name for f in cli_fields()))
                 if given(ctx, name)]
        if extra:
            names = ", ".join("DATA" if n == "data" else flag(n) for n in extra)
            raise OptionError(f"--resume {resume} finishes the run with the options it was started with; drop "
                              f"{names} (to train longer or differently, start a new run with --weights "
                              f"{resume / 'model.safetensors'})")
        result = resume_run(resume)
    else:
        if data is None:
            raise OptionError("give DATA, a dataset directory (or --resume RUN)")
        options["hidden"] = parse_hidden(options.get("hidden"))
        cfg = TrainConfig(data=str(data), out=str(out or Path("runs") / options["arch"]), seed=seed_or_global(seed),
                          device=state.device, **options)
        check_rule(cfg, lambda name: given(ctx, name))  # the options it ignores, when typed at their default values
        if lr_find:
            from cvkit.train.distributed import single_process_only

            single_process_only("--lr-find", "run it without torchrun")
            found = run_lr_find(cfg)
            if not state.quiet:
                hint = f"suggested --lr {found.suggestion:.3g}" if found.suggestion else "no suggestion (too few steps)"
                console.print(f"lr range test: {hint}; plot in {found.png}")
            emit(str(found.png))
            return
        result = fit(cfg, force=force, started=state.started)  # a --budget counts from the command's start
    from cvkit.train.distributed import World

    if World.launched_rank() != 0:  # under torchrun, rank 0 reports for all
        return
    if not state.quiet:
        _summary(result)
    emit(str(result.run))



with_parameters(train_command, [
    P("ctx", P.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
    P("data", P.POSITIONAL_OR_KEYWORD, default=None, annotation=Annotated[Optional[Path], typer.Argument(
        metavar="DATA",
        help="A dataset directory written by 'cvkit prepare'.")]),
    P("out", P.KEYWORD_ONLY, default=None, annotation=Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="The run directory (default: runs/ARCH).")]),
    P("resume", P.KEYWORD_ONLY, default=None, annotation=Annotated[Optional[Path], typer.Option(
        help="Finish the interrupted run in this directory from its last.ckpt, with its own options.")]),
    P("lr_find", P.KEYWORD_ONLY, default=False, annotation=Annotated[bool, typer.Option(
        "--lr-find", help="Run the learning-rate range test (plot + suggestion) instead of training.",
        rich_help_panel="Optimization")]),
    P("seed", P.KEYWORD_ONLY, default=None, annotation=Seed),
    P("force", P.KEYWORD_ONLY, default=False, annotation=Force),
], config_parameters())


def _summary(result) -> None:
    from rich.table import Table

    table = Table(title=f"{result.run}")
    for col in ("best epoch", result.monitor, "epochs run", "seconds", "images/s (last)"):
        table.add_column(col, justify="right")
    last = result.history[-1] if result.history else {}
    table.add_row(str(result.best_epoch), f"{result.best_metric:.4f}" if result.best_metric is not None else "-",
                  str(result.epochs_run) + (" (early stop)" if result.stopped_early else ""), f"{result.seconds:.1f}",
                  f"{last.get('images_per_s', 0):,.0f}")
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
