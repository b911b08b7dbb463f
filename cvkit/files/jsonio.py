"""Versioned JSON files: ``"format": 1`` first, checked keys and types, one-line errors."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from cvkit.errors import ManifestError
from cvkit.files.atomic import write_text

FORMAT = 1


def finite(value: Any) -> Any:
    """NaN and infinities as null: JSON has no spelling for them, and a reader must not choke."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", None) == 0:
        return finite(value.item())  # numpy / torch scalars
    return value


def write_json(path: str | os.PathLike, data: dict[str, Any]) -> None:
    """Write a versioned JSON file atomically (``format`` first, stable key order)."""
    write_text(path, json.dumps({"format": FORMAT, **data}, indent=2) + "\n")


def read_json(path: str | os.PathLike, fix: str) -> dict[str, Any]:
    """Read a cvkit JSON file, checking it parses and has a known ``format``; ``fix`` says how to remake it."""
    path = Path(path)
    if path.is_dir():
        raise ManifestError(f"{path} is a folder, not a JSON file; {fix}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"{path} is missing; {fix}") from None
    except NotADirectoryError:
        raise ManifestError(f"{path} cannot exist: {path.parent} is a file, not a folder; {fix}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ManifestError(f"{path} is not valid JSON ({e}); {fix}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else "?"
        raise ManifestError(f"{path} has format {found}, this cvkit reads format {FORMAT}; {fix}")
    return data


_TYPES = {"int": int, "float": (int, float), "str": str, "bool": bool, "list": list, "dict": dict}


def _split(text: str, sep: str) -> list[str]:
    """``text`` cut at each ``sep`` outside brackets: ``"dict[str, int] | None"`` at "|" -> two parts."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch == "[") - (ch == "]")
        if ch == sep and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    return [*parts, text[start:].strip()]


def type_ok(value: Any, annotation: str) -> bool:
    """A check of a JSON value against a dataclass field's annotation string, down to the items of
    lists and the values of objects (``list[float]`` holding a string is refused, not just a non-list)."""
    for option in _split(annotation, "|"):
        base, _, inner = option.partition("[")
        args = _split(inner[:-1], ",") if inner else []
        if option == "None" and value is None:
            return True
        if base == "Any":
            return True
        expected = _TYPES.get(base)
        if expected is None or not isinstance(value, expected):
            continue
        if base in ("int", "float") and isinstance(value, bool):  # JSON true is no number
            continue
        if base == "list" and args and not all(type_ok(v, args[0]) for v in value):
            continue
        if base == "dict" and len(args) == 2 and not all(type_ok(v, args[1]) for v in value.values()):
            continue
        return True
    return False


def from_json(cls: type, data: dict[str, Any], path: Path, fix: str, allow_unknown: bool = False) -> Any:
    """Build dataclass ``cls`` from a JSON object, refusing missing keys, unknown keys and wrong types."""
    data = {k: v for k, v in data.items() if k != "format"}
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown and not allow_unknown:
        raise ManifestError(f"{path} has unknown key(s) {', '.join(unknown)}; {fix}")
    kwargs = {}
    for name, f in known.items():
        if name not in data:
            if f.default is MISSING and f.default_factory is MISSING:  # type: ignore[misc]
                raise ManifestError(f"{path} lacks '{name}'; {fix}")
            continue
        if not type_ok(data[name], str(f.type)):
            raise ManifestError(f"{path}: '{name}' is {json.dumps(data[name])[:60]}, which is not {f.type}; {fix}")
        kwargs[name] = data[name]
    return cls(**kwargs)
