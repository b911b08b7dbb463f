"""``cvkit augment``: write DATA/augment.json (the policy train applies), preview it, materialize copies.

The transform options are built from :class:`cvkit.transforms.policy.AugmentPolicy`'s fields, so a
transform's name, default and help live in one place.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from cvkit.cli.common import emit, seed_or_global, state
from cvkit.cli.options import Json, Seed, with_parameters
from cvkit.errors import OptionError
from cvkit.progress import console
from cvkit.transforms.policy import PRESETS, AugmentPolicy, preset_help

P = inspect.Parameter
GEOMETRIC = ("hflip", "vflip", "rotate", "translate", "scale", "crop", "perspective", "elastic")
MIXING = ("mixup", "cutmix")
AUTOMATIC = ("auto", "auto_ops", "auto_magnitude")
MAX_PREVIEW = 64


def augment_command(dataset: Path, preset: Optional[str] = None, preview: int = 0, materialize: int = 0,
                    seed: Optional[int] = None, as_json: bool = False, **given: Any) -> None:
    """Write DATASET/augment.json, the augmentation policy 'cvkit train' applies to every training batch.

    The policy is --preset (if any) with the options given on top; with no option, print the current one. Train applies it on the device, each image with its own random draws.

    No program can tell whether a transform keeps a dataset's labels: a mirrored 2 is not a 2, and a 6 turned upside down is a 9. For digits and text use --hflip 0 and keep --rotate small, and look at --preview.

    Example: cvkit augment data/fmnist --preset standard --preview 8
    """
    from cvkit.files.dataset import read_classes
    from cvkit.files.lock import locked

    read_classes(dataset)  # a dataset directory, or a one-line error saying what it is not
    seed = seed_or_global(seed)
    with locked(dataset, "dataset"):  # one writer: not while prepare, normalize or another augment rewrite it
        _augment(dataset, preset, preview, materialize, seed, as_json, given)


def _augment(dataset: Path, preset: Optional[str], preview: int, materialize: int, seed: int, as_json: bool,
             given: dict[str, Any]) -> None:
    from cvkit.augment.materialize import check_for_task, check_materialize, materialize as make_copies
    from cvkit.augment.preview import preview as make_preview
    from cvkit.device import resolve_device
    from cvkit.files.dataset import AugmentFile
    from cvkit.transforms.policy import make_policy, read_augment, write_augment

    values = {k: v for k, v in given.items() if v is not None}
    if "scale" in values:
        values["scale"] = _parse_scale(values["scale"])
    if preview < 0 or preview > MAX_PREVIEW:
        raise OptionError(f"--preview {preview} must be a number of images from 1 to {MAX_PREVIEW} (0: none)")
    if preset is not None and preset != "none" and preset not in PRESETS:
        raise OptionError(f"--preset {preset} must be one of {', '.join(PRESETS)} or none")
    changes = bool(values) or preset is not None
    if changes:
        policy = make_policy(values, None if preset == "none" else preset)
    else:
        policy = read_augment(dataset)
        if policy is None and (preview or materialize):
            raise OptionError(f"{dataset} has no augment.json yet; give a policy, e.g. --preset standard")
    device = resolve_device(state.device)
    written: dict[str, Any] = {}
    if changes:  # a policy the dataset's task cannot train with is refused before it is written
        check_for_task(dataset, policy)
    if materialize:  # checked before anything is written: a bad option fails with nothing changed
        check_materialize(dataset, policy, materialize)
    if preview:  # drawn before anything is written: a bad dataset fails with nothing changed
        written["preview"] = str(make_preview(dataset, policy, preview, seed, device))
    if changes:
        write_augment(dataset, policy)
        written["augment"] = str(AugmentFile.locate(dataset))
    if materialize:
        written["materialized_rows"] = make_copies(dataset, policy, materialize, seed, device)
    if not state.quiet:
        _show(dataset, policy, written)
    if as_json:
        emit(json.dumps({"format": 1, "policy": policy.to_json() if policy else None, **written}))
    else:
        emit(written.get("augment") or written.get("preview") or str(AugmentFile.locate(dataset)))


def _parse_scale(text: str) -> list[float]:
    try:
        lo, hi = (float(p) for p in text.split(","))
    except ValueError:
        raise OptionError(f"--scale {text} must be MIN,MAX, for example --scale 0.9,1.1") from None
    return [lo, hi]


def _show(dataset: Path, policy: AugmentPolicy | None, written: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    if policy is None:
        console.print(f"{dataset} has no augment.json: train flips horizontally half the time and does nothing "
                      f"else (write a policy with --preset or the transform options)")
        return
    table = Table(title=f"{dataset / 'augment.json'}" + (" (written)" if "augment" in written else ""))
    table.add_column("transform")
    table.add_column("value", justify="right")
    table.add_column("kind")
    shown_values = dict(policy.active)
    if policy.auto == "randaugment":  # its ops and magnitude, even at their defaults
        shown_values.update(auto_ops=policy.auto_ops, auto_magnitude=policy.auto_magnitude)
    for name, value in shown_values.items():
        kind = "geometric" if name in GEOMETRIC else "mixing" if name in MIXING else \
            "automatic" if name in AUTOMATIC else "photometric"
        shown = ",".join(f"{v:g}" for v in value) if isinstance(value, list) else escape(str(value)) \
            if isinstance(value, str) else f"{value:g}"
        table.add_row(name, shown, kind)
    if not policy.active:
        table.add_row("(none)", "", "")
    console.print(table)
    if "preview" in written:
        console.print(f"preview: {written['preview']}")
    if "materialized_rows" in written:
        console.print(f"materialized: {written['materialized_rows']:,} augmented train rows in "
                      f"{dataset / 'augmented'} (train applies the policy on the fly too; "
                      f"'train --augment none' uses the copies alone)")


def _policy_parameters() -> list[inspect.Parameter]:
    params = []
    for f in fields(AugmentPolicy):
        kind = str if f.name == "scale" else {"str": str, "int": int}.get(str(f.type), float)
        opt = typer.Option(help=f.metadata["help"], metavar=f.metadata.get("metavar"),
                           rich_help_panel="Mixing" if f.name in MIXING else "Automatic" if f.name in AUTOMATIC
                           else "Geometric" if f.name in GEOMETRIC else "Photometric")
        params.append(P(f.name, P.KEYWORD_ONLY, default=None, annotation=Annotated[Optional[kind], opt]))
    return params


with_parameters(augment_command, [
    P("dataset", P.POSITIONAL_OR_KEYWORD, annotation=Annotated[Path, typer.Argument(
        help="A dataset directory written by 'cvkit prepare'.")]),
    P("preset", P.KEYWORD_ONLY, default=None, annotation=Annotated[Optional[str], typer.Option(
        help=f"A named policy, options on top. {preset_help()}. 'none': no augmentation at all.")]),
    P("preview", P.KEYWORD_ONLY, default=0, annotation=Annotated[int, typer.Option(
        help="Write DATASET/augment_preview.png: N train images, each beside 5 augmented versions.")]),
    P("materialize", P.KEYWORD_ONLY, default=0, annotation=Annotated[int, typer.Option(
        help="Also write K augmented copies of every train image to DATASET/augmented/ and the manifest "
             "(column augmented_from), for tools outside cvkit; val and test are never augmented.")]),
    P("seed", P.KEYWORD_ONLY, default=None, annotation=Seed),
    P("as_json", P.KEYWORD_ONLY, default=False, annotation=Json),
], _policy_parameters())


def register(app: typer.Typer) -> None:
    app.command("augment")(augment_command)
