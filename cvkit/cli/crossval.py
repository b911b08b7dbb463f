"""``cvkit crossval``: cross-validate train options (and a grid of them) on the folds of train+val.

``cvkit crossval summarize OUT`` merges fold runs trained separately with ``--fold``. Both are one
command whose first argument is either DATA or the word ``summarize``: Typer then wraps it in the
app's one error handler like every other command.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from cvkit.cli.common import emit, given, seed_or_global, state
from cvkit.cli.options import Force, Json, Seed, config_parameters, parse_hidden, with_parameters
from cvkit.errors import OptionError
from cvkit.files.config import cli_fields, flag
from cvkit.files.crossval import DEFAULT_LOO_LIMIT, EXCLUDED_OPTIONS
from cvkit.progress import console

P = inspect.Parameter
SUMMARIZE = "summarize"
OWN = ("out", "folds", "holdout", "loo", "loo_limit", "grid", "fold", "seed", "force")  # not for summarize


def crossval_command(ctx: typer.Context, data: Optional[str] = None, target: Optional[Path] = None,
                     out: Optional[Path] = None, folds: Optional[int] = None, holdout: Optional[float] = None,
                     loo: bool = False, loo_limit: int = DEFAULT_LOO_LIMIT, grid: Optional[list[str]] = None,
                     refit: Optional[bool] = None, fold: Optional[int] = None, seed: Optional[int] = None,
                     force: bool = False, as_json: bool = False, **options: Any) -> None:
    """Cross-validate --arch (and every point of --grid) on the folds of DATA's train+val, rank the \
configurations by mean validation metric, and refit the best on all of train+val into OUT/final.

    Folds: the manifest's own (prepare --folds K), else K stratified folds (--folds, default 5), one \
stratified --holdout F, or --loo. The test split is never read. OUT holds crossval.json (the plan), folds.csv, \
folds/CONFIG/FOLD/ (run directories), results.csv, summary.csv, crossval.png, best.json and final/.

    A rerun of the same command skips finished folds. 'cvkit crossval summarize OUT' merges folds trained \
separately with --fold I, then refits (unless --no-refit).

    Example: cvkit crossval data/fmnist --arch smallcnn --folds 5 --grid weight_decay=0,1e-4 --out runs/cv
    """
    from cvkit.files.dataset import is_dataset

    if data == SUMMARIZE and (target is not None or not is_dataset(SUMMARIZE)):
        _summarize(ctx, target, refit, as_json)
        return
    if target is not None:
        raise OptionError(f"crossval takes one DATA folder, not also {target}; name the output folder with --out "
                          f"(or merge folds with 'cvkit crossval summarize OUT')")
    if data is None:
        raise OptionError("give DATA, a dataset directory written by 'cvkit prepare' (or 'summarize OUT')")
    from cvkit.crossval import crossval, parse_grid
    from cvkit.files.config import TrainConfig
    from cvkit.train.distributed import single_process_only

    single_process_only("crossval", "run its folds as separate jobs with --fold I (a SLURM array) and merge them "
                                    "with 'cvkit crossval summarize OUT'")

    parsed = parse_grid(grid or [])
    both = [name for name in parsed if given(ctx, name)]
    if both:
        raise OptionError(f"--grid {both[0]}=... and {flag(both[0])} both set {both[0]}; drop one of them")
    options["hidden"] = parse_hidden(options.get("hidden"))
    base = TrainConfig(data=str(data), seed=seed_or_global(seed), device=state.device, **options)
    out = out or Path("runs") / ("crossval" if "arch" in parsed else f"crossval-{base.arch}")
    result = crossval(base, out, folds=folds, holdout=holdout, loo=loo, loo_limit=loo_limit, grid=parsed,
                      refit=True if refit is None else refit, fold=fold, force=force)
    _report(result, as_json)


def _summarize(ctx: typer.Context, out: Optional[Path], refit: Optional[bool], as_json: bool) -> None:
    from cvkit.crossval import summarize

    if out is None:
        raise OptionError("give OUT, the --out folder of a 'cvkit crossval' run: cvkit crossval summarize OUT")
    extra = [name for name in (*OWN, *(f.name for f in cli_fields() if f.name not in EXCLUDED_OPTIONS))
             if given(ctx, name)]
    if extra:
        raise OptionError(f"'crossval summarize' uses the options in {out}/crossval.json; drop "
                          f"{', '.join(flag(n) for n in extra)}")
    _report(summarize(out, refit=refit, device=state.device), as_json)



def _report(result: Any, as_json: bool) -> None:
    if not state.quiet:
        _summary(result)
    emit(json.dumps(result.to_json(), indent=2) if as_json else str(result.out))


def _summary(result: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    if result.summary is None:
        console.print(f"{result.trained} fold run(s) trained, {result.skipped} finished before; "
                      f"{len(result.missing)} still to run. When every fold is done: "
                      f"cvkit crossval summarize {escape(str(result.out))}", highlight=False, soft_wrap=True)
        return
    monitor = result.plan.base.get("monitor", "val_acc")
    table = Table(title=f"{escape(str(result.out))}: {result.plan.folds}, {result.plan.k} fold(s)")
    for col in ("rank", "config", "folds", f"{monitor} mean", "std", "best epoch (mean)"):
        table.add_column(col, justify="left" if col == "config" else "right")
    for row in result.summary.head(20).to_dict("records"):
        table.add_row(str(row["rank"]), escape(str(row["config"])), str(row["folds"]),
                      f"{row[f'{monitor}_mean']:.4f}", f"{row[f'{monitor}_std']:.4f}",
                      f"{row['best_epoch_mean']:.1f}")
    console.print(table)
    if result.best is not None and result.final is not None:
        console.print(f"final: {escape(str(result.final))} ({result.best.config} refit on train+val for "
                      f"{result.best.refit_epochs} epoch(s)); score it once with 'cvkit evaluate "
                      f"{escape(str(result.final))} --split test'", highlight=False, soft_wrap=True)
    elif result.best is not None:
        console.print(f"best: {result.best.config} (no refit: --no-refit)", highlight=False, soft_wrap=True)


with_parameters(crossval_command, [
    P("ctx", P.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
    P("data", P.POSITIONAL_OR_KEYWORD, default=None, annotation=Annotated[Optional[str], typer.Argument(
        metavar="DATA", show_default=False,
        help="A dataset directory written by 'cvkit prepare', or the word 'summarize' followed by OUT.")]),
    P("target", P.POSITIONAL_OR_KEYWORD, default=None, annotation=Annotated[Optional[Path], typer.Argument(
        metavar="OUT", show_default=False, help="With 'summarize': the crossval folder to merge.")]),
    P("out", P.KEYWORD_ONLY, default=None, annotation=Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="The crossval folder (default: runs/crossval-ARCH).")]),
    P("folds", P.KEYWORD_ONLY, default=None, annotation=Annotated[Optional[int], typer.Option(
        help="K stratified folds of train+val (default: the manifest's folds when it has them, else 5).",
        rich_help_panel="Cross-validation")]),
    P("holdout", P.KEYWORD_ONLY, default=None, annotation=Annotated[Optional[float], typer.Option(
        help="Instead of folds: one stratified split of train+val, this fraction for validation.",
        rich_help_panel="Cross-validation")]),
    P("loo", P.KEYWORD_ONLY, default=False, annotation=Annotated[bool, typer.Option(
        "--loo", help="Leave-one-out: one fold per train+val image.", rich_help_panel="Cross-validation")]),
    P("loo_limit", P.KEYWORD_ONLY, default=DEFAULT_LOO_LIMIT, annotation=Annotated[int, typer.Option(
        help="--loo refuses datasets with more train+val images than this.", rich_help_panel="Cross-validation")]),
    P("grid", P.KEYWORD_ONLY, default=None, annotation=Annotated[Optional[list[str]], typer.Option(
        metavar="KEY=V1,V2", help="Values to try for any train option (e.g. weight_decay=0,1e-4; mlp widths "
                                  "as 512+256), or seed=0,1,2 for random restarts (the folds stay those of --seed); several --grid make "
                                  "a product.", rich_help_panel="Cross-validation")]),
    P("refit", P.KEYWORD_ONLY, default=None, annotation=Annotated[Optional[bool], typer.Option(
        "--refit/--no-refit", show_default=False,
        help="Retrain the best configuration on all of train+val into OUT/final, for the mean best epoch of its "
             "folds (default: refit; summarize: as the crossval was started).", rich_help_panel="Cross-validation")]),
    P("fold", P.KEYWORD_ONLY, default=None, annotation=Annotated[Optional[int], typer.Option(
        help="Train only fold I of every configuration (no summary, no refit); merge later with "
             "'cvkit crossval summarize OUT'.", rich_help_panel="Cross-validation")]),
    P("seed", P.KEYWORD_ONLY, default=None, annotation=Seed),
    P("force", P.KEYWORD_ONLY, default=False, annotation=Force),
    P("as_json", P.KEYWORD_ONLY, default=False, annotation=Json),
], config_parameters(exclude=EXCLUDED_OPTIONS))


def register(app: typer.Typer) -> None:
    app.command("crossval")(crossval_command)
