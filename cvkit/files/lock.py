"""One writer per output folder: a lock held while a command writes its ``--out``.

The lock is ``flock`` on a hidden file beside the folder (``.NAME.lock``), so it is never part of the
output and survives the folder being swapped for its successor. The kernel releases it when the
process ends, however it ends: a run killed with ``kill -9`` blocks nobody, and its ``--resume``
takes the lock again. The file holds who is writing (pid, host, command, start time) for the
message a second writer gets.

:func:`check_out <cvkit.files.outputs.check_out>` takes the lock for every command; ``train
--resume`` takes it directly. A process that holds a folder's lock may take it again (crossval's
folds, a library caller training twice into one folder); the CLI releases every lock when its
command ends, and the library's long writers (``fit``) when they return.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from cvkit.errors import OutputLocked

F = TypeVar("F", bound=Callable[..., Any])
_held: dict[Path, int] = {}  # folder (resolved) -> the open lock file's descriptor


def lock_path(folder: Path) -> Path:
    folder = Path(os.path.abspath(folder))
    return folder.with_name(f".{folder.name}.lock")


def _key(folder: str | os.PathLike) -> Path:
    return Path(os.path.realpath(os.path.abspath(folder)))


def acquire(folder: str | os.PathLike, what: str = "--out") -> Path:
    """Lock ``folder`` for this process, or raise :class:`OutputLocked` naming the process that holds it."""
    folder = Path(folder)
    key = _key(folder)
    if key in _held:
        return folder
    if key.parent == key:  # "/" has no parent to keep a lock file in; check_out refuses it anyway
        return folder
    path = lock_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except PermissionError:  # a folder whose parent is read-only for this user: nothing to lock there
            return folder
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise OutputLocked(f"{what} {folder} is being written by another cvkit process ({holder}); wait for it "
                               f"to finish, stop it, or choose another {what}") from None
        except OSError:  # a file system without flock (some network mounts): no lock rather than no run
            os.close(fd)
            return folder
        # The holder before us may have removed the file between our open and our flock: then we hold a
        # lock on a file nobody else will open. Only a lock on the file at the path counts.
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "command": " ".join(["cvkit", *sys.argv[1:]])[:300],
                             "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
    _held[key] = fd
    return folder


def _holder(fd: int) -> str:
    try:
        about = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return (f"pid {about['pid']} on {about['host']}, '{about['command']}', started {about['started']}")
    except (OSError, ValueError, KeyError, TypeError):
        return "its lock file was being written"


def release(folder: str | os.PathLike) -> None:
    """Give up this process's lock on ``folder`` (nothing if it holds none)."""
    key = _key(folder)
    fd = _held.pop(key, None)
    if fd is None:
        return
    with contextlib.suppress(OSError):
        os.unlink(lock_path(key))  # while still locked: a waiter then sees a changed inode and retries
    os.close(fd)


def release_all() -> None:
    """Give up every lock this process holds (the CLI calls it when a command ends)."""
    for key in list(_held):
        release(key)


@contextlib.contextmanager
def locked(folder: str | os.PathLike, what: str = "--out", enabled: bool = True) -> Iterator[Path]:
    """Hold ``folder``'s lock for the block (released after, unless it was already held before);
    ``enabled`` False: no lock (the other processes of a torchrun job, whose rank 0 holds it)."""
    key = _key(folder)
    had = key in _held or not enabled
    if enabled:
        acquire(folder, what)
    try:
        yield Path(folder)
    finally:
        if not had:
            release(key)


def releasing(func: F) -> F:
    """Decorate a library entry point: the locks it takes (through check_out) are given up when it returns."""
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        before = set(_held)
        try:
            return func(*args, **kwargs)
        finally:
            for key in set(_held) - before:
                release(key)
    return wrapper  # type: ignore[return-value]
