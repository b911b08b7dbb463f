"""What every part of a report shares: the options, the page writer, and the evaluation of a run on the
split, found where ``cvkit evaluate`` left it or computed through the same library call."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.markup import escape

from cvkit.errors import CvkitError
from cvkit.files.jsonio import read_json
from cvkit.files.report import PageWriter
from cvkit.files.run import ModelInfo
from cvkit.progress import info


def _same(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


@dataclass
class ReportContext:
    writer: PageWriter
    split: str = "test"
    data: Path | None = None  # --data; None: each run's own dataset
    device: str = "auto"
    batch_size: int = 512
    top: int = 8  # how many worst images to show
    neighbours: int = 0  # --neighbours K: nearest training images of each worst image
    computed: list[str] = field(default_factory=list)  # what the report computed, in words
    _evaluations: dict[str, Path] = field(default_factory=dict)

    def note(self, message: str) -> None:
        """Say (on stderr, and in the page's list) something the report computed because no command had."""
        self.computed.append(message)
        info(escape(message))

    def evaluation(self, run: str | os.PathLike, top: int | None = None) -> Path:
        """The folder of ``cvkit evaluate RUN --split SPLIT`` for this report: ``RUN/eval_SPLIT`` when
        :meth:`current_metrics` accepts it; else evaluate runs now, into the report's ``computed/`` folder."""
        run = Path(run)
        key = str(run.resolve())
        if key in self._evaluations:
            return self._evaluations[key]
        top = self.top if top is None else top
        existing = run / f"eval_{self.split}"
        if self.current_metrics(run) is not None:
            self._evaluations[key] = existing
            return existing
        from cvkit.evaluate.command import evaluate

        out = self.writer.computed / f"eval_{self.split}_{len(self._evaluations) + 1}"
        result = evaluate([run], self.data, self.split, out, top_n=max(top, 16), device=self.device,
                          batch_size=self.batch_size)
        self.note(f"evaluated {run} on the {self.split} split ({result.metrics.get('count', '?')} images): "
                  f"{existing} was missing or older than the run")
        self._evaluations[key] = result.out
        return result.out

    def current_metrics(self, run: str | os.PathLike) -> dict[str, Any] | None:
        """The metrics.json of ``RUN/eval_SPLIT`` when it scored this run (after its model.json was written)
        on this split and dataset; None when there is none, or it is stale, unreadable or of other data."""
        run = Path(run)
        path = run / f"eval_{self.split}" / "metrics.json"
        if not path.is_file() or path.stat().st_mtime < ModelInfo.written_at(run):
            return None
        try:
            metrics: dict[str, Any] = read_json(path, "rerun 'cvkit evaluate'")
        except CvkitError:  # an unreadable old report is recomputed, not fatal
            return None
        runs = metrics.get("runs") or []
        usable = (metrics.get("split") == self.split and len(runs) == 1 and _same(runs[0], run)
                  and (self.data is None or _same(metrics.get("data", ""), self.data)))
        return metrics if usable else None
