"""``train --log``: where a run's figures go besides ``metrics.csv`` (which is always written).

A small registry, one class per experiment tracker: ``none`` (the default) and ``tensorboard``
(event files in ``RUN/tensorboard/``). A tracker takes scalars and RGB pictures at a step (the
epoch); a new one (e.g. ``wandb``) is one more ``@register_log`` class with the same three methods.
The trackers' own packages are optional and imported only when a run logs to them, so that
``cvkit --help`` stays light; :func:`check_log` refuses a missing one before anything is written.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from cvkit.errors import OptionError

if TYPE_CHECKING:
    import numpy as np

TENSORBOARD_DIR = "tensorboard"
TENSORBOARD_FILES = ("events.out.tfevents.*",)


class RunLog:
    """A tracker that records nothing (``--log none``): the interface the others implement."""

    name: ClassVar[str] = "none"
    package: ClassVar[str | None] = None  # the import it needs; the extra of the same name installs it
    folder: ClassVar[str | None] = None  # what it writes in the run directory

    def __init__(self, run: Path, first_step: int) -> None:
        """``first_step``: the first epoch this process trains (a resumed run's events from it on are stale)."""

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """One value per tag at ``step``."""

    def picture(self, tag: str, step: int, rgb: np.ndarray) -> None:
        """An H x W x 3 uint8 picture at ``step``."""

    def close(self) -> None:
        """Write out what is buffered."""


LOGS: dict[str, type[RunLog]] = {"none": RunLog}


def register_log(cls: type[RunLog]) -> type[RunLog]:
    LOGS[cls.name] = cls
    return cls


@register_log
class TensorBoardLog(RunLog):
    """TensorBoard event files in ``RUN/tensorboard/`` (``tensorboard --logdir RUN/tensorboard``).

    A resumed run appends a new event file to the same folder, opened with ``purge_step`` at its first
    epoch: TensorBoard drops the interrupted attempt's events from that epoch on, so each epoch is shown once.
    """

    name = "tensorboard"
    package = "tensorboard"
    folder = TENSORBOARD_DIR

    def __init__(self, run: Path, first_step: int) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise OptionError(_missing(self.name)) from None
        self.writer = SummaryWriter(str(Path(run) / TENSORBOARD_DIR), purge_step=first_step if first_step > 1 else None)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()  # an interrupted run keeps the epochs it saved

    def picture(self, tag: str, step: int, rgb: np.ndarray) -> None:
        self.writer.add_image(tag, rgb, step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def _missing(name: str) -> str:
    return f"--log {name} needs the {LOGS[name].package} package: pip install 'cvkit[{name}]'"


def check_log(name: str) -> None:
    """Refuse an unknown ``--log`` (with the close matches and the valid names) or one whose package is missing."""
    if name not in LOGS:
        import difflib

        close = difflib.get_close_matches(name, list(LOGS), n=1)
        hint = f"Did you mean {close[0]}? " if close else ""
        raise OptionError(f"--log {name} is not a tracker. {hint}Valid: {', '.join(LOGS)} "
                          f"(metrics.csv is always written)")
    package = LOGS[name].package
    if package is not None and importlib.util.find_spec(package) is None:
        raise OptionError(_missing(name))


def open_log(name: str, run: Path, first_step: int = 1) -> RunLog:
    check_log(name)
    return LOGS[name](run, first_step)


def remove_logs(run: Path) -> None:
    """Every tracker's folder in ``run`` (a new run that failed before its first epoch was saved)."""
    for cls in LOGS.values():
        if cls.folder is not None:
            shutil.rmtree(run / cls.folder, ignore_errors=True)


LOG_FOLDERS: dict[str, tuple[str, ...]] = {TENSORBOARD_DIR: TENSORBOARD_FILES}  # what --force may replace
