"""What only the PostgreSQL store does: the server's clock, migrations under an
advisory lock, SKIP LOCKED claims, NOTIFY wake-ups, and connection errors."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from typing import Any

import pytest

from queuectl.backends import open_backend
from queuectl.backends.postgres import BUCKETS, SQL, PostgresBackend
from queuectl.backends.postgres_conn import MIGRATIONS, migrate, parse_target
from queuectl.clock import now_ms
from queuectl.exceptions import BackendError, NotAQueueDatabase
from queuectl.models import ExecutionResult, Finish, JobState, NewJob, WorkerInfo
from tests import pg
from tests.helpers import QUEUECTL, cli_env

pytestmark = pytest.mark.postgres

HOUR_MS = 3_600_000


def job(job_id: str, now: int, **fields: Any) -> NewJob:
    fields.setdefault("next_run_at", now)
    return NewJob(id=job_id, command="true", max_retries=fields.pop("max_retries", 3), **fields)


@pytest.fixture
async def pgstore(pg_url: str) -> Any:
    """The store as users get it: times on the server's clock."""
    opened = await PostgresBackend.open(pg_url)
    try:
        yield opened
    finally:
        await opened.aclose()


class TestServerClock:
    async def test_a_skewed_host_can_neither_expire_a_lease_early_nor_delay_a_job(
        self, pgstore: PostgresBackend, pg_url: str
    ) -> None:
        ahead = now_ms() + HOUR_MS  # a host whose clock is an hour fast
        behind = now_ms() - HOUR_MS
        # Enqueued "now" by a host an hour behind: due now, not in an hour.
        await pgstore.enqueue([job("a", behind)], now=behind)
        other = await PostgresBackend.open(pg_url)
        try:
            got = await other.exchange(worker_id="w1", claim=1, lease_ms=60_000, now=behind)
            [claim] = got.claims
            # The fast host's reaper sees nothing expired: the lease is on the server's clock.
            assert await pgstore.recover(now=ahead + 10 * HOUR_MS) == []
            assert (await pgstore.get_job("a")).state is JobState.PROCESSING
            # The lease's end comes back on the caller's clock: about a minute from its now.
            assert behind + 50_000 < claim.lease_until <= behind + 60_000
        finally:
            await other.aclose()

    async def test_times_for_timers_come_back_on_the_callers_clock(
        self, pgstore: PostgresBackend
    ) -> None:
        caller = now_ms() + 5 * HOUR_MS  # a host five hours fast
        delayed = job(
            "later", caller, run_at=caller + 30_000, next_run_at=caller + 30_000, delay_ms=30_000
        )
        returned, _ = await pgstore.enqueue([delayed, job("now", caller)], now=caller)
        later = await pgstore.get_job("later")
        # The delay counts from the server's now, not from the fast host's.
        assert abs(later.next_run_at - (now_ms() + 30_000)) < 10_000
        assert later.run_at == later.next_run_at == later.created_at + 30_000
        assert returned.next_run_at == later.next_run_at
        # A job due when the fast host enqueued it is due now.
        got = await pgstore.exchange(worker_id="w", claim=2, now=caller)
        assert [c.job.id for c in got.claims] == ["now"]
        assert caller + 20_000 < got.next_due_at <= caller + 30_000

    async def test_a_start_given_as_a_time_is_kept_exactly(self, pgstore: PostgresBackend) -> None:
        at = 1_950_000_000_123
        await pgstore.enqueue([job("at", 0, run_at=at, next_run_at=at)], now=now_ms())
        stored = await pgstore.get_job("at")
        assert (stored.run_at, stored.next_run_at) == (at, at)

    async def test_worker_heartbeats_read_back_on_this_hosts_clock(
        self, pgstore: PostgresBackend
    ) -> None:
        skewed = now_ms() - 2 * HOUR_MS
        await pgstore.register_worker(WorkerInfo("w", "h", 1, skewed, skewed, 1, 0), now=skewed)
        [w] = await pgstore.list_workers()
        assert abs(w.heartbeat_at - now_ms()) < 10_000
        assert abs(w.started_at - now_ms()) < 10_000

    async def test_a_retry_delay_is_counted_on_the_server(self, pgstore: PostgresBackend) -> None:
        caller = now_ms() - HOUR_MS
        await pgstore.enqueue([job("f", caller)], now=caller)
        [c] = (await pgstore.exchange(worker_id="w", claim=1, now=caller)).claims
        failed = ExecutionResult(exit_code=1)
        done = await pgstore.exchange(
            worker_id="w", finishes=[Finish("f", c.token, 1, 3, failed)], now=caller
        )
        assert done.finished[0].next_run_at == caller + 2000
        stored = await pgstore.get_job("f")
        assert abs(stored.next_run_at - (now_ms() + 2000)) < 10_000


class TestClaims:
    async def test_a_claim_skips_rows_another_transaction_holds_instead_of_waiting(
        self, pg_url: str, pg_schema: pg.Schema
    ) -> None:
        store = await PostgresBackend.open(pg_url, caller_clock=True)
        try:
            await store.enqueue([job("held", 1000), job("free", 1000)], now=1000)
            async with store._conn() as conn, conn.transaction():
                await conn.execute("SELECT 1 FROM jobs WHERE id = 'held' FOR UPDATE")
                got = await asyncio.wait_for(
                    store.exchange(worker_id="w", claim=2, now=1000), timeout=10
                )
                assert [c.job.id for c in got.claims] == ["free"]
        finally:
            await store.aclose()

    async def test_counts_stay_right_when_their_deltas_are_folded(
        self, pgstore: PostgresBackend, pg_schema: pg.Schema
    ) -> None:
        now = now_ms()
        for i in range(30):
            await pgstore.enqueue([job(f"j{i}", now, queue=f"q{i % 3}")], now=now)
        for _ in range(5):
            await pgstore.exchange(worker_id="w", claim=2, now=now)
        before = await pgstore.counts()
        rows_before = pg_schema.fetch("SELECT count(*) AS n FROM job_counts")[0]["n"]
        async with pgstore._conn() as conn:
            await conn.execute(
                "WITH gone AS (DELETE FROM job_counts RETURNING queue, state, n) "
                "INSERT INTO job_counts SELECT queue, state, sum(n) FROM gone "
                "GROUP BY queue, state HAVING sum(n) <> 0"
            )
        rows_after = pg_schema.fetch("SELECT count(*) AS n FROM job_counts")[0]["n"]
        assert rows_after < rows_before
        assert await pgstore.counts() == before
        assert (before[JobState.PENDING], before[JobState.PROCESSING]) == (20, 10)
        assert (await pgstore.counts(["q0"]))[JobState.PENDING] + (await pgstore.counts(["q0"]))[
            JobState.PROCESSING
        ] == 10


PLANS = {
    "running_jobs": {"limit": 10},
    "finished_since": {"since": 0},
    "next_retry": {},
    "recent_dead": {"limit": 5},
    "ids_by_prefix": {"lo": "a", "hi": "b", "limit": 5},
    "ids_by_prefix_state": {"lo": "a", "hi": "b", "limit": 5, "state": "dead", "scan": 100},
    "requeue_dead_batch": {"clock": None, "after": 0, "upto": 10, "limit": 5},
    "list_by_state": {"state": "dead", "limit": 50},
    "probe": {"clock": None, "queues": None},
    "stray_attempts": {"host": "h", "clock": None},
    "due_ahead": {"id": "x", "clock": None, "queues": None},
}


@pytest.mark.parametrize("name", sorted(PLANS))
async def test_reads_on_every_refresh_can_use_an_index(pgstore: PostgresBackend, name: str) -> None:
    """With sequential scans priced out, no plan may still need one on the big tables."""
    query = SQL[name]
    async with pgstore._conn() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        rows = await conn.fetch("EXPLAIN " + query.text, *query.args(PLANS[name]))
    plan = "\n".join(r[0] for r in rows)
    assert not re.search(r"Seq Scan on (jobs|attempts)\b", plan), plan


@pytest.mark.parametrize("settings", [False, True])
async def test_the_claim_walks_its_index_and_checks_due_times_there(
    pgstore: PostgresBackend, settings: bool
) -> None:
    """Jobs waiting for a retry are passed over in the index, without a heap visit each;
    with queues paused and limited too (their rows are read, not the jobs)."""
    from queuectl.backends.postgres_rows import finish_columns, start_columns

    if settings:
        await pgstore.set_paused(["p"], paused=True)
        await pgstore.set_limit("l", 2)

    values = {
        "clock": None,
        "worker": "w",
        "limit": 1,
        "queues": None,
        "lease_ms": 1000,
        "channel": pgstore.channel,
        "why": "",
        "config": None,
        "buckets": BUCKETS,
        **start_columns([], []),
        **finish_columns([], []),
    }
    query = SQL["exchange"]
    async with pgstore._conn() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        rows = await conn.fetch("EXPLAIN " + query.text, *query.args(values))
    plan = "\n".join(r[0] for r in rows)
    assert re.search(
        r"Index Scan using jobs_runnable on jobs \w+.*\n"
        r"\s+Index Cond: \(\(queue = o\.queue\) AND \(next_run_at <=",
        plan,
    ), plan


class TestMigrations:
    async def test_many_stores_opening_a_new_schema_at_once_migrate_it_once(
        self, pg_url: str, pg_schema: pg.Schema
    ) -> None:
        stores = await asyncio.gather(*(PostgresBackend.open(pg_url) for _ in range(6)))
        for s in stores:
            await s.aclose()
        rows = pg_schema.fetch("SELECT version FROM schema_version ORDER BY version")
        assert [r["version"] for r in rows] == [number for number, _ in MIGRATIONS]

    async def test_an_older_schema_is_migrated_in_place_keeping_its_jobs(
        self, pg_url: str, pg_schema: pg.Schema
    ) -> None:
        target = parse_target(pg_url)
        pg.run_sync(_migrate_to, target, 1)
        pg_schema.execute(
            "INSERT INTO jobs (id, command, state, max_retries, next_run_at, created_at,"
            " updated_at) VALUES ('old', 'true', 'pending', 3, 0, 0, 0),"
            " ('done', 'true', 'completed', 3, NULL, 0, 0)"
        )
        store = await PostgresBackend.open(pg_url)
        try:
            counts = await store.counts()
            assert (counts[JobState.PENDING], counts[JobState.COMPLETED]) == (1, 1)
            assert (await store.get_job("old")).state is JobState.PENDING
        finally:
            await store.aclose()

    async def test_a_schema_holding_other_tables_is_refused_and_untouched(
        self, pg_url: str, pg_schema: pg.Schema
    ) -> None:
        pg.run_sync(pg._execute, pg_schema.server, f'CREATE SCHEMA "{pg_schema.name}"')
        pg_schema.execute("CREATE TABLE jobs (whatever int)")
        with pytest.raises(NotAQueueDatabase, match="not queuectl's"):
            await PostgresBackend.open(pg_url)
        tables = pg_schema.fetch(
            f"SELECT tablename FROM pg_tables WHERE schemaname = '{pg_schema.name}'"
        )
        assert [t["tablename"] for t in tables] == ["jobs"]


async def _migrate_to(target: Any, version: int) -> None:
    import asyncpg

    from queuectl.backends.postgres_conn import settings

    conn = await asyncpg.connect(target.dsn, server_settings=settings(target.schema))
    try:
        await migrate(conn, target, upto=version)
    finally:
        await conn.close()


async def test_the_counters_are_seeded_from_the_attempts_already_kept(pg_url: str) -> None:
    import asyncpg

    from queuectl.backends.postgres_conn import settings
    from tests.integration.test_sqlite_migrations import (
        SEEDED,
        SEEDED_BUCKETS,
        SEEDED_COUNTS,
        SEEDED_MINUTES,
    )

    target = parse_target(pg_url)
    await _migrate_to(target, 2)
    t = 1_800_000_000_000
    conn = await asyncpg.connect(target.dsn, server_settings=settings(target.schema))
    try:
        for job_id, state, claims in sorted({(r[0], r[1], r[2]) for r in SEEDED}):
            await conn.execute(
                "INSERT INTO jobs (id, command, state, max_retries, created_at, updated_at,"
                " claims, attempts) VALUES ($1, 'x', $2, 1, $3, $3, $4, $4)",
                job_id,
                state,
                t,
                claims,
            )
        await conn.executemany(
            "INSERT INTO attempts (job_id, attempt, worker_id, started_at, finished_at, outcome)"
            " VALUES ($1, $2, 'w', $3, $4, $5)",
            [(r[0], r[3], t, t + r[5], r[4]) for r in SEEDED],
        )
    finally:
        await conn.close()
    backend = await PostgresBackend.open(pg_url)
    try:
        totals = await backend.finished_totals()
        minutes = sorted((m, o.value, n) for m, o, n in await backend.finished_by_minute(0))
    finally:
        await backend.aclose()
    assert minutes == SEEDED_MINUTES
    assert totals.counts == SEEDED_COUNTS
    assert totals.buckets == SEEDED_BUCKETS
    assert totals.sum_ms == {"default": sum(r[5] for r in SEEDED)}


class TestWakeUps:
    async def test_a_notify_reaches_every_listener_and_survives_a_lost_connection(
        self, pg_url: str
    ) -> None:
        listener = await PostgresBackend.open(pg_url)
        sender = await PostgresBackend.open(pg_url)
        got: asyncio.Queue[bytes] = asyncio.Queue()
        try:
            await listener.subscribe("w1", got.put_nowait)
            assert await asyncio.wait_for(got.get(), 10) == b"j"  # "look once" on connect
            await sender.notify(b"j")
            assert await asyncio.wait_for(got.get(), 10) == b"j"
            await sender.notify(b"s")
            assert await asyncio.wait_for(got.get(), 10) == b"s"
            # The server drops the LISTEN connection; the next slow poll reopens it.
            async with sender._conn() as conn:
                killed = await conn.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE query LIKE 'LISTEN %' AND pid <> pg_backend_pid()"
                    " AND query LIKE $1",
                    f"%{listener.channel}%",
                )
            assert killed == 1
            await _wait_closed(listener)
            await listener.probe(queues=None, now=now_ms())
            assert await asyncio.wait_for(got.get(), 10) == b"j"
            await sender.notify(b"s")
            assert await asyncio.wait_for(got.get(), 10) == b"s"
        finally:
            await listener.aclose()
            await sender.aclose()

    async def test_queues_in_other_schemas_do_not_wake_each_other(self, pg_url: str) -> None:
        other = pg.Schema(pg.require())
        mine = await PostgresBackend.open(pg_url)
        theirs = await PostgresBackend.open(other.url)
        got: list[bytes] = []
        try:
            await mine.subscribe("w1", got.append)
            got.clear()
            await theirs.notify(b"j")
            await mine.notify(b"s")
            for _ in range(200):
                if got:
                    break
                await asyncio.sleep(0.05)
            assert got == [b"s"]
        finally:
            await mine.aclose()
            await theirs.aclose()
            other.drop()


async def _wait_closed(store: PostgresBackend) -> None:
    listener = store._listener
    assert listener is not None
    for _ in range(200):
        if listener._conn is None or listener._conn.is_closed():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the LISTEN connection was not closed")


class TestErrors:
    @pytest.mark.parametrize(
        ("url", "message"),
        [
            (
                "postgresql://postgres@127.0.0.1:1/test",
                "cannot connect to PostgreSQL at 127.0.0.1:1: connection refused",
            ),
            ("postgresql://no_such_role_q@127.0.0.1:5432/test", "refused the login"),
            ("postgresql://postgres@127.0.0.1:5432/no_such_db_q", "does not exist"),
            ("postgresql://postgres@127.0.0.1:5432/test?schema=bad-name", "invalid schema name"),
        ],
    )
    async def test_unusable_targets_give_one_clear_error(self, url: str, message: str) -> None:
        pg.require()
        with pytest.raises(BackendError, match=message):
            await open_backend(url)

    def test_the_cli_prints_one_error_line_when_the_server_is_unreachable(self) -> None:
        url = "postgresql://postgres:secret@127.0.0.1:1/test"
        result = subprocess.run(
            [QUEUECTL, "--db", url, "status"],
            capture_output=True,
            text=True,
            env=cli_env(url),
            timeout=30,
        )
        assert result.returncode == 1
        assert result.stderr.startswith("Error: cannot connect to PostgreSQL at 127.0.0.1:1")
        assert len(result.stderr.splitlines()) == 1
        assert "secret" not in result.stderr

    def test_a_missing_extra_is_named(self, tmp_path: Any) -> None:
        # asyncpg cannot be uninstalled for one test; hiding it has the same effect.
        script = (
            "import sys; sys.modules['asyncpg'] = None; sys.argv[0] = 'queuectl';"
            "from queuectl.cli import main; main()"
        )
        url = "postgresql://postgres@127.0.0.1:5432/test"
        result = subprocess.run(
            [sys.executable, "-c", script, "--db", url, "status"],
            capture_output=True,
            text=True,
            env=cli_env(url),
            timeout=30,
        )
        assert result.returncode == 1
        assert result.stderr == (
            "Error: the PostgreSQL store needs the extra: pip install 'queuectl[postgres]'\n"
        )


async def _blocks(pgstore: PostgresBackend, name: str, values: dict[str, Any]) -> int:
    """Buffers one statement touches (run, then rolled back): its work, not its time."""
    import json

    query = SQL[name]
    async with pgstore._conn() as conn:
        tr = conn.transaction()
        await tr.start()
        try:
            rows = await conn.fetch(
                "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + query.text, *query.args(values)
            )
        finally:
            await tr.rollback()
    plan = json.loads(rows[0][0])[0]["Plan"]
    return int(plan["Shared Hit Blocks"]) + int(plan["Shared Read Blocks"])


async def test_a_paused_backlog_is_never_walked_by_the_claim(pgstore: PostgresBackend) -> None:
    """Runnable means indexed (DESIGN 17): 20,000 due jobs of a paused queue that sort
    ahead of everything else cost a claim nothing, nor the idle worker's poll."""
    from queuectl.backends.postgres_rows import finish_columns, start_columns

    now = now_ms()
    jobs = [NewJob(id=f"q{i}", command="true", max_retries=0, queue="q") for i in range(5)]
    await pgstore.enqueue(jobs, now=now)
    claim = {
        "clock": None,
        "worker": "w",
        "limit": 2,
        "queues": None,
        "lease_ms": 1000,
        "channel": pgstore.channel,
        "why": "",
        "config": None,
        "buckets": BUCKETS,
        **start_columns([], []),
        **finish_columns([], []),
    }
    probe = {"clock": None, "queues": None}
    before = (await _blocks(pgstore, "exchange", claim), await _blocks(pgstore, "probe", probe))
    backlog = [
        NewJob(id=f"p{i}", command="true", max_retries=0, queue="p", priority=9)
        for i in range(20_000)
    ]
    await pgstore.enqueue(backlog, now=now)
    await pgstore.set_paused(["p"], paused=True)
    async with pgstore._conn() as conn:
        await conn.execute("ANALYZE jobs")
    after = (await _blocks(pgstore, "exchange", claim), await _blocks(pgstore, "probe", probe))
    for b, a in zip(before, after, strict=True):
        assert a <= 2 * b + 30, (before, after)
    got = await pgstore.exchange(worker_id="w", claim=2, now=now)
    assert [c.job.id for c in got.claims] == ["q0", "q1"]


def test_the_identity_names_the_store_not_the_way_to_reach_it() -> None:
    """``QUEUECTL_STORE`` (reference §4.6): one value whichever user, password or
    options reach a schema; another schema, database or server is another store."""
    same = [
        "postgresql://app:secret@db.example:5432/jobs?schema=q1",
        "postgresql://admin@db.example/jobs?schema=q1&sslmode=require",
        "postgresql://db.example/jobs?password=other&schema=q1",
    ]
    assert {parse_target(url).identity for url in same} == {
        "postgresql://db.example:5432/jobs?schema=q1"
    }
    assert all("secret" not in parse_target(url).identity for url in same)
    others = [
        "postgresql://db.example/jobs?schema=q2",
        "postgresql://db.example/other?schema=q1",
        "postgresql://db.example:5433/jobs?schema=q1",
    ]
    assert len({parse_target(url).identity for url in [same[0], *others]}) == 4
