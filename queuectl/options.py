"""What a worker process is asked to do: ``WorkerOptions``, apart from the worker.

A module of its own so that the CLI and the ``--processes`` parent can build the
options without importing the worker's machinery (executor, pump, schedules),
which only the processes that run jobs need (issue 15).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """Everything a worker needs; plain fields, so ``--processes`` passes them as JSON."""

    target: str
    count: int = 1
    queues: tuple[str, ...] = ()
    burst: bool = False
    install_signal_handlers: bool = True
    #: In ``--processes`` mode the parent owns SIGINT (Ctrl-C reaches the whole
    #: process group); children obey only the SIGTERMs it forwards.
    ignore_sigint: bool = False
