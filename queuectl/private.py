"""Files and folders that queuectl creates are its owner's alone (0600 and 0700).

Jobs carry ``env`` (tokens, passwords) and their commands' output, so the database,
its ``-wal``/``-shm`` (SQLite gives them the database file's mode), the folders
queuectl had to make and the spool of running commands' output must not be
world-readable whatever the umask. Only what is created here is changed: a file or
folder that already existed keeps the mode its owner gave it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def make_dirs(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents as 0700; returns the ones it created.

    ``Path.mkdir(parents=True, mode=...)`` would give the parents the umask's mode.
    Another process creating the same folder at the same time is not an error.
    """
    missing: list[Path] = []
    current = folder
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    created: list[Path] = []
    for path in reversed(missing):
        try:
            os.mkdir(path, DIR_MODE)
        except FileExistsError:
            continue
        # mkdir's mode passes through the umask; set it exactly (only on our own folder).
        with contextlib.suppress(OSError):
            os.chmod(path, DIR_MODE)
        created.append(path)
    return created


def create_file(path: Path) -> bool:
    """Create an empty ``path`` as 0600 unless it exists; returns whether it created it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return True
