"""Run the worker inside the test's own event loop, on a real store (a file or a schema).

A worker behaviour that is not about being a process (ordering, retries, burst,
timeouts, queues, output) is tested through ``Worker`` and ``Queue`` directly:
no interpreter to start per command, and the test can wait on the worker's task
instead of polling a process. The commands the worker runs are still real
processes (``sh -c``), and the store is the real one. What only a process shows
(signals, ``kill -9``, a pty, the CLI's own output and exit codes) stays in
``tests/acceptance``.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

from queuectl import procs
from queuectl.backends import open_backend
from queuectl.clock import Clock, now_ms
from queuectl.models import Attempt, Job, JobState, StopMode, WorkerInfo
from queuectl.queue import Queue
from queuectl.worker import Worker, WorkerOptions

#: How long a test waits for a worker to drain or stop; below pytest's per-test timeout.
WORKER_TIMEOUT_S = 30.0


@contextlib.asynccontextmanager
async def open_queue(target: Path | str, *, clock: Clock = now_ms) -> AsyncIterator[Queue]:
    """``Queue.open`` for a test: another connection, as another terminal would have."""
    async with Queue.open(str(target), clock=clock) as queue:
        yield queue


@contextlib.asynccontextmanager
async def started_worker(
    target: Path | str,
    *,
    count: int = 1,
    queues: Sequence[str] = (),
    burst: bool = False,
    clock: Clock = now_ms,
) -> AsyncIterator[tuple[Worker, asyncio.Task[int]]]:
    """A ``Worker`` running as a task; on exit it is stopped (forcibly if still busy)."""
    backend = await open_backend(str(target), durable=False, busy_deadline_s=60.0)
    options = WorkerOptions(
        target=str(target),
        count=count,
        queues=tuple(queues),
        burst=burst,
        install_signal_handlers=False,
    )
    worker = Worker(backend, options, clock=clock)
    task = asyncio.create_task(worker.run(), name=f"worker-{worker.id}")
    failed = False
    try:
        yield worker, task
    except BaseException:
        failed = True
        raise
    finally:
        crash = await _stopped(worker, task)
        await backend.aclose()
        if crash is not None and not failed:
            # The worker died while the test only watched the store: say why.
            raise crash


async def _stopped(worker: Worker, task: asyncio.Task[int]) -> BaseException | None:
    """Stop the worker (forcibly if still busy); its exception, if it crashed."""
    if not task.done():
        worker.stop(StopMode.NOW)
    try:
        async with asyncio.timeout(WORKER_TIMEOUT_S):
            await asyncio.wait([task])
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
    return None if task.cancelled() else task.exception()


async def run_burst(
    target: Path | str,
    *,
    count: int = 1,
    queues: Sequence[str] = (),
    clock: Clock = now_ms,
    timeout_s: float = WORKER_TIMEOUT_S,
) -> int:
    """``worker start --burst`` in-process: run until the served queues are drained."""
    async with started_worker(target, count=count, queues=queues, burst=True, clock=clock) as (
        _,
        task,
    ):
        async with asyncio.timeout(timeout_s):
            return await task


async def wait_until(
    check: Callable[[], Any], *, timeout_s: float = 20, interval_s: float = 0.02
) -> Any:
    """Poll an async ``check`` until it returns something truthy, or fail after ``timeout_s``."""
    last: Any = None
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                last = await check()
                if last:
                    return last
                await asyncio.sleep(interval_s)
    except TimeoutError:
        raise AssertionError(f"condition not met within {timeout_s}s (last: {last!r})") from None


async def shown(target: Path | str, job_id: str) -> tuple[Job, list[Attempt]]:
    """``show JOB_ID``: the job and its attempts, read on a connection of its own."""
    async with open_queue(target) as queue:
        return await queue.show(job_id)


async def state_of(target: Path | str, job_id: str) -> JobState:
    job, _ = await shown(target, job_id)
    return JobState(job.state)


def burst(target: Path | str, *, count: int = 1, queues: Sequence[str] = ()) -> int:
    """``run_burst`` for a synchronous test (a CLI test whose worker is not the subject)."""
    return asyncio.run(run_burst(target, count=count, queues=queues))


async def claim_for_a_gone_worker(db: Path | str, job_id: str) -> tuple[int, str]:
    """Claim ``job_id`` (the only due job) in the name of a worker of this host whose
    process is gone, its command's pid never recorded: the state a ``kill -9`` leaves
    right after the spawn (the start is recorded in the next transaction).

    Returns the attempt and the store's tag, as the command sees them in
    ``$QUEUECTL_ATTEMPT`` and ``$QUEUECTL_STORE``.
    """
    gone = subprocess.Popen(["true"])
    gone.wait()
    backend = await open_backend(str(db))
    try:
        now = now_ms()
        # A start time of this boot: the worker ran on this machine (and is gone).
        started = f"{procs.boot_id()}:1"
        info = WorkerInfo("deadbeef", procs.HOST, gone.pid, now, now, 1, 0, proc_start=started)
        await backend.register_worker(info, now=now)
        claimed = await backend.exchange(worker_id="deadbeef", claim=1, lease_ms=600_000, now=now)
    finally:
        await backend.aclose()
    (claim,) = claimed.claims
    assert claim.job.id == job_id
    return claim.token, procs.store_tag(backend.identity)
