"""``worker start --processes P``: spread N slot coroutines over P worker processes.

Children are fresh interpreters started at a worker-only entry point
(``queuectl.child``) and receive nothing but ``WorkerOptions`` as JSON; each opens
its own connection and runs its own event loop, and they coordinate only through
the store. Not ``multiprocessing``: its ``spawn`` re-imports the parent's main
module (the whole CLI) in every child and starts a resource-tracker process, half
a second and a dozen MiB that buy nothing here (issue 15).

The CLI process checks the store, then becomes the supervisor: it replaces itself
(``os.execv``, same pid) with ``queuectl.parent``, a script that imports almost
nothing and only waits for signals, instead of keeping the CLI, asyncio and the
store loaded for as long as the workers run (issue 15: ~9 MiB instead of ~29).
The supervisor:

* forwards stop signals: Ctrl-C reaches every process of the terminal's foreground
  group, so children ignore SIGINT and obey the parent's SIGTERMs instead (first:
  finish running jobs; second: kill them); SIGHUP is a stop signal too, and mutes
  the terminal it lost;
* restarts a child that was killed by a signal (a crash, ``kill -9``, the OOM
  killer), with a backoff when it crashes again soon after; a child that exits by
  itself (burst done, stopped, or an error such as an unusable database) is not
  restarted;
* exits 0 when every child exited 0, else 1;
* logs in the worker log's format and level.
"""

from __future__ import annotations

import os
import secrets
import signal
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import NoReturn

from queuectl import parent, procs
from queuectl.backends import open_backend
from queuectl.clock import now_ms
from queuectl.models import WorkerInfo
from queuectl.options import WorkerOptions


def split_count(total: int, processes: int) -> list[int]:
    """``split_count(10, 3) == [4, 3, 3]``: N coroutines over P processes, N in total."""
    base, extra = divmod(total, processes)
    return [base + (1 if i < extra else 0) for i in range(processes)]


async def run_supervisor(
    options: WorkerOptions, processes: int, log_setup: tuple[int, str]
) -> NoReturn:
    await _check_store(options.target)
    become_parent(parent_argv(options, processes, log_setup))


def parent_argv(options: WorkerOptions, processes: int, log_setup: tuple[int, str]) -> list[str]:
    """``python -S -P .../parent.py ARGS`` for these children (see ``queuectl.parent``).

    ``-S``: no ``site``, the parent needs nothing of site-packages until it logs,
    and then it gets this process's ``sys.path``; ``-P``: no script folder on it.
    """
    from queuectl.child import command

    argvs = [
        command(asdict(replace(options, count=count, ignore_sigint=True)), log_setup)
        for count in split_count(options.count, processes)
    ]
    script = Path(parent.__file__).resolve()
    # Without -P, sys.path[0] is this process's script folder or working folder.
    path = [p for p in sys.path[0 if sys.flags.safe_path else 1 :] if p]
    level, fmt = log_setup
    # The command line it replaces comes first: ``ps`` and ``pgrep -f 'worker start'``
    # still show and find the supervisor.
    lists = [sys.argv, [str(level), fmt], [*path, str(script.parent.parent)], *argvs]
    return [sys.executable, "-S", "-P", str(script), *parent.encode(lists)]


def become_parent(argv: list[str]) -> NoReturn:
    """Replace this process with ``argv``; stop signals arriving meanwhile wait for it.

    They stay blocked through ``execve`` (pending, not lost) until the parent script takes
    them. A SIGHUP that is ignored (``nohup``) stays ignored and is not blocked.
    """
    blocked = {signal.SIGINT, signal.SIGTERM, signal.SIGCHLD}
    if signal.getsignal(signal.SIGHUP) != signal.SIG_IGN:
        blocked.add(signal.SIGHUP)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    old = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        os.execv(argv[0], argv)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


async def _check_store(target: str) -> None:
    """Open, migrate and write to the store once, here in the parent.

    An unusable database (missing, foreign, read-only, ...) is then one clear
    error from the parent instead of a log line from every child. The write is a
    worker row that is removed at once.
    """
    backend = await open_backend(target, durable=False)
    try:
        now = now_ms()
        probe = WorkerInfo(
            id=f"probe-{secrets.token_hex(4)}",
            host=procs.HOST,
            pid=os.getpid(),
            started_at=now,
            heartbeat_at=now,
            count=0,
            jobs_done=0,
            proc_start=procs.proc_start(os.getpid()),
        )
        await backend.register_worker(probe, now=now)
        await backend.deregister_worker(probe.id)
    finally:
        await backend.aclose()
