"""Keep working when the terminal or the reader of our output goes away.

Closing a worker's terminal hangs the tty up: SIGHUP arrives (a stop signal, see
``signals``) and every later write to it fails with EIO; a closed pipe fails with
EPIPE. A worker must still let its jobs finish and record them, so a stream that is
gone is pointed at ``/dev/null`` (``dup2`` on its file descriptor, which also covers
the buffered text that Python flushes at exit) instead of raising from a log call.
"""

from __future__ import annotations

import contextlib
import errno
import os
from typing import Any

#: What a write returns once the terminal was hung up or the reader left.
GONE = frozenset({errno.EIO, errno.EPIPE, errno.ENXIO})
STD_FDS = (1, 2)


def mute(fd: int) -> None:
    """Send whatever is written to ``fd`` from now on to ``/dev/null``."""
    devnull = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def terminal_gone(fd: int) -> bool:
    """A hung-up terminal fails even an empty write (EIO); a live one, a file or a pipe don't."""
    try:
        os.write(fd, b"")
    except OSError as exc:
        return exc.errno in GONE
    return False


def mute_hung_up() -> list[int]:
    """Mute stdout and stderr if they are a terminal that was hung up; returns the fds muted."""
    muted = [fd for fd in STD_FDS if terminal_gone(fd)]
    for fd in muted:
        mute(fd)
    return muted


def output_lost(exc: BaseException | None, stream: Any = None) -> bool:
    """After a failed write: if the terminal or the reader is gone, mute it and return True.

    ``stream`` is the one the write went to (a closed pipe can't be detected by an
    empty write, so it is muted by its own descriptor).
    """
    if not isinstance(exc, OSError) or exc.errno not in GONE:
        return False
    mute_hung_up()
    fileno = getattr(stream, "fileno", None)
    if fileno is not None:
        with contextlib.suppress(OSError, ValueError):
            mute(fileno())
    return True
