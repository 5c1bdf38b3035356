"""Writing a directory so that it appears whole or not at all, and one writer per store.

Staging folders are named ``PATH.partial-HOST-PID``, and each has a marker file beside it,
``.PATH.partial-HOST-PID.mechintro``, made before the folder and removed after it. Only a folder
of exactly that name, with this host's name, whose marker exists and whose process no longer runs,
is ever removed — never a live writer's folder, never another machine's, never a folder of the
user's that merely looks like one (``run.zarr.partial-2024``, or even ``run.zarr.partial-HOST-1``:
no marker).

:func:`store_lock` is an OS file lock (``flock``) on ``PATH.lock`` beside the store, ``PATH``
resolved first (symlinks and ``..``), so two names of one store share one lock. The kernel drops
it when its process exits, however it exits (SIGKILL included), so a lock is never stale.
Its holder removes the file before releasing it; a process that locked a file that is no longer
at the path (removed meanwhile) starts again, so two processes never hold two different files.
A file left by a killed holder is simply locked and reused.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mechintro.errors import MechintroError


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def real_path(path: str | Path) -> Path:
    """``path`` with symlinks and ``..`` resolved (the part that exists; the rest as given), so a
    store reached through a link is locked and staged where it really is."""
    return Path(os.path.realpath(Path(path)))


def _marker(staging: Path) -> Path:
    return staging.with_name(f".{staging.name}.mechintro")


def _stale_staging(path: Path) -> list[Path]:
    """Staging folders of ``path`` left by this library's writers on this host that are gone."""
    pattern = re.compile(re.escape(path.name) + r"\.partial-" + re.escape(_host()) + r"-(\d+)")
    stale = []
    for candidate in path.parent.glob(path.name + ".partial-*"):
        m = pattern.fullmatch(candidate.name)
        if m is None or not _marker(candidate).is_file():
            continue  # not ours: another machine's, or a folder of the user's named like ours
        if not _alive(int(m[1])):
            stale.append(candidate)
    return stale


@contextmanager
def staged_dir(path: Path, *, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write into; on success rename it to ``path``.

    Staging folders left by earlier killed writers (this host, process gone) are removed first.
    A failure (or a kill) leaves ``path`` as it was. With ``replace``, an existing ``path`` is
    swapped out. ``path`` is resolved first (symlinks, ``..``): the folder is staged beside the
    real one.
    """
    path = real_path(path)
    for stale in _stale_staging(path):
        shutil.rmtree(stale, ignore_errors=True)
        _marker(stale).unlink(missing_ok=True)
    staging = path.with_name(path.name + f".partial-{_host()}-{os.getpid()}")
    marker = _marker(staging)
    shutil.rmtree(staging, ignore_errors=True)  # our own pid's leftover from an earlier failure
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"staging folder of pid {os.getpid()} on {socket.gethostname()}\n")
        yield staging
        if replace:
            shutil.rmtree(path, ignore_errors=True)
        os.replace(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        marker.unlink(missing_ok=True)


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


@contextmanager
def store_lock(path: str | Path) -> Iterator[None]:
    """Hold the exclusive write lock of the store ``path`` (which need not exist yet).

    A second process asking for the lock of the same store is refused at once with a
    :class:`MechintroError` naming the holder; the lock is released when the block ends or the
    process dies.
    """
    path = Path(path)
    lock = lock_path(real_path(path))  # one lock per store, whatever name reaches it
    try:
        lock.parent.mkdir(
            parents=True, exist_ok=True
        )  # the store's folder is made on demand, as zarr does
    except FileExistsError:
        pass  # a file where the folder should be: opening the lock file says so (not a directory)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise MechintroError(
                f"{path} is being written by another mechintro process ({holder}): "
                "wait for it to finish, then run the same command again (it resumes)"
            ) from None
        try:  # the file we locked must still be the one at the path (its last holder unlinks it)
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
        yield
    finally:
        # Unlink while still holding the lock, then release: a process that opened the old file
        # meanwhile finds it unlinked after locking it, and starts again on a fresh one.
        try:
            os.unlink(lock)
        except FileNotFoundError:
            pass
        os.close(fd)
