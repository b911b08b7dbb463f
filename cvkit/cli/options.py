"""Options defined once: those several commands share, and ``train``'s, built from TrainConfig.

``train`` and ``crossval`` take their training options from :func:`config_parameters`, so
a default or help text changes in one place, :class:`cvkit.files.config.TrainConfig`.
"""

from __future__ import annotations

import inspect
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperCommand

from cvkit.files.config import TrainConfig, cli_fields
from cvkit.transforms.views import VIEW_HELP, VIEW_NAMES

Out = Annotated[Optional[Path], typer.Option("--out", "-o", help="The output directory.")]
Force = Annotated[bool, typer.Option("--force", help="Replace --out if it already holds this command's output "
                                                     "(only once the new output is complete).")]
Json = Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout instead of the output path.")]
BatchSize = Annotated[int, typer.Option(help="Images per forward pass.")]
Workers = Annotated[Optional[int], typer.Option(help="Decoding processes (default: one per core).")]
Seed = Annotated[Optional[int], typer.Option(help="Seed (default: the global --seed).")]
Inputs = Annotated[list[str], typer.Argument(help="Image files, folders, or CSV files with a 'path' column.")]
Tta = Annotated[Optional[str], typer.Option(
    "--tta", metavar="VIEWS", help="Test-time augmentation: average each image's probabilities with those of its "
    "views, comma-separated: " + "; ".join(f"{name}: {VIEW_HELP[name]}" for name in VIEW_NAMES)
    + " (e.g. --tta flip,shift). A bare --tta is flip. Default: as chosen on val when the run was trained "
    "(model.json's tta: flip or none).")]
NoTta = Annotated[bool, typer.Option("--no-tta", help="No test-time augmentation, whatever the run chose on val.")]
Calibration = Annotated[bool, typer.Option(
    "--calibration/--no-calibration", help="Scale the probabilities by the temperature(s) in RUN/calibration.json "
    "(written by 'cvkit evaluate RUN --calibrate') where the run has one; --no-calibration: the raw ones.")]
Threshold = Annotated[Optional[float], typer.Option(
    help="Multi-label: one decision threshold for every class, instead of the per-class ones chosen on val.")]


def _cli_type(f: Any) -> Any:
    """The type the command line reads for a TrainConfig field (Optional where None is allowed)."""
    hint = typing.get_type_hints(TrainConfig)[f.name]
    args = typing.get_args(hint)
    optional = type(None) in args
    base = f.metadata.get("cli_type") or next((a for a in args if a is not type(None)), hint)
    if typing.get_origin(base) in (list, types.UnionType, typing.Union):
        base = str
    return Optional[base] if optional or f.default is None else base


def config_parameters(exclude: tuple[str, ...] = ()) -> list[inspect.Parameter]:
    """One keyword parameter per TrainConfig option, with its default, help text and help panel."""
    params = []
    for f in cli_fields():
        if f.name in exclude:
            continue
        decls = [f.metadata["flags"]] if f.metadata.get("flags") else []
        opt = typer.Option(*decls, help=f.metadata["help"], rich_help_panel=f.metadata.get("panel"))
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default,
                                        annotation=Annotated[_cli_type(f), opt]))
    return params


def with_parameters(func: Any, before: list[inspect.Parameter], after: list[inspect.Parameter]) -> Any:
    """Give ``func(**kwargs)`` the signature Typer reads its options from."""
    func.__signature__ = inspect.Signature([*before, *after])
    return func


def parse_hidden(text: str | None) -> list[int] | None:
    """``--hidden 512,256`` -> [512, 256]."""
    if text is None:
        return None
    try:
        widths = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        widths = []
    if not widths or min(widths) < 1:
        from cvkit.errors import OptionError

        raise OptionError(f"--hidden {text} must be layer widths separated by commas, for example --hidden 512,256")
    return widths


ShardOption = Annotated[Optional[str], typer.Option(
    "--shard", metavar="I/N", help="Do share I of N of the work (I from 0, as a SLURM array numbers its tasks) into "
                                   "OUT/shard-I-of-N; merge the shares afterwards (see README).")]


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``--shard 1/4`` -> (1, 4)."""
    if text is None:
        return None
    from cvkit.errors import OptionError

    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise OptionError(f"--shard {text} must be I/N, for example --shard 0/4 (share I of N, I from 0)") from None
    if count < 1 or not 0 <= index < count:
        raise OptionError(f"--shard {text}: I must be from 0 to N-1 (from 0 to {max(count, 1) - 1} here), N at least 1")
    return index, count


def tta_choice(tta: str | None, no_tta: bool) -> str | bool | None:
    """``--tta VIEWS`` / ``--no-tta`` as the library takes them: the views, False, or None (the run's choice)."""
    if no_tta and tta is not None:
        from cvkit.errors import OptionError

        raise OptionError(f"--tta {tta} and --no-tta contradict each other; give one of them")
    return False if no_tta else tta


class TtaCommand(TyperCommand):
    """A command with ``--tta VIEWS``: a bare ``--tta`` (the flag before it took views), last or before
    another option, reads as ``--tta flip`` so that older scripts keep working."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, bare_tta(args))


def bare_tta(args: list[str]) -> list[str]:
    """``args`` with each ``--tta`` that has no value after it (the end, ``--``, or another option) made
    ``--tta flip``."""
    out = list(args)
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg == "--tta" and (i + 1 == len(args) or args[i + 1].startswith("-")):
            out[i] = "--tta=flip"
    return out
