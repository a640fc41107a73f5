"""Files only their owner may read: directories 0700, files 0600, private from the moment they exist.

State, the rendered cluster file, logs, the mail spool, database passwords and keys are
each created with their final mode (``mkdir(mode=)``, ``os.open`` with a mode,
``mkstemp``), never written first and narrowed after, so no other user can open one in
between. Child processes get :data:`CHILD_UMASK`, so whatever they create (a node's
spool, Prefect's home, PostgreSQL's log) is private too. README, "Secrets and data at rest", says what lives where.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO

__all__ = ["CHILD_UMASK", "DIRECTORY_MODE", "FILE_MODE", "open_private_append", "private_dir", "write_private"]

DIRECTORY_MODE = 0o700
FILE_MODE = 0o600
#: The umask Ridgeline's child processes run under: nothing for group or others.
CHILD_UMASK = 0o077


def private_dir(path: Path) -> Path:
    """``path`` and each missing ancestor, created 0700; an existing ``path`` of ours is narrowed.

    For Ridgeline's own directories only (state, logs, spool, secrets, certificates):
    ancestors that exist are left alone (``~``, ``/tmp``), they are not ours to close.
    Narrowing takes every right from group and others except others' search bit, which
    the PostgreSQL launcher grants (as root) so that its server user can reach a data
    directory below: search without read lists nothing and opens only what its own mode
    allows. A directory narrowed late exposes nothing: its files were private already.
    """
    path = Path(path)
    missing = [directory for directory in [path, *path.parents] if not directory.exists()]
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIRECTORY_MODE)
        except FileExistsError:
            pass  # created by a racing process, which is fine: checked below
    info = path.stat()
    if not stat.S_ISDIR(info.st_mode):
        raise NotADirectoryError(f"{path} exists and is not a directory")
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid == os.geteuid() and mode & ~(DIRECTORY_MODE | stat.S_IXOTH):
        os.chmod(path, DIRECTORY_MODE | (mode & stat.S_IXOTH))
    return path


def write_private(path: Path, data: bytes | str, *, mode: int = FILE_MODE) -> Path:
    """Writes ``data`` aside (already at ``mode``), syncs it and renames it over ``path``.

    A reader sees the old content or the new, never a torn file, and never a moment in
    which the file is readable by others. ``mode`` wider than 0600 is for public material
    only (a certificate).
    """
    assert mode & ~0o644 == 0, f"mode {mode:o}: at most owner read-write, others read"
    content = data.encode("utf-8") if isinstance(data, str) else data
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # 0600 from the start
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def open_private_append(path: Path) -> BinaryIO:
    """``path`` opened for appending (a log), created 0600; an existing file of ours is narrowed to 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
    info = os.fstat(fd)
    if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) & ~FILE_MODE:
        os.fchmod(fd, FILE_MODE)
    return os.fdopen(fd, "ab")
