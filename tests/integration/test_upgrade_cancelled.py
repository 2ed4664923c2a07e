"""Databases made before the sixth state keep working (issue 11, "existing databases").

Each test builds a store with the previous release's schema (SQLite version 6,
PostgreSQL version 2: the migration files of that release, which this release
still ships), fills it with jobs in every state of that time, then opens it with
the current code from several connections at once and checks that every job,
attempt, count and setting came through, and that the new state works on it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from queuectl.backends.postgres_conn import SCHEMA_VERSION as PG_VERSION
from queuectl.backends.postgres_conn import migrate as pg_migrate
from queuectl.backends.postgres_conn import parse_target, settings
from queuectl.backends.sqlite import SCHEMA_VERSION, SqliteBackend, migrate
from queuectl.models import ExecutionResult, Finish, JobState
from tests import pg

T = 1_800_000_000_000
COLUMNS = (
    "id, command, state, queue, priority, attempts, max_retries, timeout_s, env, cwd, run_at,"
    " next_run_at, created_at, updated_at, last_error, exit_code, claims, worker_id, lease_until"
)
#: One job in each of the five states of the previous release, and a second queue.
OLD_JOBS = [
    ("p1", "echo p", "pending", "default", 0, 0, 3, None, None, None, None, T, T, T,
     None, None, 0, None, None),
    ("p2", "echo q", "pending", "mail", 5, 1, 3, 2.5, '{"A": "1"}', "/tmp", T + 9, T + 9, T, T,
     "exit code 1", 1, 1, None, None),
    ("r1", "sleep 9", "processing", "default", 0, 1, 3, None, None, None, None, None, T, T,
     None, None, 1, "w-old", T + 600_000),
    ("c1", "true", "completed", "mail", 0, 1, 3, None, None, None, None, None, T, T + 5,
     None, 0, 1, None, None),
    ("f1", "false", "failed", "default", 0, 1, 3, None, None, None, None, T + 2000, T, T + 5,
     "exit code 1", 1, 1, None, None),
    ("d1", "false", "dead", "mail", 0, 4, 3, None, None, None, None, None, T, T + 5,
     "exit code 1", 1, 4, None, None),
]  # fmt: skip
OLD_COUNTS = {"pending": 2, "processing": 1, "completed": 1, "failed": 1, "dead": 1}


def _old_sqlite_file(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        assert migrate(conn, target=6) == 0
        conn.execute("BEGIN")
        conn.executemany(f"INSERT INTO jobs ({COLUMNS}) VALUES ({', '.join('?' * 19)})", OLD_JOBS)
        # A purged job: its seq must never be handed out again.
        conn.execute(
            "INSERT INTO jobs (id, command, state, max_retries, created_at, updated_at)"
            " VALUES ('gone', 'x', 'completed', 3, 0, 0)"
        )
        conn.execute("DELETE FROM jobs WHERE id = 'gone'")
        # Version 5 counts inserts per batch in the code, not by a trigger.
        for (queue, state), n in _per_queue().items():
            conn.execute("INSERT INTO job_counts VALUES (?, ?, ?)", (queue, state, n))
        conn.execute(
            "INSERT INTO attempts (job_id, attempt, worker_id, started_at, finished_at, outcome,"
            " exit_code, output, output_size) VALUES ('c1', 1, 'w', ?, ?, 'completed', 0, ?, 3)",
            (T, T + 5, b"ok\n"),
        )
        conn.execute(
            "INSERT INTO attempts (job_id, attempt, worker_id, started_at) VALUES ('r1', 1,"
            " 'w-old', ?)",
            (T,),
        )
        conn.execute("INSERT INTO config VALUES ('max_retries', '1')")
        conn.execute("COMMIT")
    finally:
        conn.close()


def _per_queue() -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for row in OLD_JOBS:
        key = (row[3], row[2])
        counts[key] = counts.get(key, 0) + 1
    return counts


def _rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return [tuple(r) for r in conn.execute(sql)]
    finally:
        conn.close()


async def _check_upgraded(backend: Any, rows: list[tuple[Any, ...]]) -> None:
    """What every store must show after the upgrade."""
    assert sorted(rows) == sorted(OLD_JOBS)
    counts = {s.value: n for s, n in (await backend.counts()).items()}
    assert counts == {**OLD_COUNTS, "cancelled": 0}
    mail = await backend.counts(["mail"])
    assert (mail[JobState.PENDING], mail[JobState.COMPLETED], mail[JobState.DEAD]) == (1, 1, 1)
    out = await backend.attempt_output("c1", None)
    assert out is not None and out.output == b"ok\n"
    assert await backend.get_config() == {"max_retries": "1"}
    for job in await backend.list_jobs(limit=0):
        assert job.cancel_requested_at is None
    # The job that was running under the old code is finished by its worker as before.
    r1 = await backend.get_job("r1")
    done = await backend.exchange(
        worker_id="w-old",
        finishes=[Finish("r1", 1, 1, 3, ExecutionResult(exit_code=0))],
        now=T + 10,
    )
    assert [(f.held, f.state) for f in done.finished] == [(True, JobState.COMPLETED)]
    assert r1 is not None and r1.state is JobState.PROCESSING


async def test_a_version_6_sqlite_file_opened_by_many_at_once_keeps_everything(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    _old_sqlite_file(path)
    before = _rows(path, f"SELECT {COLUMNS} FROM jobs")
    backends = await asyncio.gather(*(SqliteBackend.open(str(path)) for _ in range(6)))
    try:
        assert _rows(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
        assert _rows(path, "PRAGMA integrity_check") == [("ok",)]
        after = _rows(path, f"SELECT {COLUMNS} FROM jobs")
        assert sorted(after) == sorted(before)
        await _check_upgraded(backends[0], after)
        # seq survived the rebuild: order, values and the AUTOINCREMENT high-water mark.
        assert _rows(path, "SELECT id FROM jobs ORDER BY seq") == [(r[0],) for r in OLD_JOBS]
        assert _rows(path, "SELECT seq FROM sqlite_sequence WHERE name = 'jobs'") == [(7,)]
        indexes = {r[0] for r in _rows(path, "SELECT name FROM sqlite_master WHERE type='index'")}
        assert {"jobs_claim_pending", "jobs_retry_due", "jobs_finished"} <= indexes
        triggers = {
            r[0] for r in _rows(path, "SELECT name FROM sqlite_master WHERE type='trigger'")
        }
        assert {"jobs_claimed", "jobs_count_update", "jobs_count_delete"} <= triggers
        # The claim trigger still opens attempts, and the new state is accepted and counted.
        claimed = await backends[1].exchange(worker_id="w", claim=5, now=T + 10_000)
        assert {c.job.id for c in claimed.claims} == {"p1", "p2", "f1"}
        assert _rows(path, "SELECT count(*) FROM attempts WHERE job_id = 'p2'") == [(1,)]
        conn = sqlite3.connect(path)
        conn.execute("UPDATE jobs SET state = 'cancelled' WHERE id = 'd1'")
        conn.commit()
        conn.close()
        assert (await backends[2].counts())[JobState.CANCELLED] == 1
        new = await backends[3].enqueue([], now=T)
        assert new == []
    finally:
        for backend in backends:
            await backend.aclose()


async def _old_pg_schema(target: Any) -> None:
    import asyncpg

    conn = await asyncpg.connect(target.dsn, server_settings=settings(target.schema))
    try:
        await pg_migrate(conn, target, upto=2)
        await conn.executemany(
            f"INSERT INTO jobs ({COLUMNS}) VALUES ({', '.join(f'${i}' for i in range(1, 20))})",
            OLD_JOBS,
        )
        await conn.execute(
            "INSERT INTO attempts (job_id, attempt, worker_id, started_at, finished_at, outcome,"
            " exit_code, output, output_size) VALUES ('c1', 1, 'w', $1, $2, 'completed', 0,"
            " $3, 3)",
            T,
            T + 5,
            b"ok\n",
        )
        await conn.execute(
            "INSERT INTO attempts (job_id, attempt, worker_id, started_at)"
            " VALUES ('r1', 1, 'w-old', $1)",
            T,
        )
        await conn.execute("INSERT INTO config VALUES ('max_retries', '1')")
    finally:
        await conn.close()


async def test_a_version_2_postgres_schema_opened_by_many_at_once_keeps_everything(
    pg_url: str, pg_schema: pg.Schema
) -> None:
    from queuectl.backends.postgres import PostgresBackend

    target = parse_target(pg_url)
    pg.run_sync(_old_pg_schema, target)
    stores = await asyncio.gather(
        *(PostgresBackend.open(pg_url, caller_clock=True) for _ in range(6))
    )
    try:
        versions = pg_schema.fetch("SELECT version FROM schema_version ORDER BY version")
        assert [r["version"] for r in versions] == list(range(1, PG_VERSION + 1))
        rows = [tuple(r) for r in pg_schema.fetch(f"SELECT {COLUMNS} FROM jobs")]
        await _check_upgraded(stores[0], rows)
        claimed = await stores[1].exchange(worker_id="w", claim=5, now=T + 10_000)
        assert {c.job.id for c in claimed.claims} == {"p1", "p2", "f1"}
        pg_schema.execute("UPDATE jobs SET state = 'cancelled' WHERE id = 'd1'")
        assert (await stores[2].counts())[JobState.CANCELLED] == 1
    finally:
        for store in stores:
            await store.aclose()
