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
from collections import defaultdict
from fnmatch import fnmatch
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from cvkit.errors import OutputExists, UnsafeOutput
from cvkit.files.atomic import stage_dir, swap_dir
from cvkit.files.dataset import is_dataset
from cvkit.files.lock import acquire

# An ``own`` test: the first entry of a folder, at any depth, that is not this command's output (None: all
# of it is). What ``--force`` may replace, and what a refusal names.
Own = Callable[[Path], "Path | None"]
# Hidden names cvkit's own writes leave: an atomic write's temporary file, a folder swap's staging and
# old copy, and the lock file beside a folder being written (all of them after a kill -9).
HIDDEN_LEFTOVERS = (".*.tmp", ".*.new", ".*.old-*", ".*.lock")


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
              sources: Sequence[str | os.PathLike] = (), own: Own | None = None,
              force: bool = False, what: str = "--out", lock: bool = True, dataset: bool = False) -> Path:
    """Check ``out`` against the rules above; returns it as a Path.

    ``reads``: every dataset or run the command reads; ``sources``: folders or files imported (their
    inside is off limits too). ``own(folder)`` names the first entry of an existing folder, at any
    depth, that is not this command's kind of output (``--force`` replaces only a folder where it
    finds none); None: any folder may be replaced. ``lock``: hold ``out``'s lock (``files/lock.py``)
    from here on, so that a second command writing the same folder is refused while this one runs.
    ``dataset``: the command writes a whole dataset (``prepare``), so ``out`` may be one.
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
    above = _dataset_above(real)
    if above is not None and not (above == real and dataset):
        raise UnsafeOutput(f"{what} {out} lies inside the dataset {above}; only 'cvkit prepare' writes there: "
                           f"choose a {what} outside it")
    if lock:
        acquire(out, what)  # before looking at what is there: another writer may be changing it
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise UnsafeOutput(f"{what} {out} is a file, not a folder; remove it or choose another {what}")
        if any(out.iterdir()):
            if not force:
                raise OutputExists(f"{what} {out} already exists and is not empty; pass --force to replace it")
            foreign = own(out) if own is not None else None
            if foreign is not None:
                raise UnsafeOutput(f"{what} {out} holds files cvkit did not write there ({foreign}), and --force "
                                   f"replaces only cvkit's own output; move them away or choose another {what}")
    return out


def holds_only(names: Sequence[str], folders: Mapping[str, Own] | None = None) -> Own:
    """An ``own`` test for :func:`check_out`: the folder holds nothing but entries named like ``names``
    (what a command writes; shell patterns allowed) and folders named like a key of ``folders`` whose
    own test finds nothing foreign in them, so ``--force`` never deletes a file cvkit did not write,
    at any depth (``RUN/eval_val/notes.txt`` blocks ``train --force``). Hidden leftovers of an
    interrupted write count as cvkit's."""
    def own(folder: Path) -> Path | None:
        for entry in sorted(folder.iterdir()):
            inner = next((test for pattern, test in (folders or {}).items() if fnmatch(entry.name, pattern)), None)
            if inner is not None and entry.is_dir() and not entry.is_symlink():
                foreign = inner(entry)
                if foreign is not None:
                    return foreign
            elif not any(fnmatch(entry.name, n) for n in (*names, *HIDDEN_LEFTOVERS)):
                return entry
        return None
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


def unique_stems(paths: list[str]) -> list[str]:
    """File stems for the outputs; images of the same name in different folders get ``_2``, ``_3``..."""
    seen: dict[str, int] = defaultdict(int)
    stems = []
    for p in paths:
        stem = Path(p).stem
        seen[stem] += 1
        stems.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return stems
