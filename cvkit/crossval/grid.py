"""``--grid KEY=V1,V2``: train options to search, each value read as its TrainConfig field's type.

Several grids make a product; each point of it is one configuration with a readable folder name
(``lr=0.001,dropout=0.5``), or ``c0``, ``c1``, ... when a name would not be safe as a folder.
"""

from __future__ import annotations

import difflib
import itertools
import math
import re
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from cvkit.errors import OptionError
from cvkit.files.config import TrainConfig, cli_fields, flag, parse_epochs
from cvkit.files.crossval import EXCLUDED_OPTIONS

# Options the grid cannot vary, and why.
NOT_IN_GRID = {"monitor": "the configurations are ranked on one metric; set --monitor instead",
               "budget": "crossval trains a planned number of epochs; set --epochs instead"}
LIST_JOIN = "+"  # --grid hidden=512+256,128: layer widths within one value
SAFE_NAME = re.compile(r"[A-Za-z0-9._=,+-]+")
MAX_NAME = 100  # characters of a configuration's folder name


@dataclass
class Config:
    """One point of the grid: its folder name and the options it sets."""

    name: str
    options: dict[str, Any]


def grid_fields() -> dict[str, Any]:
    """The train options ``--grid`` may vary, and ``seed``: a grid over seeds is random restarts, ranked on the
    folds' val metric like any other option (the folds themselves stay cut by crossval's ``--seed``)."""
    found = {f.name: f for f in cli_fields() if f.name not in EXCLUDED_OPTIONS}
    return {**found, "seed": next(f for f in fields(TrainConfig) if f.name == "seed")}


def parse_grid(texts: Sequence[str]) -> dict[str, list[Any]]:
    """``["lr=1e-3,1e-2", "dropout=0,0.5"]`` -> ``{"lr": [0.001, 0.01], "dropout": [0.0, 0.5]}``."""
    grid: dict[str, list[Any]] = {}
    for text in texts:
        key, sep, values = text.partition("=")
        name = key.strip().lstrip("-").replace("-", "_")
        if not sep or not name or not values.strip():
            raise OptionError(f"--grid {text} must be KEY=V1,V2,... (a train option and its values), for example "
                              f"--grid weight_decay=0,1e-4")
        if name in grid:
            raise OptionError(f"--grid {key} is given twice; put all its values in one --grid {key}=V1,V2")
        grid[name] = [parse_value(name, v.strip(), text) for v in values.split(",")]
    return check_grid(grid)


def check_grid(grid: dict[str, Sequence[Any]]) -> dict[str, list[Any]]:
    """Known keys, at least one value each, no value twice (library callers pass typed values)."""
    known = grid_fields()
    out: dict[str, list[Any]] = {}
    for name, values in grid.items():
        if name in NOT_IN_GRID:
            raise OptionError(f"--grid {name}: {NOT_IN_GRID[name]}")
        if name not in known:
            close = difflib.get_close_matches(name, list(known), n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise OptionError(f"--grid {name}: '{name}' is not a train option; {hint}see 'cvkit crossval --help' for "
                              f"the options --grid takes")
        values = list(values)
        if not values:
            raise OptionError(f"--grid {name} has no values; give them as --grid {name}=V1,V2")
        labels = [value_label(v) for v in values]
        twice = sorted({lab for lab in labels if labels.count(lab) > 1})
        if twice:
            raise OptionError(f"--grid {name} lists {twice[0]} twice; give each value once")
        out[name] = values
    return out


def parse_value(name: str, text: str, whole: str) -> Any:
    """One ``--grid`` value as the type of TrainConfig's field ``name``."""
    f = grid_fields().get(name)
    if f is None:
        check_grid({name: [text]})  # names the unknown key
    hint = typing.get_type_hints(TrainConfig)[name]
    args = typing.get_args(hint) if typing.get_origin(hint) in (types.UnionType, typing.Union) else (hint,)
    optional = type(None) in args
    base = [a for a in args if a is not type(None)]

    def bad(kind: str, example: str) -> OptionError:
        return OptionError(f"--grid {whole}: '{text}' is not {kind} for {flag(name)}; for example "
                           f"--grid {name}={example}")

    if optional and text.lower() in ("none", "null"):
        return None
    if name == "epochs":
        try:
            return parse_epochs(text)
        except OptionError:
            raise bad("a number of epochs (1 or more) or auto", "5,10") from None
    if len(base) == 1 and typing.get_origin(base[0]) is list:
        try:
            widths = [int(w) for w in text.split(LIST_JOIN)]
        except ValueError:
            widths = []
        if not widths or min(widths) < 1:
            raise bad(f"whole numbers joined by '{LIST_JOIN}'", f"512{LIST_JOIN}256,128")
        return widths
    kind = base[0] if len(base) == 1 else None
    if kind is bool:
        lowered = text.lower()
        if lowered in ("true", "yes", "on", "1"):
            return True
        if lowered in ("false", "no", "off", "0"):
            return False
        raise bad("true or false", "true,false")
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise bad("a whole number", "1,2") from None
    if kind is float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise bad("a number", "0,0.5")
        return value
    if kind is str and text:
        return text
    if kind is str:
        raise bad("a value", "a,b")
    raise OptionError(f"--grid {whole}: {flag(name)} cannot be searched with --grid; set it as a plain option")


def value_label(value: Any) -> str:
    """How a grid value reads in a configuration's name."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return LIST_JOIN.join(str(v) for v in value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def expand(grid: dict[str, list[Any]]) -> list[Config]:
    """The product of the grid, first key slowest; one ``default`` configuration without a grid."""
    if not grid:
        return [Config("default", {})]
    keys = list(grid)
    points = [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]
    names = [",".join(f"{k}={value_label(v)}" for k, v in p.items()) for p in points]
    safe = all(SAFE_NAME.fullmatch(n) and len(n) <= MAX_NAME for n in names)
    if not safe or len({n.lower() for n in names}) < len(names):  # case-insensitive file systems
        names = [f"c{i}" for i in range(len(points))]
    return [Config(n, p) for n, p in zip(names, points)]
