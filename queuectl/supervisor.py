"""``worker start --processes P``: spread N slot coroutines over P worker processes.

Children are fresh interpreters started with ``subprocess`` at a worker-only entry
point (``queuectl.child``) and receive nothing but ``WorkerOptions`` as JSON; each
opens its own connection and runs its own event loop, and they coordinate only
through the store. Not ``multiprocessing``: its ``spawn`` re-imports the parent's
main module (the whole CLI) in every child and starts a resource-tracker process,
half a second and a dozen MiB that buy nothing here (issue 15). The parent:

* forwards stop signals: Ctrl-C reaches every process of the terminal's foreground
  group, so children ignore SIGINT and obey the parent's SIGTERMs instead (first:
  finish running jobs; second: kill them);
* restarts a child that was killed by a signal (a crash, ``kill -9``, the OOM
  killer); a child that exits by itself (burst done, stopped, or an error such as
  an unusable database) is not restarted;
* exits 0 when every child exited 0, else 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import subprocess
import time
from dataclasses import asdict, replace

from queuectl import procs
from queuectl.backends import open_backend
from queuectl.clock import now_ms
from queuectl.hangup import mute_hung_up
from queuectl.models import WorkerInfo
from queuectl.options import WorkerOptions
from queuectl.signals import on_signals

log = logging.getLogger("queuectl.supervisor")

_RESTART_BACKOFF_S = (0.0, 0.5, 1.0, 2.0, 5.0)


def split_count(total: int, processes: int) -> list[int]:
    """``split_count(10, 3) == [4, 3, 3]``: N coroutines over P processes, N in total."""
    base, extra = divmod(total, processes)
    return [base + (1 if i < extra else 0) for i in range(processes)]


class Child:
    """One child process and the pipe that tells the parent's loop it has exited.

    The child inherits the write end of a pipe and never writes to it; when it
    exits, for whatever reason, the kernel closes that end and the read end turns
    readable (end of file): the parent learns of the exit in its own event loop,
    without a thread or a SIGCHLD handler (the way ``multiprocessing`` does it too).
    The commands the child runs do not inherit the pipe (``close_fds``).
    """

    def __init__(self, argv: list[str]) -> None:
        sentinel, keep = os.pipe()
        try:
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, pass_fds=(keep,))
        except BaseException:
            os.close(sentinel)
            raise
        finally:
            os.close(keep)
        self.sentinel = sentinel
        self.pid = self.process.pid

    def exit_code(self) -> int:
        """The child's exit status, once the sentinel said it exited (< 0: a signal)."""
        os.close(self.sentinel)
        return self.process.wait()


class Supervisor:
    def __init__(self, options: WorkerOptions, processes: int, log_setup: tuple[int, str]) -> None:
        self.options = options
        self.counts = split_count(options.count, processes)
        self.log_setup = log_setup
        self._children: dict[int, Child] = {}
        self._restarts: dict[int, int] = {}
        self._scheduled: set[int] = set()
        self._signals = 0
        self._failed = False
        self._all_exited = asyncio.Event()

    def _start(self, index: int) -> None:
        from queuectl.child import command

        opts = replace(self.options, count=self.counts[index], ignore_sigint=True)
        child = Child(command(asdict(opts), self.log_setup))
        self._children[index] = child
        loop = asyncio.get_running_loop()
        loop.add_reader(child.sentinel, self._on_exit, index, time.monotonic())

    def _on_exit(self, index: int, started: float) -> None:
        child = self._children.pop(index)
        asyncio.get_running_loop().remove_reader(child.sentinel)
        code = child.exit_code()
        if code is not None and code < 0 and self._signals == 0:
            # A child that crashes again right after a restart backs off.
            n = 0 if time.monotonic() - started > 30 else self._restarts.get(index, 0)
            self._restarts[index] = n + 1
            delay = _RESTART_BACKOFF_S[min(n, len(_RESTART_BACKOFF_S) - 1)]
            log.warning(
                "worker process %d (pid %s) killed by signal %d; restarting in %gs",
                index,
                child.pid,
                -code,
                delay,
            )
            self._scheduled.add(index)
            asyncio.get_running_loop().call_later(delay, self._restart, index)
            return
        if code != 0 and not (code == -signal.SIGTERM and self._signals > 0):
            # A child still starting up when our SIGTERM came had no handlers yet and
            # died of it; it held no job (handlers go in before the first claim), so
            # that is the clean stop we asked for, not a failure.
            self._failed = True
        self._check_done()

    def _restart(self, index: int) -> None:
        self._scheduled.discard(index)
        if self._signals == 0:
            self._start(index)
        self._check_done()

    def _check_done(self) -> None:
        if not self._children and not self._scheduled:
            self._all_exited.set()

    def _on_signal(self, sig: signal.Signals) -> None:
        self._signals += 1
        if sig == signal.SIGHUP:
            mute_hung_up()
        log.info("received %s; forwarding to %d worker process(es)", sig.name, len(self._children))
        self._scheduled.clear()
        for child in self._children.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGTERM)
        self._check_done()

    async def run(self) -> int:
        with on_signals(self._on_signal):
            for index in range(len(self.counts)):
                self._start(index)
            await self._all_exited.wait()
        return 1 if self._failed else 0


async def run_supervisor(options: WorkerOptions, processes: int, log_setup: tuple[int, str]) -> int:
    await _check_store(options.target)
    return await Supervisor(options, processes, log_setup).run()


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
