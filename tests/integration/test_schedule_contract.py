"""Schedules on both stores (reference §19.2): fire once, catch up, overlap, survive kill -9.

Time is injected (``FrozenClock``): a worker started after a long stop is a clock
moved on, never a sleep. Several "workers" are several connections to the same
store (each its own thread on SQLite, its own pool on PostgreSQL) racing in
``Schedules.fire_due``, the very call a worker's scheduler task makes.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from queuectl import cron
from queuectl.clock import to_iso
from queuectl.config import QueueConfig
from queuectl.exceptions import DuplicateJob, DuplicateSchedule, ScheduleNotFound
from queuectl.models import ExecutionResult, Finish, JobState
from queuectl.schedules import Schedules
from tests.conftest import FrozenClock
from tests.integration.test_backend_contract import reopen

#: 2027-01-15T08:00:30Z: half a minute past a minute boundary.
START = 1_800_000_030_000
MINUTE = 60_000
CONFIG = QueueConfig()


@pytest.fixture
def at() -> FrozenClock:
    return FrozenClock(START)


def schedules(backend: Any, clock: FrozenClock) -> Schedules:
    async def config() -> QueueConfig:
        return CONFIG

    return Schedules(backend, clock=clock, config=config)


async def job_ids(backend: Any) -> list[str]:
    return sorted(j.id for j in await backend.list_jobs(limit=0))


async def complete(backend: Any, job_id: str, now: int) -> None:
    result = await backend.exchange(worker_id="w", claim=1, now=now)
    [c] = result.claims
    assert c.job.id == job_id
    await backend.exchange(
        worker_id="w",
        finishes=[Finish(c.job.id, c.token, c.job.attempts, 3, ExecutionResult(exit_code=0))],
        now=now,
    )


async def test_a_schedule_is_stored_listed_paused_and_removed(
    backend: Any, at: FrozenClock
) -> None:
    s = schedules(backend, at)
    added = await s.add("every", "*/5 * * * *", {"command": "echo hi", "priority": 3}, tz="UTC")
    assert to_iso(added.next_fire_at) == "2027-01-15T08:05:00.000Z"
    with pytest.raises(DuplicateSchedule, match="'every' already exists"):
        await s.add("every", "@daily", {"command": "other"}, tz="UTC")
    [listed] = await s.list()
    assert (listed.name, listed.cron, listed.tz, listed.job) == (
        "every",
        "*/5 * * * *",
        "UTC",
        {"command": "echo hi", "priority": 3},
    )
    await s.pause("every")
    assert (await s.get("every")).paused
    at.advance(3600)
    assert (await backend.due_schedules(now=at())).due == []
    await s.resume("every")
    resumed = await s.get("every")
    # Paused fire times are not made, and not counted as missed either.
    assert not resumed.paused
    assert resumed.next_fire_at == cron.next_after("*/5 * * * *", cron.zone("UTC"), at())
    assert resumed.skipped == 0
    await s.remove("every")
    assert await s.list() == []
    for call in (s.remove, s.pause, s.resume, s.run):
        with pytest.raises(ScheduleNotFound, match="no schedule named 'every'"):
            await call("every")


async def test_each_fire_time_makes_one_job_however_many_workers_race(
    backend: Any, at: FrozenClock
) -> None:
    await schedules(backend, at).add(
        "tick", "* * * * *", {"command": "true"}, tz="UTC", overlap="allow"
    )
    workers = [backend] + [await reopen(backend) for _ in range(5)]
    try:
        made: list[str] = []
        for _ in range(10):
            at.advance(60)
            reports = await asyncio.gather(*(schedules(w, at).fire_due(CONFIG) for w in workers))
            fired = [d for r in reports for _, d in r.fired if d.handled]
            assert len(fired) == 1, reports
            made.extend(d.job_id for d in fired if d.job_id)
    finally:
        for w in workers[1:]:
            await w.aclose()
    expected = [cron.job_id("tick", (START - 30_000) + 60_000 * i) for i in range(1, 11)]
    assert made == expected
    assert await job_ids(backend) == expected
    [s] = await backend.list_schedules()
    assert (s.skipped, s.last_job_id) == (0, expected[-1])


async def test_a_worker_after_a_long_stop_makes_only_the_latest_fire_time(
    backend: Any, at: FrozenClock
) -> None:
    s = schedules(backend, at)
    await s.add("tick", "* * * * *", {"command": "true"}, tz="UTC")
    # Nobody ran for three hours and ten seconds: 180 fire times passed.
    at.advance(3 * 3600 + 10)
    report = await s.fire_due(CONFIG)
    [(fire, done)] = report.fired
    latest = START - 30_000 + 180 * 60_000
    assert (fire.fire_at, fire.missed, done.job_id) == (latest, 179, cron.job_id("tick", latest))
    assert await job_ids(backend) == [cron.job_id("tick", latest)]
    [after] = await s.list()
    assert (after.skipped, after.last_fire_at, after.next_fire_at) == (179, latest, latest + 60_000)
    assert report.next_at == latest + 60_000
    # Firing again at the same moment changes nothing.
    assert (await s.fire_due(CONFIG)).fired == []


async def test_a_schedule_added_with_its_fire_time_past_fires_at_once(
    backend: Any, at: FrozenClock
) -> None:
    """The clock jumped after `schedule add` (a suspended laptop, a clock fixed by NTP)."""
    s = schedules(backend, at)
    added = await s.add("jump", "0 * * * *", {"command": "true"}, tz="UTC")
    assert added.next_fire_at is not None
    at.now = added.next_fire_at + 2 * 3600_000 + 1
    [(fire, done)] = (await s.fire_due(CONFIG)).fired
    assert (fire.fire_at, fire.missed) == (added.next_fire_at + 2 * 3600_000, 2)
    assert done.job_id == cron.job_id("jump", fire.fire_at)


async def test_overlap_skip_waits_for_the_previous_job_and_counts(
    backend: Any, at: FrozenClock
) -> None:
    s = schedules(backend, at)
    await s.add("slow", "* * * * *", {"command": "sleep 100"}, tz="UTC")

    async def fire() -> str | None:
        [(_, done)] = (await s.fire_due(CONFIG)).fired
        assert done.handled
        return done.job_id

    at.advance(30)  # 08:01:00
    first = await fire()
    assert first is not None
    at.advance(60)
    assert await fire() is None  # the first job is pending
    [c] = (await backend.exchange(worker_id="w", claim=1, now=at())).claims
    at.advance(60)
    assert await fire() is None  # processing
    fail = ExecutionResult(exit_code=1)
    await backend.exchange(
        worker_id="w", finishes=[Finish(first, c.token, c.job.attempts, 3, fail)], now=at()
    )
    assert (await backend.get_job(first)).state is JobState.FAILED
    at.advance(60)
    assert await fire() is None  # failed, awaiting its retry
    assert (await s.get("slow")).skipped == 3
    assert await job_ids(backend) == [first]
    at.advance(10)
    await complete(backend, first, at())
    at.advance(50)  # 08:05:00
    made = await fire()
    assert made == cron.job_id("slow", START + 30_000 + 4 * MINUTE)
    assert (await s.get("slow")).skipped == 3


async def test_overlap_allow_makes_every_fire_time(backend: Any, at: FrozenClock) -> None:
    s = schedules(backend, at)
    await s.add("many", "* * * * *", {"command": "sleep 100"}, tz="UTC", overlap="allow")
    for _ in range(3):
        at.advance(60)
        [(_, done)] = (await s.fire_due(CONFIG)).fired
        assert done.job_id is not None
    assert len(await job_ids(backend)) == 3
    assert (await s.get("many")).skipped == 0


async def test_run_makes_the_job_now_whatever_the_overlap_and_counts_as_last_fire(
    backend: Any, at: FrozenClock
) -> None:
    s = schedules(backend, at)
    await s.add("now", "0 0 1 1 *", {"command": "true", "queue": "q", "env": {"A": "1"}}, tz="UTC")
    first = await s.run("now")
    at.advance(1.5)
    second = await s.run("now")  # the first is still pending: run ignores overlap
    assert first == cron.job_id("now", START)
    assert second == cron.job_id("now", START + 1000)
    job = await backend.get_job(second)
    assert (job.queue, job.env, job.state) == ("q", {"A": "1"}, JobState.PENDING)
    after = await s.get("now")
    assert (after.last_fire_at, after.last_job_id) == (START + 1000, second)
    with pytest.raises(DuplicateJob, match="already made job"):
        await s.run("now")  # the same second again
    assert len(await job_ids(backend)) == 2


async def test_a_fire_read_before_a_change_changes_nothing(backend: Any, at: FrozenClock) -> None:
    """A worker that read a schedule, then lost the race to rm + add or pause, makes nothing."""
    s = schedules(backend, at)
    await s.add("x", "* * * * *", {"command": "old"}, tz="UTC")
    at.advance(60)
    read = await backend.due_schedules(now=at())
    [stale] = read.due
    await s.remove("x")
    await s.add("x", "* * * * *", {"command": "new"}, tz="UTC")
    at.advance(0.001)
    from queuectl.schedules import _plan

    fire = await _plan(stale, read.store_now, CONFIG, at())
    assert not (await backend.fire(fire, now=at())).handled
    await s.pause("x")
    at.advance(120)
    assert (await backend.due_schedules(now=at())).due == []
    assert await job_ids(backend) == []


KILLER = """
import asyncio, os, signal, sys
from queuectl.clock import to_iso
from queuectl.config import QueueConfig
from queuectl.schedules import Schedules
import queuectl.backends.{module} as store
import queuectl.backends.bookkeeping as bookkeeping

def die(*args, **kwargs):
    # The job is inserted, the schedule moved on, nothing committed yet.
    sys.stdout.write("inserted\\n"); sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)

# The SQLite store imports the rule by name, PostgreSQL calls it through its module.
store.fire_done_values = die
bookkeeping.fire_done_values = die

async def main():
    {open}
    async def config():
        return QueueConfig()
    await Schedules(backend, clock=lambda: {now}, config=config).fire_due(QueueConfig())

asyncio.run(main())
"""


async def test_kill_9_during_a_fire_loses_nothing_and_makes_nothing_twice(
    backend: Any, at: FrozenClock, tmp_path: Path
) -> None:
    s = schedules(backend, at)
    await s.add("k", "* * * * *", {"command": "true"}, tz="UTC")
    at.advance(60)
    if backend.dialect == "sqlite":
        module, opener = "sqlite", f"backend = await store.SqliteBackend.open({backend.target!r})"
    else:
        module = "postgres"
        opener = f"backend = await store.PostgresBackend.open({backend.url!r}, caller_clock=True)"
    script = tmp_path / "killed.py"
    script.write_text(textwrap.dedent(KILLER).format(module=module, open=opener, now=at()))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert done.stdout == "inserted\n"
    # The dead worker's transaction is gone: no job, and the fire time is still due.
    assert await job_ids(backend) == []
    [due] = (await backend.due_schedules(now=at())).due
    assert due.next_fire_at == START + 30_000
    # The next worker makes it, once.
    [(_, made)] = (await s.fire_due(CONFIG)).fired
    assert made.job_id == cron.job_id("k", START + 30_000)
    assert (await s.fire_due(CONFIG)).fired == []
    assert await job_ids(backend) == [made.job_id]
    assert (await s.get("k")).skipped == 0


async def test_a_schedule_this_host_cannot_plan_is_reported_and_stays_due(
    backend: Any, at: FrozenClock
) -> None:
    """A zone missing from this host's database: no job, no crash, another host may make it."""
    from dataclasses import replace

    s = schedules(backend, at)
    good = await s.add("ok", "* * * * *", {"command": "true"}, tz="UTC")
    await backend.add_schedule(replace(good, name="odd", tz="Nowhere/Land"))
    at.advance(60)
    report = await s.fire_due(CONFIG)
    assert [name for name, _ in report.failed] == ["odd"]
    assert "unknown time zone" in report.failed[0][1]
    assert [f.name for f, d in report.fired if d.job_id] == ["ok"]
    assert [d.name for d in (await backend.due_schedules(now=at())).due] == ["odd"]
