"""Atomic writes: a file or a folder appears complete or not at all."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from cvkit.errors import DiskFull, ManifestError

# errno values that mean "no room": a full disk, a quota, or a file-size limit (ulimit -f).
NO_ROOM = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


def umask() -> int:
    """The process's umask (read by setting it, then putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def public_mode(path: str | os.PathLike, folder: bool = False) -> None:
    """Give a file or folder made by ``tempfile`` (0600 / 0700, private) the mode the user's umask asks
    for, as ``open`` and ``mkdir`` would: a run on a shared file system is readable by the group."""
    os.chmod(path, (0o777 if folder else 0o666) & ~umask())


def disk_full(path: str | os.PathLike, error: BaseException) -> DiskFull:
    return DiskFull(f"the disk is full (or a file-size limit was reached) while writing {path} ({error}); "
                    f"free some space and rerun")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        public_mode(tmp)
        os.replace(tmp, path)
    except OSError as e:
        if e.errno in NO_ROOM:
            raise disk_full(path, e) from None
        raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_csv(path: str | os.PathLike, frame: "pd.DataFrame", float_format: str | None = None) -> None:  # noqa: F821
    """Every CSV cvkit writes: no index, ``\\n`` line ends, atomically."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, lineterminator="\n", float_format=float_format)


def read_csv_checked(path: str | os.PathLike, columns: tuple[str, ...], fix: str,
                     dtype: dict | None = None) -> "pd.DataFrame":  # noqa: F821
    """A CSV cvkit wrote, with ``columns`` present; a one-line error ending in ``fix`` otherwise."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path} is missing; {fix}")
    try:
        frame = pd.read_csv(path, dtype=dtype)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as e:
        raise ManifestError(f"{path} cannot be parsed ({str(e).splitlines()[0][:120]}); {fix}") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ManifestError(f"{path} lacks the column(s) {', '.join(missing)}; {fix}")
    return frame


def write_npy(path: str | os.PathLike, array: "np.ndarray") -> None:  # noqa: F821
    import numpy as np

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)


def stage_dir(out: Path) -> Path:
    """A fresh hidden folder beside ``out`` to build its successor in."""
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".new", dir=out.parent))
    public_mode(stage, folder=True)
    return stage


def swap_dir(stage: Path, out: Path, commit: Callable[[], None] | None = None) -> None:
    """Put the complete folder ``stage`` at ``out``; an old ``out`` is removed only after the swap.

    ``commit`` runs once the new folder is in place (e.g. writing the file that points at it); if it
    fails, the old ``out`` is put back and the new folder removed, so both stay consistent.
    """
    trash = out.with_name(f".{out.name}.old-{os.getpid()}")
    had_old = out.exists() or out.is_symlink()
    if had_old:
        os.replace(out, trash)
    os.replace(stage, out)
    if commit is not None:
        try:
            commit()
        except BaseException:
            shutil.rmtree(out, ignore_errors=True)
            if had_old:
                os.replace(trash, out)
            raise
    if not had_old:
        return
    if trash.is_dir() and not trash.is_symlink():
        shutil.rmtree(trash, ignore_errors=True)
    else:
        trash.unlink()


def remove_leftovers(folder: Path) -> list[str]:
    """Delete what an atomic write killed mid-way (kill -9, power loss) left in ``folder``: the hidden
    ``.<name>.*.tmp`` files of :func:`atomic_path`, and beside ``folder`` the ``.<folder>.*.new``
    staging folders and ``.<folder>.old-*`` of :func:`swap_dir`. Only those names: nothing a user
    wrote matches them. Returns the names removed."""
    removed = []
    if folder.is_dir():
        for entry in folder.iterdir():
            if entry.name.startswith(".") and entry.name.endswith(".tmp") and entry.is_file():
                entry.unlink(missing_ok=True)
                removed.append(entry.name)
    parent = folder.parent
    if parent.is_dir():
        for entry in parent.glob(f".{folder.name}.*"):
            stale = entry.name.endswith(".new") or f".{folder.name}.old-" in entry.name
            if stale and entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry.name)
    return removed
