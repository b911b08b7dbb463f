"""``cvkit models``: the architectures ``--arch`` accepts."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from cvkit.cli.common import emit, state
from cvkit.errors import OptionError
from cvkit.progress import console


def models_command(
    pattern: Annotated[Optional[str], typer.Argument(help="Filter: a glob such as 'resnet*' or a substring.")] = None,
    params: Annotated[bool, typer.Option("--params", help="Count parameters (builds each listed model).")] = False,
    num_classes: Annotated[int, typer.Option(help="Classes, for --params.")] = 10,
    input_size: Annotated[int, typer.Option(help="Input size in pixels, for --params.")] = 224,
    channels: Annotated[int, typer.Option(help="Input channels, for --params.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list on stdout.")] = False,
) -> None:
    """List the architectures: cvkit's own nets first, then timm's, then torchvision's.

    Example: cvkit models 'resnet*' --params --num-classes 10 --input-size 28 --channels 1
    """
    from cvkit.models import count_parameters, create_model, list_models

    for flag, value in (("--num-classes", num_classes), ("--input-size", input_size), ("--channels", channels)):
        if value < 1:
            raise OptionError(f"{flag} {value} must be at least 1")
    rows = []
    for name, source in list_models(pattern):
        row = {"name": name, "source": source}
        if params:
            model = create_model(name, num_classes, channels, (input_size, input_size), size_option="--input-size")
            row["parameters"] = count_parameters(model)
        rows.append(row)
    if as_json:
        emit(json.dumps(rows))
        return
    if not state.quiet:
        from rich.table import Table

        table = Table(title=f"{len(rows)} architecture(s)" + (f" matching '{pattern}'" if pattern else ""))
        table.add_column("arch")
        table.add_column("from")
        if params:
            table.add_column(f"parameters ({num_classes} classes)", justify="right")
        for row in rows:
            table.add_row(row["name"], row["source"], *([f"{row['parameters']:,}"] if params else []))
        console.print(table)
    emit("\n".join(row["name"] for row in rows))


def register(app: typer.Typer) -> None:
    app.command("models")(models_command)
