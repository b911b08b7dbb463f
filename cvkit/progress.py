"""Progress bars and human messages, on stderr, through one rich console.

The library reports progress through :func:`progress_bar`; the CLI's ``--quiet`` turns it off
with :func:`set_quiet`. Machine-readable results never go through here (they go to stdout).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

console = Console(stderr=True)
_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


class RateColumn(ProgressColumn):
    """Items per second, e.g. ``12,345 img/s``."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:>8,.0f} {self.unit}/s" if speed else f"{'?':>8} {self.unit}/s", style="cyan")


class _Bar:
    def __init__(self, progress: Progress | None, task: int | None) -> None:
        self._progress, self._task = progress, task
        self.done = 0

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def update(self, **fields: object) -> None:
        if self._progress is not None:
            self._progress.update(self._task, **fields)


@contextlib.contextmanager
def progress_bar(description: str, total: int | None, unit: str = "img", summary: bool = True) -> Iterator[_Bar]:
    """A bar with count, rate (``unit``/s) and time left; a no-op when quiet.

    When stderr is not a terminal (a CI log, a file), no bar is drawn: a live bar there prints
    wrapped frames. Instead one plain line is printed when the stage ends (``summary=False`` for
    stages whose caller prints its own line, such as training epochs).
    """
    if _quiet:
        yield _Bar(None, None)
        return
    if not console.is_terminal:
        bar = _Bar(None, None)
        start = time.perf_counter()
        yield bar
        if summary:
            seconds = time.perf_counter() - start
            rate = f", {bar.done / seconds:,.0f} {unit}/s" if seconds > 0 and bar.done else ""
            console.print(f"{description}: {bar.done:,} {unit} in {seconds:.1f} s{rate}", highlight=False)
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(unit),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(description, total=total)
        yield _Bar(progress, task)


def info(message: str) -> None:
    """A human message on stderr, unless quiet."""
    if not _quiet:
        console.print(message)
