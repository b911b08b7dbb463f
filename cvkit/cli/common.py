"""What every command shares: global state, the error handler, option helpers.

This module and the command modules import neither torch nor numpy at import time, so
``cvkit --help`` answers fast; each command imports the library inside its body.
"""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, TypeVar

import typer

from cvkit.checks import check_seed, nonfinite, require_finite
from cvkit.errors import CvkitError, Interrupted
from cvkit.files.atomic import NO_ROOM, disk_full
from cvkit.files.lock import release_all
from cvkit.progress import console

F = TypeVar("F", bound=Callable[..., Any])


class ExitCode(IntEnum):
    OK = 0
    INTERNAL = 1  # a bug in cvkit: please report it
    USAGE = 2  # bad input or options: the message says what to fix
    INTERRUPTED = 130


@dataclass
class State:
    """The global options given before the command (``cvkit --seed 1 prepare ...``)."""

    device: str = "auto"
    seed: int = 0
    debug: bool = False
    quiet: bool = False
    started: float | None = None  # when the command started (train --budget counts from it)


state = State()


def fail(message: str) -> typer.Exit:
    """Print ``Error: message`` on stderr; raise the returned exception to exit with code 2."""
    from rich.markup import escape

    one_line = " ".join(message.split())  # an error is one line, whatever text a library put in it
    console.print(f"[bold red]Error:[/] {escape(one_line)}", highlight=False, soft_wrap=True)
    return typer.Exit(ExitCode.USAGE)


def handle_errors(func: F) -> F:
    """The single place that turns library errors into ``Error: ...`` and an exit code, no traceback.

    The app wraps every registered command in it (``cvkit.cli``), so no command can forget it.
    Warnings raised while the command runs are held back and shown only when it does not end in
    an error: a torch warning before the ``Error:`` line only hides it. It also holds the two checks
    every command shares: no float option is NaN or infinite (:mod:`cvkit.checks`), and the output
    folders the command locked for writing (:mod:`cvkit.files.lock`) are released when it ends.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        caught: list[warnings.WarningMessage] = []
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("default")
                _refuse_nonfinite(func, kwargs)
                result = func(*args, **kwargs)
        except Interrupted as e:
            console.print(f"Interrupted: {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(ExitCode.INTERRUPTED) from None
        except CvkitError as e:
            if state.debug:
                raise
            raise fail(str(e)) from None
        except KeyboardInterrupt:
            console.print("Interrupted.")
            raise typer.Exit(ExitCode.INTERRUPTED) from None
        except (typer.Exit, typer.Abort, SystemExit):
            _show(caught)
            raise
        except OSError as e:
            if state.debug:
                raise
            if e.errno in NO_ROOM:
                raise fail(str(disk_full(e.filename or "the output", e))) from None
            raise fail(f"{e.strerror or e}{f': {e.filename}' if e.filename else ''}") from None
        except Exception as e:
            if state.debug:
                raise
            console.print(f"[bold red]Error:[/] internal error, {type(e).__name__}: {e} "
                          f"(rerun with --debug for the traceback, and please report it)", highlight=False,
                          soft_wrap=True)
            raise typer.Exit(ExitCode.INTERNAL) from None
        finally:
            release_all()
        _show(caught)
        return result

    return wrapper  # type: ignore[return-value]


def _refuse_nonfinite(func: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    """Every float option of every command, checked here once: ``nan`` and ``inf`` pass every range
    check a command makes (``nan < 0`` is False), and only fail later, far from the option."""
    for name, value in kwargs.items():
        if nonfinite(value) is not None:
            require_finite(_flag(func, name), value)


def _flag(func: Callable[..., Any], name: str) -> str:
    """How the user spelled option ``name`` of ``func``: its first long flag, else --name."""
    import inspect
    import typing

    param = inspect.signature(func).parameters.get(name)
    for meta in typing.get_args(param.annotation)[1:] if param is not None else ():
        for decl in getattr(meta, "param_decls", None) or ():
            if decl.startswith("--"):
                return decl.split("/")[0]
    return "--" + name.replace("_", "-")


def _show(caught: list[warnings.WarningMessage]) -> None:
    if state.quiet:
        return
    for w in caught:
        console.print(f"[yellow]warning:[/] {w.message}", highlight=False, soft_wrap=True)


def seed_or_global(seed: int | None) -> int:
    """The command's --seed, else the global one; checked here for every command that draws at random."""
    return check_seed(state.seed, "cvkit --seed") if seed is None else check_seed(seed)


def emit(text: str) -> None:
    """The machine-readable result, on stdout."""
    sys.stdout.write(text.rstrip("\n") + "\n")
    sys.stdout.flush()


def given(ctx: "typer.Context", name: str) -> bool:
    """Whether option ``name`` was given on the command line (or by environment), not left at its default."""
    # By name: typer vendors its own click, whose ParameterSource is not click.core's.
    return getattr(ctx.get_parameter_source(name), "name", None) in ("COMMANDLINE", "ENVIRONMENT")
