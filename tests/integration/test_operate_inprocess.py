"""Retention applied by a running worker, and ``logs`` of a running attempt, in-process.

A worker process is not what these test, so the worker runs as a coroutine over a
real store (both stores), with its retention pace shortened.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from queuectl import procs, worker
from queuectl.models import ExecutionResult, JobState, ProcessStart
from queuectl.queue import Queue, running_notice
from queuectl.worker import Worker, WorkerOptions
from tests.conftest import FrozenClock
from tests.integration.test_backend_contract import OK, claim, finish, job

DAY_MS = 86_400_000


async def test_workers_delete_old_completed_and_cancelled_jobs_only(
    backend: Any, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    old = clock()
    await backend.enqueue(
        [job("done", old), job("cancelled", old), job("dies", old, max_retries=0)], now=old
    )
    await backend.enqueue([job("waiting", old, run_at=old + 30 * DAY_MS)], now=old)
    done, cancelled, dies = await claim(backend, old, n=3)
    await finish(backend, done, OK, old)
    await backend.cancel(["cancelled"], now=old)
    await finish(backend, cancelled, ExecutionResult(signal=15, cancelled=True), old)
    await finish(backend, dies, ExecutionResult(exit_code=1), old)
    new = clock.advance(2 * 86_400)
    await backend.enqueue([job("recent", new)], now=new)
    [recent] = await claim(backend, new)
    await finish(backend, recent, OK, new)
    await backend.set_config({"retention": "1d"})
    monkeypatch.setattr(worker, "RETENTION_EVERY_S", 0.05)
    options = WorkerOptions(target=str(tmp_path / "q.db"), install_signal_handlers=False)
    w = Worker(backend, options, clock=clock)
    running = asyncio.create_task(w.run())
    try:
        for _ in range(400):
            if not await backend.job_states(["done", "cancelled"]):
                break
            await asyncio.sleep(0.05)
    finally:
        w.stop()
        await asyncio.wait_for(running, 30)
    states = {j.id: j.state for j in await backend.list_jobs(limit=0)}
    # Old completed and cancelled jobs are gone with their history; dead ones stay
    # (only a purge deletes them), and so do recent and waiting ones.
    assert states == {
        "dies": JobState.DEAD,
        "recent": JobState.COMPLETED,
        "waiting": JobState.PENDING,
    }
    assert await backend.history("done") == []


async def test_logs_of_a_running_attempt_show_its_output_so_far(
    backend: Any, clock: FrozenClock, tmp_path: Path
) -> None:
    now = clock()
    await backend.enqueue([job("here", now), job("there", now)], now=now)
    here, there = await claim(backend, now, n=2)
    spool = tmp_path / "here.out"
    spool.write_bytes(b"half way\n")
    await backend.exchange(
        worker_id="w1",
        starts=[
            ProcessStart("here", here.token, procs.HOST, 1, 1, None, str(spool), slot=0),
            ProcessStart("there", there.token, "elsewhere", 1, 1, None, "/x.out", slot=1),
        ],
        now=now,
    )
    queue = Queue(backend, clock=clock)
    out = await queue.output("here")
    assert (out.output, out.finished) == (b"half way\n", False)
    assert running_notice(out) == "[attempt 1 is still running: its output so far]"
    far = await queue.output("there")
    assert far.output == b""
    assert "running on elsewhere" in (running_notice(far) or "")
    # The attempt ends (its spool removed): the stored tail is what shows.
    spool.unlink()
    await finish(backend, here, ExecutionResult(exit_code=0, output_tail=b"all\n"), now)
    out = await queue.output("here")
    assert (out.output, out.finished, running_notice(out)) == (b"all\n", True, None)
