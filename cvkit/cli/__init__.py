"""The ``cvkit`` command: a Typer app with one module per subcommand."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from cvkit import __version__
from cvkit.cli import (augment, cam, convolutionalize, crossval, evaluate, export, inspect, models, normalize,
                       predict, prepare, report, retrieve, train, visualize)
from cvkit.cli.common import handle_errors, state
from cvkit.progress import set_quiet

app = typer.Typer(
    name="cvkit",
    help="Image classification with convolutional networks, as composable commands over plain files.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

DEVICES = ("auto", "cpu", "cuda", "mps")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cvkit {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    device: Annotated[str, typer.Option(help="Where compute runs: auto (CUDA, then MPS, then CPU), cpu, cuda, mps.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed for every random choice (a command's own --seed wins).")] = 0,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or summaries on stderr.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """cvkit: prepare, normalize, train, evaluate and explain CNN image classifiers."""
    if device not in DEVICES and not device.startswith("cuda:"):
        raise typer.BadParameter(f"'{device}' is not one of {', '.join(DEVICES)} (or cuda:N)", param_hint="--device")
    state.device, state.seed, state.debug, state.quiet = device, seed, debug, quiet
    state.started = time.perf_counter()
    set_quiet(quiet)


for command in (prepare, normalize, augment, models, train, crossval, evaluate, predict, cam, visualize, retrieve,
                inspect, convolutionalize, export, report):
    command.register(app)
for info in app.registered_commands:  # one error handler for every command, none can forget it
    info.callback = handle_errors(info.callback)


def main() -> None:
    app(prog_name="cvkit")
