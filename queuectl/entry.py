"""The ``queuectl`` executable's entry point: the CLI, imported the cheap way.

Importing the commands and the store allocates many objects that live as long as
the process; the collector running while they are built, and scanning them again
at later collections and at exit, costs a short command about a tenth of its time
(issue 15). So this entry imports the CLI with the collector paused and moves
what it built to the permanent generation (``gc.freeze``), as the CPython docs
advise for long-lived start-up objects. It is a module of its own, apart from
``queuectl.cli``, so that nothing heavy is imported before the pause; a program
that imports ``queuectl.cli`` itself keeps its collector as it was.
"""

from __future__ import annotations

import gc


def main() -> None:
    gc.disable()
    try:
        from queuectl.cli.main import main as run
    finally:
        gc.freeze()
        gc.enable()
    run()
