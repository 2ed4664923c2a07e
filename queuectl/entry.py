"""The ``queuectl`` executable's entry point: the CLI, imported the cheap way.

Importing the commands and the store allocates many objects that live as long as
the process; the collector running while they are built, and scanning them again
at later collections and at exit, costs a short command about a tenth of its time
(issue 15). So this entry imports the CLI with the collector paused and moves
what it built to the permanent generation (``gc.freeze``), as the CPython docs
advise for long-lived start-up objects. It is a module of its own, apart from
``queuectl.cli``, so that nothing heavy is imported before the pause; a program
that imports ``queuectl.cli`` itself keeps its collector as it was.

A command that succeeded ends without the interpreter's teardown (tearing down
every module and freeing every object it built, ~5 ms of a ~95 ms
``enqueue``): the exit handlers still run and both streams are flushed, and the
shortcut is skipped while another thread is alive or a stream cannot be flushed,
so nothing that the normal exit would write is lost.
"""

from __future__ import annotations

import gc
import os
import sys


def main() -> None:
    gc.disable()
    try:
        from queuectl.cli.main import main as run
    finally:
        gc.freeze()
        gc.enable()
    try:
        run()
    except SystemExit as exc:
        if exc.code in (0, None):
            _exit_ok()
        raise
    _exit_ok()


def _exit_ok() -> None:
    """Exit 0 at once after the exit handlers, if nothing else is left to finish."""
    import atexit
    import threading

    if threading.active_count() > 1:
        return
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return  # the normal exit reports it (a closed pipe, a full disk)
    os._exit(0)
