"""``cvkit inspect``: a network layer by layer (shapes, parameters, receptive fields, activation
memory, multiply-accumulates) and in total, for an architecture or a trained run."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Optional

import typer

from cvkit.cli.common import emit, state
from cvkit.errors import OptionError
from cvkit.progress import console

DEFAULT_CLASSES, DEFAULT_CHANS, DEFAULT_SIZE = 1000, 3, 224  # ImageNet's, for --arch


def inspect_command(
    run: Annotated[Optional[Path], typer.Argument(help="A run directory written by 'cvkit train'.")] = None,
    arch: Annotated[Optional[str], typer.Option(help="An architecture instead of a run (see 'cvkit models').")] = None,
    input_size: Annotated[Optional[str], typer.Option(
        help="N or HxW (default: 224 for --arch, the run's own size for a RUN).")] = None,
    num_classes: Annotated[Optional[int], typer.Option(help="Classes, for --arch (default 1000).")] = None,
    in_chans: Annotated[Optional[int], typer.Option(help="Input channels, for --arch (default 3).")] = None,
    option: Annotated[Optional[list[str]], typer.Option(
        "--option", help="KEY=VALUE: an option that shapes --arch, as train takes it (repeat it), for example "
                         "--option padding=valid --option depth=4 for the U-Net paper's net.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the table and totals as JSON on stdout.")] = False,
) -> None:
    """Measure a network layer by layer: output shape, parameters, receptive field and its stride,
    activation values and memory (float32); then the totals: parameters (convolutional / fully
    connected), activation memory per image for inference and for training, multiply-accumulates.

    The table goes to stderr; stdout gets a one-line summary, or everything as JSON with --json.

    Example: cvkit inspect --arch vgg16
    Example: cvkit inspect --arch unet --input-size 572 --option padding=valid --option depth=4
    """
    from cvkit.inspect import inspect_arch, inspect_run

    if run is None and arch is None:
        raise OptionError("give a RUN directory or --arch ARCH (see 'cvkit models')")
    if run is not None and arch is not None:
        raise OptionError(f"give a RUN directory or --arch ARCH, not both ({run} and --arch {arch})")
    size = parse_input_size(input_size)
    if run is not None:
        for flag, value in (("--num-classes", num_classes), ("--in-chans", in_chans), ("--option", option)):
            if value:
                raise OptionError(f"{flag} applies to --arch; a RUN has its own (see its model.json), leave it out")
        from cvkit.device import resolve_device

        result = inspect_run(run, resolve_device(state.device), size)
    else:
        for flag, value in (("--num-classes", num_classes), ("--in-chans", in_chans)):
            if value is not None and value < 1:
                raise OptionError(f"{flag} {value} must be at least 1")
        result = inspect_arch(arch, num_classes or DEFAULT_CLASSES, in_chans or DEFAULT_CHANS,
                              size or (DEFAULT_SIZE, DEFAULT_SIZE), **parse_options(option or []))
    if not state.quiet:
        show(result)
    emit(json.dumps(result.to_dict()) if as_json else summary(result))


def parse_input_size(text: str | None) -> tuple[int, int] | None:
    """``--input-size 224`` -> (224, 224); ``--input-size 224x320`` -> (224, 320) (height x width)."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?", text)
    if not match or int(match[1]) < 1 or (match[2] is not None and int(match[2]) < 1):
        raise OptionError(f"--input-size '{text}' is not a size; use N (square) or HxW, for example "
                          "--input-size 224 or --input-size 224x320")
    return int(match[1]), int(match[2] or match[1])


def parse_options(texts: list[str]) -> dict:
    """``--option padding=valid --option hidden=256,128`` -> the create_model keywords, typed as model.json
    types them (``hidden``: a list of ints, ``batchnorm``: true or false)."""
    from cvkit.cli.options import parse_hidden
    from cvkit.files.run import ARCH_OPTION_TYPES

    options = {}
    for text in texts:
        key, sep, value = (part.strip() for part in text.partition("="))
        if not sep or key not in ARCH_OPTION_TYPES or not value:
            raise OptionError(f"--option '{text}' is not KEY=VALUE with KEY one of {', '.join(ARCH_OPTION_TYPES)}")
        kind = ARCH_OPTION_TYPES[key].split(" |")[0]
        try:
            if kind == "bool":
                if value.lower() not in ("true", "false"):
                    raise ValueError
                options[key] = value.lower() == "true"
            elif kind in ("int", "float"):
                options[key] = int(value) if kind == "int" else float(value)
            elif kind == "list[int]":
                options[key] = parse_hidden(value)  # train's --hidden, checked the same way
            else:
                options[key] = value
        except ValueError:
            raise OptionError(f"--option '{text}': {key} takes {ARCH_OPTION_TYPES[key].replace(' | None', '')}"
                              ) from None
    return options


def summary(result) -> str:
    """The one line stdout gets without --json."""
    t = result.totals
    h, w = result.input_size
    return (f"{result.subject} {h}x{w}: {t['parameters']:,} parameters, {_count(t['macs'])} MACs, "
            f"{_count(t['activations'])} activations per image ({_bytes(t['activation_bytes'])})")


def _count(n: float, unit: str = "") -> str:
    """1234567 -> '1.23M': thousands, millions, billions."""
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.2f}{prefix}{unit}"
    return f"{n:.0f}{unit}"


def _bytes(n: float) -> str:
    for scale, prefix in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= scale:
            return f"{n / scale:.1f} {prefix}"
    return f"{n:.0f} B"


def show(result) -> None:
    """The layer table and the totals, on stderr."""
    from rich import box
    from rich.table import Table

    from cvkit.inspect.table import field_text

    h, w = result.input_size
    table = Table(title=f"{result.subject}: {result.in_chans}x{h}x{w} input, {result.num_classes} classes",
                  caption="rf: input pixels one unit of the output sees; jump: input pixels between neighbouring "
                          "units ('-': no feature map); values, memory: the layer's output per image (float32); "
                          "(fc): a convolution of the classifier head, counted as fully connected; "
                          "dim rows: not in the activation count",
                  caption_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("layer", "type", "output", "params", "rf", "jump", "values", "memory", "MACs"):
        text = column in ("layer", "type")
        table.add_column(column, justify="left" if text else "right", overflow="fold", no_wrap=not text)
    for row in result.rows:
        kind = " (fc)" if row.kind == "fc" and not row.type.startswith("Linear") else ""
        table.add_row(row.name, row.type + kind, "x".join(map(str, row.shape)),
                      f"{row.parameters:,}" if row.parameters else "", field_text(row, "receptive_field"),
                      field_text(row, "jump"), f"{row.values:,}", _bytes(row.bytes),
                      _count(row.macs) if row.macs else "", style=None if row.counted else "dim")
    if console.is_terminal:
        console.print(table)
    else:  # in a log or a file nothing needs wrapping: the table gets the width it needs
        from rich.console import Console

        needed = console.measure(table, options=console.options.update_width(1000)).maximum
        Console(stderr=True, width=max(console.width, needed)).print(table)
    t, share = result.totals, result.totals["parameter_shares"]
    parts, macs = t["parameters_by_part"], t["macs_by_part"]
    lines = [
        f"parameters: {t['parameters']:,} ({_bytes(t['parameter_bytes'])} in float32)",
        (f"  convolutional   {parts['convolutional']:>14,}  {share['convolutional']:6.1%}  convolutions outside the "
         "classifier head"),
        (f"  fully connected {parts['fully_connected']:>14,}  {share['fully_connected']:6.1%}  the classifier head "
         "(its convolutions included) and every other linear layer"),
        f"  other           {parts['other']:>14,}  {share['other']:6.1%}  norms, embeddings, scales",
        (f"multiply-accumulates per image: {_count(t['macs'])} (convolutions {_count(macs['convolutional'])}, "
         f"fully connected {_count(macs['fully_connected'])}; pools, norms, activations and "
         "additions not counted)"),
        (f"activations per image, forward: {t['activations']:,} values, {_bytes(t['activation_bytes'])}: the input "
         "and each layer's output once, element-wise activations (ReLU) computed in place (dim rows not counted)"),
        (f"  with activation outputs kept separately: {t['activations_with_relu']:,} values, "
         f"{_bytes(t['activation_with_relu_bytes'])}"),
        (f"training, per image: about {_bytes(t['training_bytes'])} = 2 x {t['activations_with_relu']:,} x 4 bytes "
         "(each output kept for the backward pass, and its gradient; weights and optimizer state not included)"),
    ]
    lines += result.notes
    if t["parameters_outside_rows"]:
        lines.append(f"{t['parameters_outside_rows']:,} parameters are held by containers or unused modules, "
                     "not by a row of the table")
    for line in lines:
        console.print(line, highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("inspect")(inspect_command)
