"""Running workers fire schedules on time, once, on both stores (reference §19.2).

Three ``Worker`` objects, each with its own store connection, run in this loop with
one injected clock: the real clock plus an offset that the test moves to just
before a minute boundary, so a ``* * * * *`` schedule fires within a second
instead of a minute, and a second fire follows a jump of the clock.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from queuectl import cron
from queuectl.clock import now_ms
from queuectl.config import QueueConfig
from queuectl.models import JobState
from queuectl.schedules import Schedules
from queuectl.worker import Worker, WorkerOptions
from tests.integration.test_backend_contract import reopen


class OffsetClock:
    def __init__(self) -> None:
        self.offset = 0

    def __call__(self) -> int:
        return now_ms() + self.offset

    def before(self, at: int, ms: int) -> None:
        """Move the clock to ``ms`` milliseconds before ``at``."""
        self.offset = at - ms - now_ms()


async def _config() -> QueueConfig:
    return QueueConfig()


async def _finished(backend: Any, job_id: str, timeout_s: float = 20) -> Any:
    async with asyncio.timeout(timeout_s):
        while True:
            job = await backend.get_job(job_id)
            if job is not None and job.state is JobState.COMPLETED:
                return job
            await asyncio.sleep(0.05)


async def test_three_workers_make_each_fire_time_once_within_a_second(
    backend: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))  # spool files of a URL target
    clock = OffsetClock()
    first = (now_ms() // 60_000 + 2) * 60_000
    clock.before(first, 1500)
    await Schedules(backend, clock=clock, config=_config).add(
        "tick", "* * * * *", {"command": "true"}, tz="UTC"
    )
    stores = [await reopen(backend) for _ in range(3)]
    target = str(getattr(backend, "url", backend.target))
    options = WorkerOptions(target, install_signal_handlers=False)
    workers = [Worker(store, options, clock=clock) for store in stores]
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        job = await _finished(backend, cron.job_id("tick", first))
        assert 0 <= job.created_at - first <= 1000
        # The clock jumps to just before the next minute: the workers, asleep until
        # then by the old clock, look again within the slow poll and fire on time.
        second = first + 60_000
        clock.before(second, 300)
        job = await _finished(backend, cron.job_id("tick", second))
        assert 0 <= job.created_at - second <= 1000
    finally:
        for w in workers:
            w.stop()
        async with asyncio.timeout(20):
            codes = await asyncio.gather(*tasks)
        for store in stores:
            await store.aclose()
    assert codes == [0, 0, 0]
    jobs = await backend.list_jobs(limit=0)
    assert sorted(j.id for j in jobs) == [cron.job_id("tick", t) for t in (first, second)]
    [schedule] = await backend.list_schedules()
    assert (schedule.skipped, schedule.last_job_id) == (0, cron.job_id("tick", second))


async def test_a_schedule_added_while_workers_run_wakes_them(
    backend: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``schedule add`` wakes the scheduler (datagram or NOTIFY), the slow poll is a fallback."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    # No slow poll within the test: only the wake-up can make the worker look.
    monkeypatch.setattr("queuectl.schedules.POLL_S", 60.0)
    clock = OffsetClock()
    store = await reopen(backend)
    target = str(getattr(backend, "url", backend.target))
    worker = Worker(store, WorkerOptions(target, install_signal_handlers=False), clock=clock)
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.sleep(0.5)  # let it register and subscribe
        at = (now_ms() // 60_000 + 2) * 60_000
        clock.before(at, 200)
        await Schedules(backend, clock=clock, config=_config).add(
            "soon", "* * * * *", {"command": "true"}, tz="UTC"
        )
        job = await _finished(backend, cron.job_id("soon", at))
        assert 0 <= job.created_at - at <= 1000
    finally:
        worker.stop()
        async with asyncio.timeout(20):
            await task
        await store.aclose()
