"""``shard.json`` of ``evaluate --shard I/N``: which share of which split a shard folder holds."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cvkit.files.jsonio import from_json, read_json, write_json


@dataclass
class ShardInfo:
    index: int
    count: int
    start: int  # the shard's positions in the split, start..stop-1
    stop: int
    total: int  # images in the split
    split: str
    data: str
    runs: list[str]
    tta: bool
    classes: list[str]
    extra: dict[str, Any] = field(default_factory=dict)

    def write(self, folder: str | os.PathLike) -> None:
        write_json(Path(folder) / "shard.json", asdict(self))

    @classmethod
    def read(cls, folder: str | os.PathLike) -> "ShardInfo":
        path = Path(folder) / "shard.json"
        fix = "rerun that shard with 'cvkit evaluate --shard I/N'"
        return from_json(cls, read_json(path, fix), path, fix)
