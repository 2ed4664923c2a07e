"""The stores' reads behind ``status --watch``, completion and progress bars.

Real SQLite and PostgreSQL (the ``backend`` fixture), pinned times. Besides the
answers, the query plans are checked (SQLite here; PostgreSQL in
test_postgres_store): these reads run on every refresh or key press and must use an
index, never scan.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from queuectl.backends.sqlite import SQL, SqliteBackend, migrate
from queuectl.clock import now_ms
from queuectl.models import ExecutionResult, Finish, JobState, NewJob, Outcome, ProcessStart
from queuectl.queue import Queue
from tests.conftest import FrozenClock

T0 = 1_800_000_000_000


def new(job_id: str, max_retries: int = 3, priority: int = 0) -> NewJob:
    return NewJob(
        id=job_id,
        command=f"echo {job_id}",
        max_retries=max_retries,
        priority=priority,
        next_run_at=T0,
    )


async def run_once(
    backend: SqliteBackend, job_id: str, result: ExecutionResult, *, now: int, slot: int = 0
) -> None:
    """Claim ``job_id`` (the only due job), record its start, then finish it."""
    got = await backend.exchange(worker_id="w1", claim=1, now=now)
    (claim,) = got.claims
    assert claim.job.id == job_id
    await backend.exchange(
        worker_id="w1",
        starts=[ProcessStart(job_id, claim.token, "host", 99, 99, None, "/x", slot=slot)],
        now=now,
    )
    finish = Finish(job_id, claim.token, claim.job.attempts, claim.job.max_retries, result)
    await backend.exchange(worker_id="w1", finishes=[finish], now=now + 500)


OK = ExecutionResult(exit_code=0, duration_s=0.5)
FAIL = ExecutionResult(exit_code=1, duration_s=0.5)
TIMEOUT = ExecutionResult(signal=9, timed_out=True, duration_s=0.5)


async def insert_dead(backend: Any, ids: list[str]) -> None:
    """Dead jobs written straight into the store's table (faster than failing each)."""
    sql = (
        "INSERT INTO jobs (id, command, state, max_retries, attempts, created_at, updated_at)"
        " VALUES ({}, 'x', 'dead', 0, 1, 0, 0)"
    )
    if isinstance(backend, SqliteBackend):
        conn = sqlite3.connect(backend.path)
        with conn:
            conn.executemany(sql.format("?"), [(i,) for i in ids])
        conn.close()
        return
    async with backend._conn() as conn:
        await conn.executemany(sql.format("$1"), [(i,) for i in ids])


async def test_running_jobs_show_slot_start_and_attempt(backend: Any) -> None:
    await backend.enqueue([new("a"), new("b")], now=T0)
    got = await backend.exchange(worker_id="w1", claim=2, now=T0 + 1000)
    by_id = {c.job.id: c for c in got.claims}
    await backend.exchange(
        worker_id="w1",
        starts=[ProcessStart("a", by_id["a"].token, "host", 10, 10, None, "/a", slot=3)],
        now=T0 + 1000,
    )
    running = await backend.running_jobs(limit=10)
    assert [(r.job_id, r.slot, r.attempt, r.max_retries) for r in running] == [
        ("a", 3, 1, 3),
        ("b", None, 1, 3),  # start not recorded yet: no slot
    ]
    assert all(r.started_at == T0 + 1000 and r.worker_id == "w1" for r in running)
    assert running[0].host == "host" and running[0].pid == 10
    assert len(await backend.running_jobs(limit=1)) == 1


async def test_a_rerun_after_an_interrupt_is_attempt_2_with_1_counted(backend: Any) -> None:
    await backend.enqueue([new("a")], now=T0)
    (claim,) = (await backend.exchange(worker_id="w1", claim=1, now=T0)).claims
    stopped = ExecutionResult(signal=15, interrupted=True, duration_s=0.1)
    finish = Finish("a", claim.token, claim.job.attempts, claim.job.max_retries, stopped)
    await backend.exchange(worker_id="w1", finishes=[finish], now=T0 + 100)
    (again,) = (await backend.exchange(worker_id="w1", claim=1, now=T0 + 200)).claims
    assert (again.token, again.job.attempts) == (2, 1)
    start = ProcessStart("a", again.token, "host", 10, 10, None, "/a", slot=0)
    await backend.exchange(worker_id="w1", starts=[start], now=T0 + 200)
    [running] = await backend.running_jobs(limit=10)
    # The live view numbers it as the history does, and knows what was counted.
    assert (running.attempt, running.attempts, running.max_retries) == (2, 1, 3)


async def test_finished_since_counts_outcomes_in_the_window(backend: Any) -> None:
    await backend.enqueue([new("old")], now=T0)
    await run_once(backend, "old", OK, now=T0)
    for i, result in enumerate([OK, OK, FAIL, TIMEOUT]):
        await backend.enqueue([new(f"j{i}", max_retries=0)], now=T0)
        await run_once(backend, f"j{i}", result, now=T0 + 120_000)
    counts = await backend.finished_since(T0 + 60_000)
    assert counts == {Outcome.COMPLETED: 2, Outcome.FAILED: 1, Outcome.TIMED_OUT: 1}
    assert (await backend.finished_since(T0))[Outcome.COMPLETED] == 3


async def test_next_retry_and_newest_dead(backend: Any) -> None:
    await backend.set_config({"backoff_base": "10"})
    await backend.enqueue([new("late"), new("soon")], now=T0)
    await run_once(backend, "late", FAIL, now=T0)  # retry at +10 s
    await backend.set_config({"backoff_base": "2"})
    await run_once(backend, "soon", FAIL, now=T0 + 1000)  # retry at +3.5 s
    retry = await backend.next_retry()
    assert retry is not None and retry.id == "soon"
    assert retry.next_run_at == T0 + 1500 + 2000

    assert await backend.recent_dead(limit=5) == []
    for i, when in enumerate([T0 + 50_000, T0 + 90_000, T0 + 70_000]):
        # Priority 1: claimed ahead of the older retries that are due by then.
        await backend.enqueue([new(f"d{i}", max_retries=0, priority=1)], now=T0)
        await run_once(backend, f"d{i}", FAIL, now=when)
    dead = await backend.recent_dead(limit=2)
    assert [j.id for j in dead] == ["d1", "d2"]  # by the time they died, not by age
    assert all(j.state is JobState.DEAD for j in dead)


async def test_job_ids_by_prefix_state_and_limit(backend: Any) -> None:
    ids = ["alpha-1", "alpha-2", "alpha-3", "beta", "alpha"]
    await backend.enqueue([new(i, max_retries=0) for i in ids], now=T0)
    assert await backend.job_ids("alpha") == ["alpha", "alpha-1", "alpha-2", "alpha-3"]
    assert await backend.job_ids("alpha-", limit=2) == ["alpha-1", "alpha-2"]
    assert await backend.job_ids("") == sorted(ids)
    assert await backend.job_ids("gamma") == []
    assert await backend.job_ids("alpha", state=JobState.DEAD) == []
    # Kill alpha-2: the only dead "alpha" job.
    while True:
        got = await backend.exchange(worker_id="w1", claim=1, now=T0)
        (claim,) = got.claims
        result = FAIL if claim.job.id == "alpha-2" else OK
        finish = Finish(claim.job.id, claim.token, 1, 0, result)
        await backend.exchange(worker_id="w1", finishes=[finish], now=T0)
        if claim.job.id == "alpha-2":
            break
    assert await backend.job_ids("alpha", state=JobState.DEAD) == ["alpha-2"]


async def test_dlq_retry_all_moves_every_dead_job_in_batches(backend: Any) -> None:
    total = 1_234  # more than two batches
    await insert_dead(backend, [f"d{i:05d}" for i in range(total)])
    await backend.enqueue([new("alive")], now=T0)
    seen: list[int] = []
    moved = await backend.requeue_dead(None, now=T0, progress=seen.append)
    assert sorted(moved) == [f"d{i:05d}" for i in range(total)]
    assert seen[-1] == total and len(seen) >= 3 and seen == sorted(seen)
    counts = await backend.counts()
    assert counts[JobState.DEAD] == 0 and counts[JobState.PENDING] == total + 1


async def test_enqueue_reports_progress_within_one_transaction(
    backend: Any,
) -> None:
    seen: list[int] = []
    jobs = [new(f"j{i}") for i in range(5_000)]
    await backend.enqueue(jobs, now=T0, progress=seen.append)
    assert seen[-1] == 5_000 and seen == sorted(seen) and len(seen) >= 2
    seen.clear()
    from queuectl.exceptions import DuplicateJob

    with pytest.raises(DuplicateJob):
        await backend.enqueue([new("new-1"), new("j1")], now=T0, progress=seen.append)
    assert await backend.get_job("new-1") is None  # still all or nothing


PLANS = {
    "running_jobs": {"limit": 10},
    "finished_since": {"since": 0},
    "next_retry": {},
    "recent_dead": {"limit": 5},
    "ids_by_prefix": {"lo": "a", "hi": "b", "limit": 5},
    "ids_by_prefix_state": {"lo": "a", "hi": "b", "limit": 5, "state": "dead", "scan": 100},
    "requeue_dead_batch": {"now": 0, "after": 0, "upto": 10, "limit": 5},
    # The claim and what an idle worker reads, with the queue settings in them (reference §17).
    "claim_any": {"now": 0, "worker": "w", "lease_until": 0, "limit": 4},
    "claim_queues": {"now": 0, "worker": "w", "lease_until": 0, "limit": 4, "queues": '["a"]'},
    "next_due_any": {},
    "next_due_queues": {"queues": '["a"]'},
    "due_any": {"now": 0},
    "due_queues": {"now": 0, "queues": '["a"]'},
    # queue list and why.
    "due_ahead": {"now": 0, "priority": 0, "seq": 5, "queues": None},
}
#: The claim sorts only what its index walks already cut to :limit rows: the pending
#: and the due-retry candidates, their merge, and the chosen few.
_CLAIM_SORTS = ["USE TEMP B-TREE FOR ORDER BY"] * 4


@pytest.mark.parametrize("name", sorted(PLANS))
async def test_live_reads_never_scan_a_table(sqlite_backend: SqliteBackend, name: str) -> None:
    conn = sqlite3.connect(sqlite_backend.path)
    try:
        plan = conn.execute("EXPLAIN QUERY PLAN " + SQL[name], PLANS[name]).fetchall()
    finally:
        conn.close()
    details = [row[3] for row in plan]
    # "SCAN jobs USING INDEX x" walks an index in order and stops at the LIMIT;
    # a bare "SCAN jobs" reads the whole table.
    scans = [d for d in details if re.match(r"SCAN (jobs|attempts|workers)\b", d)]
    assert all("USING" in d and "INDEX" in d for d in scans), details
    # Sorting is allowed only over rows that are few by nature: the running jobs
    # (at most the worker slots) and a minute of outcomes (grouped). Everything
    # else must come out of its index already in order.
    sorts = [d for d in details if d.startswith("USE TEMP B-TREE")]
    allowed = {"running_jobs": ["USE TEMP B-TREE FOR ORDER BY"]}
    allowed["finished_since"] = ["USE TEMP B-TREE FOR GROUP BY"]
    allowed["claim_any"] = allowed["claim_queues"] = _CLAIM_SORTS
    assert sorts == allowed.get(name, []), details


async def test_overview_and_burst_progress_from_the_queue(db_path: Path) -> None:
    clock = FrozenClock(T0)
    async with Queue.open(str(db_path), clock=clock) as queue:
        await queue.enqueue({"id": "a", "command": "x"}, {"id": "b", "command": "y"})
        start = await queue.counts()
        backend = queue.backend
        assert isinstance(backend, SqliteBackend)
        await run_once(backend, "a", OK, now=T0)
        clock.advance(1)
        view = await queue.overview()
        assert view.counts[JobState.COMPLETED] == 1 and view.counts[JobState.PENDING] == 1
        assert view.finished == {Outcome.COMPLETED: 1} and view.failed_recently == 0
        assert view.running == [] and view.next_retry is None and view.dead == []
        progress = await queue.burst_progress(None, start)
        assert (progress.left, progress.completed, progress.dead, progress.total) == (1, 1, 0, 2)
        assert await queue.ids_for_completion("") == ["a", "b"]
        # A job delayed beyond the drain is not left for a burst: it is later.
        await queue.enqueue({"id": "c", "command": "z", "delay": 60})
        await run_once(backend, "b", OK, now=T0 + 1)
        progress = await queue.burst_progress(None, start)
        assert (progress.left, progress.later, progress.completed, progress.total) == (0, 1, 2, 2)


async def test_burst_progress_counts_jobs_delayed_past_the_drain_as_later(backend: Any) -> None:
    queue = Queue(backend)  # the real clock: PostgreSQL counts delays by the server's
    start = await queue.counts()
    await queue.enqueue(
        {"id": "due", "command": "x"}, {"id": "later", "command": "y", "delay": 3600}
    )
    early = await queue.burst_progress(None, start)
    assert (early.left, early.later) == (2, 0)  # something is due: no telling them apart
    await run_once(backend, "due", OK, now=now_ms())
    done = await queue.burst_progress(None, start)
    assert (done.left, done.later, done.completed, done.total) == (0, 1, 1, 1)


def test_migration_003_upgrades_a_version_2_file(db_path: Path) -> None:
    conn = sqlite3.connect(db_path)
    migrate(conn, target=2)
    conn.execute(
        "INSERT INTO jobs (id, command, state, max_retries, created_at, updated_at)"
        " VALUES ('old', 'x', 'dead', 0, 0, 0)"
    )
    conn.commit()
    assert migrate(conn) == 2
    assert conn.execute("PRAGMA user_version").fetchone()[0] >= 3
    columns = {row[1] for row in conn.execute("PRAGMA table_info(attempts)")}
    assert "slot" in columns
    indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"attempts_finished", "jobs_retry_due", "jobs_dead_recent"} <= indexes
    conn.close()


def _claim_steps(path: Path, sql: str, args: dict[str, object]) -> int:
    """SQLite VM instructions one claim statement runs (rolled back): its work, not its time."""
    conn = sqlite3.connect(path, isolation_level=None)
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.set_progress_handler(count, 100)
        conn.execute(sql, args).fetchall()
        conn.set_progress_handler(None, 0)
        conn.execute("ROLLBACK")
    finally:
        conn.close()
    return steps * 100


async def test_a_paused_backlog_is_never_walked_by_the_claim(
    sqlite_backend: SqliteBackend,
) -> None:
    """Runnable means indexed (DESIGN 17): 20,000 due jobs of a paused queue that sort
    ahead of everything else cost a claim nothing, nor the idle worker's reads."""
    from queuectl.models import NewJob

    backend = sqlite_backend
    other = [NewJob(id=f"q{i}", command="true", max_retries=0, queue="q") for i in range(5)]
    await backend.enqueue(other, now=T0)
    args = {"now": T0, "worker": "w", "lease_until": T0 + 1000, "limit": 2}
    reads = {"next_due_any": {}, "due_any": {"now": T0}}
    before = {
        n: _claim_steps(backend.path, SQL[n], a) for n, a in {"claim_any": args, **reads}.items()
    }
    backlog = [
        NewJob(id=f"p{i}", command="true", max_retries=0, queue="p", priority=9)
        for i in range(20_000)
    ]
    await backend.enqueue(backlog, now=T0)
    await backend.set_paused(["p"], paused=True)
    after = {
        n: _claim_steps(backend.path, SQL[n], a) for n, a in {"claim_any": args, **reads}.items()
    }
    for name, steps in after.items():
        assert steps <= 2 * before[name] + 2000, (name, before[name], steps)
    got = await backend.exchange(worker_id="w", claim=2, now=T0)
    assert [c.job.id for c in got.claims] == ["q0", "q1"]
