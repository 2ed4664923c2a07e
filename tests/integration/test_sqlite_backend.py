"""What only the SQLite store shows, on a real file: claims from several processes, the
trigger-kept counts, recovery callbacks seen from another connection, WAL mode.

Everything both stores promise (ordering, fencing, leases, retries, dead letters,
reads) is in ``test_backend_contract.py``, which runs on this store too.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from queuectl.backends.sqlite import SqliteBackend
from queuectl.exceptions import DuplicateJob
from queuectl.models import (
    Claim,
    ExecutionResult,
    Finish,
    JobState,
    LostAttempt,
)
from tests.conftest import FrozenClock
from tests.helpers import db_counts, db_rows, new_job

LEASE_MS = 10_000


async def claim(
    backend: SqliteBackend,
    now: int,
    *,
    worker: str = "w1",
    n: int = 1,
    queues: list[str] | None = None,
    lease_ms: int = LEASE_MS,
) -> list[Claim]:
    result = await backend.exchange(
        worker_id=worker, claim=n, queues=queues, lease_ms=lease_ms, now=now
    )
    return result.claims


OK = ExecutionResult(exit_code=0)
FAIL = ExecutionResult(exit_code=1)


def test_twenty_concurrent_claimers_claim_each_of_500_jobs_exactly_once(
    db_path: Path,
) -> None:
    """4 processes with 5 connections each, started together through a barrier."""
    import asyncio

    from tests.integration.claimers import claimer_process

    async def fill() -> None:
        backend = await SqliteBackend.open(str(db_path))
        try:
            jobs = [new_job(f"job-{i:03d}", priority=i % 3) for i in range(500)]
            await backend.enqueue(jobs, now=0)
        finally:
            await backend.aclose()

    asyncio.run(fill())
    processes, connections = 4, 5
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes)
    out = ctx.Queue()
    children = [
        ctx.Process(target=claimer_process, args=(str(db_path), i, connections, barrier, out))
        for i in range(processes)
    ]
    for child in children:
        child.start()
    try:
        results = [out.get(timeout=40) for _ in children]
    finally:
        for child in children:
            child.join(timeout=10)
            if child.is_alive():
                child.kill()
                child.join()
    errors = [err for _, _, err in results if err]
    assert not errors, errors
    records = [r for _, recs, _ in results for r in recs]
    per_job = Counter(job_id for job_id, _, _ in records)
    assert len(per_job) == 500
    assert set(per_job.values()) == {1}, [j for j, n in per_job.items() if n > 1]
    assert {token for _, token, _ in records} == {1}
    # The claims really were spread over several processes and connections.
    assert len({w[:2] for _, _, w in records}) >= 2
    assert len({w for _, _, w in records}) >= 5
    assert db_counts(db_path) == {
        "pending": 0,
        "processing": 0,
        "completed": 500,
        "failed": 0,
        "dead": 0,
        "cancelled": 0,
    }
    rows = db_rows(db_path, "SELECT count(*), max(attempt) FROM attempts")
    assert tuple(rows[0]) == (500, 1)


class TestRecoverCallbacks:
    async def test_on_lost_runs_before_the_job_is_visible_again(
        self, sqlite_backend: SqliteBackend, db_path: Path, clock: FrozenClock
    ) -> None:
        t = clock()
        await sqlite_backend.enqueue([new_job("a", next_run_at=t)], now=t)
        await claim(sqlite_backend, t, lease_ms=10)
        seen: list[tuple[str, str]] = []

        def on_lost(item: LostAttempt) -> None:
            # Another connection still sees the job held: nobody can claim it yet.
            [row] = db_rows(db_path, "SELECT state FROM jobs WHERE id = ?", item.job_id)
            seen.append((item.job_id, row[0]))

        await sqlite_backend.recover(now=t + 10, on_lost=on_lost)
        assert seen == [("a", "processing")]
        [row] = db_rows(db_path, "SELECT state FROM jobs WHERE id = 'a'")
        assert row[0] == "failed"

    async def test_a_failing_on_lost_changes_nothing(
        self, sqlite_backend: SqliteBackend, clock: FrozenClock
    ) -> None:
        t = clock()
        await sqlite_backend.enqueue([new_job("a", next_run_at=t)], now=t)
        await claim(sqlite_backend, t, lease_ms=10)

        def on_lost(item: LostAttempt) -> None:
            raise RuntimeError("cannot kill")

        with pytest.raises(RuntimeError):
            await sqlite_backend.recover(now=t + 10, on_lost=on_lost)
        job = await sqlite_backend.get_job("a")
        assert job is not None
        assert job.state is JobState.PROCESSING


async def test_counts_always_match_a_real_group_by(
    sqlite_backend: SqliteBackend, db_path: Path, clock: FrozenClock
) -> None:
    t = clock()

    seen: set[str] = set()

    async def check() -> None:
        kept = {s.value: n for s, n in (await sqlite_backend.counts()).items()}
        assert kept == db_counts(db_path)
        seen.update(state for state, n in kept.items() if n)
        for queue in ("q1", "q2", "nothing-here"):
            kept = {s.value: n for s, n in (await sqlite_backend.counts([queue])).items()}
            rows = db_rows(
                db_path, "SELECT state, count(*) FROM jobs WHERE queue = ? GROUP BY state", queue
            )
            assert {k: v for k, v in kept.items() if v} == dict(map(tuple, rows))

    jobs = [
        new_job(f"j{i}", next_run_at=t, queue=f"q{i % 2 + 1}", max_retries=i % 3) for i in range(30)
    ]
    await sqlite_backend.enqueue(jobs, now=t)
    await check()
    for step in range(8):
        claims = await claim(sqlite_backend, t, n=5, worker=f"w{step}", lease_ms=50)
        await check()
        results = [OK, FAIL, ExecutionResult(interrupted=True, signal=9), FAIL, OK]
        await sqlite_backend.exchange(
            worker_id=f"w{step}",
            finishes=[
                Finish(c.job.id, c.token, c.job.attempts, c.job.max_retries, r)
                for c, r in zip(claims[:3], results, strict=False)
            ],
            now=t,
        )
        await check()
        t += 100  # the rest of the claims lose their lease
        await sqlite_backend.recover(now=t)
        await check()
        if step % 3 == 2:
            await sqlite_backend.requeue_dead(None, now=t)
            await check()
        t += 10_000  # retries fall due
    with pytest.raises(DuplicateJob):
        await sqlite_backend.enqueue([new_job("fresh"), new_job("j0")], now=t)
    await check()
    assert seen == {"pending", "processing", "completed", "failed", "dead"}


def test_the_file_is_in_wal_mode_with_the_queuectl_header(db_path: Path) -> None:
    import asyncio

    asyncio.run(_open_close(db_path))
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA application_id").fetchone()[0] == 0x5143544C
    finally:
        conn.close()


async def _open_close(db_path: Path) -> None:
    backend = await SqliteBackend.open(str(db_path))
    await backend.aclose()


async def test_the_identity_is_the_resolved_file(tmp_path: Path) -> None:
    """``QUEUECTL_STORE`` (reference §4.6): the same file through a symlink is one store."""
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    identities = set()
    for target in (tmp_path / "real" / "q.db", tmp_path / "link" / "q.db"):
        store = await SqliteBackend.open(str(target))
        identities.add(store.identity)
        await store.aclose()
    assert identities == {str((tmp_path / "real" / "q.db").resolve())}
