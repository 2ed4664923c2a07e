"""Run one shell command as its own process group and report how it ended.

The command's stdout and stderr go straight into a spool file (the child writes it;
no byte passes through Python), so a command printing 200 MB costs the worker no
memory, and a background grandchild that keeps stdout open cannot hang it: the
worker waits for the shell's exit, not for the end of a pipe. The last
``output_limit`` bytes are read back when the command ends. A spool that grows past
``spool_max`` is cut down to its tail while the command runs (the file is opened
with ``O_APPEND``, so the child keeps writing at the new end).

Each command leads its own session (``start_new_session``), so a timeout, a forced
stop, a lost lease or a cancel kills the whole group: SIGTERM, then SIGKILL after a grace.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from queuectl import procs
from queuectl.models import ExecutionResult

_SPOOL_CHECK_S = 1.0
_GROUP_POLL_S = 0.05
_KILL_SETTLE_S = 2.0


class KillReason(Enum):
    TIMEOUT = "timeout"
    INTERRUPT = "interrupt"
    LOST = "lost"
    CANCEL = "cancel"


@dataclass(frozen=True, slots=True)
class Command:
    command: str
    env: Mapping[str, str]
    cwd: str | None
    timeout_s: float | None
    output_limit: int
    kill_grace_s: float
    spool_path: Path
    spool_max: int = 64 << 20


class Execution:
    """One run of a command; ``kill`` may be called from elsewhere while it runs."""

    def __init__(self, cmd: Command) -> None:
        self.cmd = cmd
        self.pid: int | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._reason: KillReason | None = None
        self._loop = asyncio.get_running_loop()
        self._handles: list[asyncio.TimerHandle] = []
        self._carry = b""
        self._carried = 0
        self._fd = -1
        self._termed_at = 0.0
        self._grace_s = self.cmd.kill_grace_s

    async def run(self, on_start: Callable[[int], None] | None = None) -> ExecutionResult:
        cmd = self.cmd
        started = time.monotonic()
        flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC
        self._fd = os.open(cmd.spool_path, flags, 0o600)
        try:
            if self._reason is not None:
                # Killed before it started (a job claimed ahead that was cancelled or
                # lost meanwhile, or a forced stop): never spawned, so no command runs
                # for a job that another worker may already have taken over.
                return self._result(None, time.monotonic() - started)
            try:
                proc = await asyncio.create_subprocess_shell(
                    cmd.command,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=self._fd,
                    stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,
                    # job_environment already built a fresh dict; copy only other mappings.
                    env=cmd.env if isinstance(cmd.env, dict) else dict(cmd.env),
                    cwd=cmd.cwd,
                )
            except OSError as exc:
                return ExecutionResult(
                    spawn_error=_describe_os_error(exc, cmd.cwd),
                    duration_s=time.monotonic() - started,
                )
            self.pid, self._proc = proc.pid, proc
            if on_start is not None:
                on_start(proc.pid)
            if self._reason is not None:  # killed while it was being spawned
                self._termed_at = time.monotonic()
                self._signal(signal.SIGTERM)
                self._handles.append(
                    self._loop.call_later(self._grace_s, self._signal, signal.SIGKILL)
                )
            self._arm(cmd)
            try:
                returncode = await proc.wait()
            except asyncio.CancelledError:
                # The worker is going down with this attempt still running (a
                # crashed task, an unusable store): never leave the command behind.
                self._signal(signal.SIGKILL)
                raise
            # The attempt lasted until the shell exited; reaping a killed group's
            # stragglers is the worker's time, not the command's.
            duration_s = time.monotonic() - started
            if self._reason is not None:
                await self._reap_group()
            return self._result(returncode, duration_s)
        finally:
            for handle in self._handles:
                handle.cancel()
            os.close(self._fd)
            with contextlib.suppress(OSError):
                os.unlink(cmd.spool_path)

    def leader_start(self) -> str | None:
        """``procs.proc_start`` of the command's shell, safe to call at any time later.

        Read when the start record is sent, not at the spawn: right after the spawn
        the read waits for the child's ``exec`` to finish (0.3-0.7 ms of the loop's
        time per job here), and a short job's record goes with its finish, when
        the shell is long gone. A shell this worker reaped gets ``procs.gone_start``:
        its pid may belong to another process by now. (The child watcher sets
        ``returncode`` in the same loop callback that reaps, so nothing between.)
        """
        if self._proc is None:
            return None
        if self._proc.returncode is not None:
            return procs.gone_start()
        return procs.proc_start(self._proc.pid) or procs.gone_start()

    def kill(self, reason: KillReason, *, grace_s: float | None = None) -> None:
        """Kill the command's group: SIGTERM now, SIGKILL after the grace.

        ``grace_s`` shortens ``kill-grace`` for this kill (a worker fencing itself
        must be done before its lease runs out, whatever ``kill-grace`` says).
        """
        if self._reason is not None:
            return
        self._reason = reason
        if grace_s is not None:
            self._grace_s = min(self._grace_s, grace_s)
        if self.pid is None:
            return
        self._termed_at = time.monotonic()
        self._signal(signal.SIGTERM)
        self._handles.append(self._loop.call_later(self._grace_s, self._signal, signal.SIGKILL))

    def _arm(self, cmd: Command) -> None:
        if cmd.timeout_s is not None:
            self._handles.append(
                self._loop.call_later(cmd.timeout_s, self.kill, KillReason.TIMEOUT)
            )
        self._handles.append(self._loop.call_later(_SPOOL_CHECK_S, self._check_spool))

    def _signal(self, sig: int) -> None:
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, sig)

    def _check_spool(self) -> None:
        size = os.fstat(self._fd).st_size
        if size > max(self.cmd.spool_max, 2 * self.cmd.output_limit):
            # Keep the tail in memory (at most output_limit bytes), then empty the file.
            keep = self.cmd.output_limit
            self._carry = (
                (self._carry + os.pread(self._fd, keep, max(size - keep, 0)))[-keep:]
                if keep
                else b""
            )
            self._carried += size
            os.ftruncate(self._fd, 0)
        self._handles.append(self._loop.call_later(_SPOOL_CHECK_S, self._check_spool))

    async def _reap_group(self) -> None:
        """After a kill, let what is left of the group use up the grace, then SIGKILL it.

        The grace counts from the SIGTERM, not from the leader's exit: a leader that
        held out for the whole grace must not earn its group a second one. Zombies
        that init has not reaped yet do not count as members.
        """
        assert self.pid is not None
        deadline = self._termed_at + self._grace_s
        while procs.group_alive(self.pid) and time.monotonic() < deadline:
            await asyncio.sleep(_GROUP_POLL_S)
        self._signal(signal.SIGKILL)
        # SIGKILL is delivered asynchronously: report the attempt over only once
        # nothing of it runs any more (bounded, for a process stuck in the kernel).
        deadline = time.monotonic() + _KILL_SETTLE_S
        while procs.group_alive(self.pid) and time.monotonic() < deadline:
            await asyncio.sleep(_GROUP_POLL_S / 5)

    def _result(self, returncode: int | None, duration_s: float) -> ExecutionResult:
        """The command's result; ``returncode`` ``None``: it was never spawned."""
        size = os.fstat(self._fd).st_size
        limit = self.cmd.output_limit
        tail = os.pread(self._fd, min(limit, size), max(size - limit, 0)) if limit and size else b""
        if len(tail) < limit and self._carry:
            tail = (self._carry + tail)[-limit:]
        sig = -returncode if returncode is not None and returncode < 0 else None
        return ExecutionResult(
            exit_code=returncode if returncode is not None and returncode >= 0 else None,
            signal=sig,
            timed_out=self._reason is KillReason.TIMEOUT,
            interrupted=self._reason is KillReason.INTERRUPT,
            lost_lease=self._reason is KillReason.LOST,
            cancelled=self._reason is KillReason.CANCEL,
            duration_s=duration_s,
            output_tail=tail,
            output_size=self._carried + size,
        )


def read_spool_tail(path: str | Path, limit: int) -> tuple[bytes, int] | None:
    """The last ``limit`` bytes of a spool file and its size; ``None`` if it is gone.

    For the output of an attempt whose worker died (``kill -9``): the command wrote
    straight into the file, so what it printed is still there.
    """
    try:
        with open(path, "rb") as spool:
            size = os.fstat(spool.fileno()).st_size
            spool.seek(max(size - limit, 0))
            return (spool.read(limit) if limit else b""), size
    except OSError:
        return None


def _describe_os_error(exc: OSError, cwd: str | None) -> str:
    if isinstance(exc, FileNotFoundError | NotADirectoryError) and cwd is not None:
        return f"working directory {cwd!r} does not exist"
    if isinstance(exc, PermissionError) and cwd is not None:
        return f"working directory {cwd!r} is not accessible"
    return exc.strerror or str(exc)


def job_environment(
    base: Mapping[str, str], extra: Mapping[str, str], job_id: str, attempt: int, store: str
) -> dict[str, str]:
    """The worker's environment, then the job's ``env``, then queuectl's own variables.

    ``store`` is the ``procs.store_tag`` of the job's store: with the job id and the
    attempt it marks every process of the attempt, for ``procs.attempt_processes``.
    """
    env = dict(base)
    env.update(extra)
    env[procs.STORE_ENV] = store
    env["QUEUECTL_JOB_ID"] = job_id
    env["QUEUECTL_ATTEMPT"] = str(attempt)
    return env


#: The pidfd watchers installed by workers of this process: how many workers use each
#: (tests run several workers in one event loop; a CLI process runs one), and the
#: watcher each replaced.
_users: dict[asyncio.AbstractChildWatcher, int] = {}
_replaced: dict[asyncio.AbstractChildWatcher, asyncio.AbstractChildWatcher] = {}


@contextlib.contextmanager
def fast_child_watcher() -> Iterator[None]:
    """Use pidfds to learn of child exits on Python 3.11 (3.12+ does so by default).

    3.11's default watcher starts one thread per child; pidfds are about 20% faster
    on this path. Restores the previous watcher when the last worker that uses it
    leaves, so other event loops (tests) are unaffected.
    """
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        yield
        return
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        yield
        return
    watcher = asyncio.get_child_watcher()
    if watcher not in _users or not watcher.is_active():
        # Else another worker of this loop installed it: share it. Replacing it would
        # close it, and with it the pidfds of that worker's running commands.
        previous, watcher = watcher, asyncio.PidfdChildWatcher()
        asyncio.set_child_watcher(watcher)
        watcher.attach_loop(asyncio.get_running_loop())
        _users[watcher], _replaced[watcher] = 0, previous
    _users[watcher] += 1
    try:
        yield
    finally:
        _users[watcher] -= 1
        # Workers of one process may end in any order: the watcher goes with its last
        # user, and a closed one is never left behind, which would refuse every later
        # subprocess in this process.
        if _users[watcher] == 0:
            del _users[watcher]
            previous = _replaced.pop(watcher)
            if asyncio.get_child_watcher() is watcher:
                asyncio.set_child_watcher(
                    previous if previous.is_active() else asyncio.ThreadedChildWatcher()
                )
            watcher.close()
