"""Schema versions: old files are migrated in place; foreign and newer files are refused."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from queuectl.backends.sqlite import APPLICATION_ID, SCHEMA_VERSION, SqliteBackend, migrate
from queuectl.exceptions import NotAQueueDatabase, SchemaTooNew
from queuectl.models import JobState
from tests.helpers import db_counts

T = 1_800_000_000_000


def _header(path: Path) -> tuple[int, int]:
    conn = sqlite3.connect(path)
    try:
        return (
            conn.execute("PRAGMA application_id").fetchone()[0],
            conn.execute("PRAGMA user_version").fetchone()[0],
        )
    finally:
        conn.close()


def _version_1_file(path: Path) -> None:
    """A file as queuectl with schema version 1 left it, holding jobs in several states."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        assert migrate(conn, target=1) == 0
        rows = [
            ("p1", "echo p1", "pending", "default", 0, 0, 3, None, None, None, None, T, T, 0),
            ("p2", "echo p2", "pending", "emails", 5, 0, 1, 2.5, '{"A":"1"}', "/tmp", T, T, T, 0),
            ("c1", "true", "completed", "default", 0, 1, 3, None, None, None, None, None, T, 1),
            ("d1", "false", "dead", "emails", 0, 2, 1, None, None, None, None, None, T, 2),
        ]
        conn.executemany(
            "INSERT INTO jobs (id, command, state, queue, priority, attempts, max_retries,"
            " timeout_s, env, cwd, run_at, next_run_at, created_at, claims, updated_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [(*r, T) for r in rows],
        )
        conn.execute(
            "INSERT INTO attempts (job_id, attempt, worker_id, started_at, finished_at, outcome,"
            " exit_code, output, output_size) VALUES ('c1', 1, 'w', ?, ?, 'completed', 0, ?, 3)",
            (T, T + 5, b"ok\n"),
        )
        conn.execute("INSERT INTO config (key, value) VALUES ('max_retries', '1')")
    finally:
        conn.close()


def test_migrate_to_version_one_builds_the_first_schema(db_path: Path) -> None:
    _version_1_file(db_path)
    assert _header(db_path) == (APPLICATION_ID, 1)
    conn = sqlite3.connect(db_path)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()
    assert {"jobs", "attempts", "workers", "config"} <= tables
    assert "job_counts" not in tables


async def test_a_version_one_file_is_migrated_in_place_with_its_data(db_path: Path) -> None:
    assert SCHEMA_VERSION > 1
    _version_1_file(db_path)
    backend = await SqliteBackend.open(str(db_path))
    try:
        assert _header(db_path) == (APPLICATION_ID, SCHEMA_VERSION)
        p2 = await backend.get_job("p2")
        assert p2 is not None
        assert (p2.command, p2.state, p2.queue, p2.priority, p2.max_retries) == (
            "echo p2",
            JobState.PENDING,
            "emails",
            5,
            1,
        )
        assert (p2.timeout_s, p2.env, p2.cwd, p2.run_at, p2.next_run_at) == (
            2.5,
            {"A": "1"},
            "/tmp",
            T,
            T,
        )
        assert [j.id for j in await backend.list_jobs(limit=0)] == ["d1", "c1", "p2", "p1"]
        # The counts table added by version 2 starts from the jobs already there.
        counts = {s.value: n for s, n in (await backend.counts()).items()}
        assert counts == db_counts(db_path)
        assert counts == {
            "pending": 2,
            "processing": 0,
            "completed": 1,
            "failed": 0,
            "dead": 1,
            "cancelled": 0,
        }
        emails = await backend.counts(["emails"])
        assert (emails[JobState.PENDING], emails[JobState.DEAD]) == (1, 1)
        out = await backend.attempt_output("c1", None)
        assert out is not None
        assert out.output == b"ok\n"
        assert await backend.get_config() == {"max_retries": "1"}
        # And it keeps working: a claim, counted by the new triggers.
        result = await backend.exchange(worker_id="w", claim=1, now=T)
        assert [c.job.id for c in result.claims] == ["p2"]
        assert (await backend.counts())[JobState.PROCESSING] == 1
    finally:
        await backend.aclose()


async def test_opening_a_current_file_again_changes_nothing(db_path: Path) -> None:
    backend = await SqliteBackend.open(str(db_path))
    await backend.aclose()
    before = db_path.read_bytes()
    backend = await SqliteBackend.open(str(db_path))
    await backend.aclose()
    assert db_path.read_bytes() == before
    assert _header(db_path) == (APPLICATION_ID, SCHEMA_VERSION)


async def test_several_connections_opening_an_old_file_together_migrate_it_once(
    db_path: Path,
) -> None:
    import asyncio

    _version_1_file(db_path)
    backends = await asyncio.gather(*(SqliteBackend.open(str(db_path)) for _ in range(6)))
    try:
        assert _header(db_path) == (APPLICATION_ID, SCHEMA_VERSION)
        for backend in backends:
            counts = await backend.counts()
            assert (counts[JobState.PENDING], counts[JobState.COMPLETED]) == (2, 1)
    finally:
        for backend in backends:
            await backend.aclose()


def test_migrate_twice_is_a_no_op(db_path: Path) -> None:
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        assert migrate(conn) == 0
        assert migrate(conn) == SCHEMA_VERSION
    finally:
        conn.close()


async def test_a_foreign_sqlite_file_is_refused_untouched(db_path: Path) -> None:
    conn = sqlite3.connect(db_path)
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.execute("INSERT INTO notes VALUES ('mine')")
    conn.commit()
    conn.close()
    before = db_path.read_bytes()
    with pytest.raises(NotAQueueDatabase, match="not a queuectl database"):
        await SqliteBackend.open(str(db_path))
    assert db_path.read_bytes() == before
    assert not Path(f"{db_path}-wal").exists()


async def test_a_newer_schema_is_refused_untouched(db_path: Path) -> None:
    backend = await SqliteBackend.open(str(db_path))
    await backend.aclose()
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    before = db_path.read_bytes()
    with pytest.raises(SchemaTooNew, match=f"schema version {SCHEMA_VERSION + 1}"):
        await SqliteBackend.open(str(db_path))
    assert db_path.read_bytes() == before
    assert _header(db_path) == (APPLICATION_ID, SCHEMA_VERSION + 1)


async def test_a_file_that_is_not_a_database_is_refused_untouched(db_path: Path) -> None:
    db_path.write_bytes(b"just some notes, not SQLite\n" * 100)
    before = db_path.read_bytes()
    with pytest.raises(NotAQueueDatabase):
        await SqliteBackend.open(str(db_path))
    assert db_path.read_bytes() == before


async def test_missing_parent_folders_are_created(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "q.db"
    backend = await SqliteBackend.open(str(target))
    await backend.aclose()
    assert _header(target) == (APPLICATION_ID, SCHEMA_VERSION)


#: Attempts a store held before it kept counters: (job, state, claims, attempt, outcome,
#: duration ms). d1 died on its second attempt; r1 waits for a retry.
SEEDED = [
    ("c1", "completed", 1, 1, "completed", 5),
    ("d1", "dead", 2, 1, "failed", 30),
    ("d1", "dead", 2, 2, "timed_out", 7_200_000),
    ("r1", "failed", 2, 1, "lost", 5_001),
    ("r1", "failed", 2, 2, "spawn_failed", 0),
]
SEEDED_COUNTS = {"default": {"completed": 1, "failed": 2, "dead": 1, "lost": 1}}
SEEDED_BUCKETS = {"default": {10: 2, 50: 1, 10_000: 1, 1 << 62: 1}}
#: The chart's minutes (attempts of the last two hours; these are in the future).
SEEDED_MINUTES = [
    (T, "completed", 1),
    (T, "failed", 1),
    (T, "lost", 1),
    (T, "spawn_failed", 1),
    (T + 7_200_000, "timed_out", 1),
]


async def test_the_counters_are_seeded_from_the_attempts_already_kept(db_path: Path) -> None:
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        assert migrate(conn, target=6) == 0
        for job_id, state, claims in {(r[0], r[1], r[2]) for r in SEEDED}:
            conn.execute(
                "INSERT INTO jobs (id, command, state, max_retries, created_at, updated_at,"
                " claims, attempts) VALUES (?, 'x', ?, 1, ?, ?, ?, ?)",
                (job_id, state, T, T, claims, claims),
            )
        conn.executemany(
            "INSERT INTO attempts (job_id, attempt, worker_id, started_at, finished_at, outcome)"
            " VALUES (?, ?, 'w', ?, ?, ?)",
            [(r[0], r[3], T, T + r[5], r[4]) for r in SEEDED],
        )
    finally:
        conn.close()
    backend = await SqliteBackend.open(str(db_path))
    try:
        totals = await backend.finished_totals()
        minutes = sorted((m, o.value, n) for m, o, n in await backend.finished_by_minute(0))
    finally:
        await backend.aclose()
    assert minutes == SEEDED_MINUTES
    assert totals.counts == SEEDED_COUNTS
    assert totals.buckets == SEEDED_BUCKETS
    assert totals.sum_ms == {"default": sum(r[5] for r in SEEDED)}


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_the_seeding_migrations_use_the_buckets_of_bookkeeping(dialect: str) -> None:
    from queuectl.backends.bookkeeping import BUCKETS_MS, DURATION_BOUNDS_MS
    from queuectl.sql import migrations

    [script] = [text for _, text in migrations(dialect) if "CREATE TABLE duration_buckets" in text]
    listed = re.search(r"'[\[{]([\d,\s]+)[\]}]'", script)
    assert listed is not None
    bounds = tuple(int(b) for b in listed.group(1).replace("\n", "").split(","))
    assert bounds in (DURATION_BOUNDS_MS, BUCKETS_MS)


async def test_the_counters_move_into_one_table_unchanged(db_path: Path) -> None:
    """Version 13 folds the three counter tables into ``counters``; a queue named
    like a number stays a text name."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        assert migrate(conn, target=12) == 0
        conn.executemany(
            "INSERT INTO finished_counts (queue, outcome, n) VALUES (?, ?, ?)",
            [("default", "completed", 7), ("10", "dead", 2)],
        )
        conn.executemany(
            "INSERT INTO duration_buckets (queue, le_ms, n, sum_ms) VALUES (?, ?, ?, ?)",
            [("default", 10, 7, 21), ("10", 1 << 62, 2, 9_000_000)],
        )
        conn.execute(
            "INSERT INTO finished_minutes (minute, outcome, n) VALUES (?, 'failed', 3)", (T,)
        )
    finally:
        conn.close()
    backend = await SqliteBackend.open(str(db_path))
    try:
        totals = await backend.finished_totals()
        minutes = await backend.finished_by_minute(0)
    finally:
        await backend.aclose()
    assert totals.counts == {"default": {"completed": 7}, "10": {"dead": 2}}
    assert totals.buckets == {"default": {10: 7}, "10": {1 << 62: 2}}
    assert totals.sum_ms == {"default": 21, "10": 9_000_000}
    assert [(m, o.value, n) for m, o, n in minutes] == [(T, "failed", 3)]
    tables = {r[0] for r in sqlite3.connect(db_path).execute("SELECT name FROM sqlite_master")}
    assert "counters" in tables and not tables & {"finished_counts", "finished_minutes"}
