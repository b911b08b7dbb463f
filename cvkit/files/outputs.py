"""The ``--out`` rules every command follows, in one place.

A command writes only into its own ``--out``. ``--out`` is refused when it is, or contains, an
input the command reads (a source, a dataset, a run), or lies inside a source or a dataset; a run's
own output folders (``RUN/eval_test``, ``RUN/predict``) are fine. An ``--out`` that already holds
files is replaced only with ``--force``, only when it holds this command's kind of output (cvkit
never deletes files it did not write), and only once the new output is complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from fnmatch import fnmatch
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from cvkit.errors import OutputExists, UnsafeOutput
from cvkit.files.atomic import stage_dir, swap_dir
from cvkit.files.dataset import is_dataset


def _real(path: str | os.PathLike) -> Path:
    return Path(os.path.realpath(os.path.abspath(path)))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _dataset_above(path: Path) -> Path | None:
    for folder in (path, *path.parents):
        if is_dataset(folder):
            return folder
    return None


def check_out(out: str | os.PathLike, *, reads: Sequence[str | os.PathLike] = (),
              sources: Sequence[str | os.PathLike] = (), own: Callable[[Path], bool] | None = None,
              force: bool = False, what: str = "--out") -> Path:
    """Check ``out`` against the rules above; returns it as a Path.

    ``reads``: every dataset or run the command reads; ``sources``: folders or files imported (their
    inside is off limits too). ``own(folder)`` says whether an existing folder holds this command's
    kind of output (what ``--force`` may replace); None: any folder may be replaced.
    """
    out = Path(out)
    real = _real(out)
    for item in [*reads, *sources]:
        item_real = _real(item)
        if _inside(item_real, real):
            verb = "is" if item_real == real else "contains"
            raise UnsafeOutput(f"{what} {out} {verb} {item}, which this command reads; writing there would "
                               f"overwrite it: choose another {what}")
    for src in sources:
        src_real = _real(src)
        if src_real.is_dir() and _inside(real, src_real):
            raise UnsafeOutput(f"{what} {out} lies inside the source {src}; the next import would read it as "
                               f"input: choose a {what} outside {src}")
    dataset = _dataset_above(real)
    if dataset is not None and not (dataset == real and own is not None and own(real)):
        raise UnsafeOutput(f"{what} {out} lies inside the dataset {dataset}; only 'cvkit prepare' writes there: "
                           f"choose a {what} outside it")
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise UnsafeOutput(f"{what} {out} is a file, not a folder; remove it or choose another {what}")
        if any(out.iterdir()):
            if not force:
                raise OutputExists(f"{what} {out} already exists and is not empty; pass --force to replace it")
            if own is not None and not own(out):
                raise UnsafeOutput(f"{what} {out} holds files cvkit did not write there, and --force replaces only "
                                   f"cvkit's own output; empty it yourself or choose another {what}")
    return out


def holds_only(names: Sequence[str]) -> Callable[[Path], bool]:
    """An ``own`` test for :func:`check_out`: the folder holds nothing but entries named like ``names``
    (the files a command writes; shell patterns allowed), so ``--force`` never deletes a file cvkit
    did not write there. Hidden leftovers of an interrupted atomic write count as cvkit's."""
    def own(folder: Path) -> bool:
        return all(any(fnmatch(entry.name, n) for n in (*names, ".*.tmp", ".*.new")) for entry in folder.iterdir())
    return own


@contextlib.contextmanager
def replacing(out: Path) -> Iterator[Path]:
    """Build the new output in a folder beside ``out``; it takes ``out``'s place only when the block
    succeeds, so a failure leaves the old output (or nothing) behind, never half of the new one."""
    stage = stage_dir(out)
    try:
        yield stage
        swap_dir(stage, out)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
