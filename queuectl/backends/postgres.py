"""The shared store: one PostgreSQL schema, driven through asyncpg, for workers on many hosts.

Install with ``pip install 'queuectl[postgres]'`` and select it with a
``postgresql://`` URL (``?schema=NAME`` picks the schema, default ``queuectl``;
see ``backends.postgres_conn``). Each store holds a small asyncpg pool, plus one
dedicated connection per worker that LISTENs for wake-ups.

**Time.** Every time this store writes (leases, ``next_run_at``, ``created_at``,
heartbeats) is taken from the *server's* clock (``now()``, through the SQL function
``queuectl_now_ms``), and every lease is compared with that same clock, so a host
whose clock is wrong can neither expire another host's lease early nor keep its
own alive. The ``now`` arguments of the ``Backend`` protocol are then used only to
carry *durations* across clocks: a job's ``delay`` counts from the server's now
(a ``run_at`` given as a time is kept as it is: real time, which the server's
clock stands for), a worker's start is shifted by ``server now - now``, and a time
handed back for a timer (``next_due_at``, a retry's ``next_run_at``, a lease's end,
worker heartbeats for liveness checks) is shifted back onto the caller's clock. Tests
that need to pin time open the store with ``caller_clock=True``: the ``now``
passed in then *is* the store's clock, exactly as with SQLite. That switch is a
keyword of ``open`` only, never part of a URL.

**Claims** are one statement (``exchange`` in ``sql/postgres/queries.sql``) that
also records starts and finishes: ``FOR UPDATE SKIP LOCKED`` in a CTE lets any
number of claimers on any number of hosts work without waiting for each other.
What a finish makes of its job is decided in Python (``bookkeeping``) from the
stored config as last seen, which the statement checks is still current, so a
finish always follows the backoff settings stored at that moment without a
second round trip.

**Wake-ups.** ``notify`` sends ``NOTIFY`` on the schema's channel; ``subscribe``
LISTENs on a dedicated connection (reopened by ``probe`` if it was lost). A
sequence bumped by every statement that makes a job claimable is the
``QueueProbe.version`` that the worker's slow poll compares, in case a
notification is lost.

Every commit is durable (the server's ``synchronous_commit``): a claim that a
server crash forgot could otherwise run beside its re-run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import asyncpg

from queuectl import models, procs
from queuectl.backends import bookkeeping, postgres_deps
from queuectl.backends.base import Enqueued, Exchanged, OnLost, OnProgress, QueueProbe
from queuectl.backends.postgres_conn import (
    Listener,
    Target,
    breaks_connection,
    channel_name,
    compile_query,
    create_pool,
    lock_key,
    migrate,
    parse_target,
    wrapped,
)
from queuectl.backends.postgres_ops import PostgresOperations
from queuectl.backends.postgres_queues import QueueControlPostgres
from queuectl.backends.postgres_rows import (
    columns,
    finish_columns,
    inserted,
    job_columns,
    start_columns,
    unstorable,
)
from queuectl.backends.rows import job_from_row, lost_from_row, worker_from_row
from queuectl.backends.store import Cycle, SqlStore
from queuectl.backends.web_reads import WebReads
from queuectl.clock import now_ms
from queuectl.exceptions import BackendError, DuplicateJob, StoreUnreachable
from queuectl.models import Claim, Fire, Fired, Job, LostAttempt, NewJob, WorkerInfo
from queuectl.retry import RetryPolicy
from queuectl.sql import queries

SQL = {name: compile_query(text) for name, text in queries("postgres").items()}
#: The duration histogram's buckets as the SQL takes them (``:buckets``).
BUCKETS = list(bookkeeping.BUCKETS_MS)
#: How often ``exchange`` re-decides finishes because the stored config changed under it.
_CONFIG_ATTEMPTS = 5
#: Delta rows of ``job_counts`` above which a reader folds them together.
_COMPACT_ROWS = 1000
#: Jobs per INSERT statement of a big enqueue (all in one transaction).
_ENQUEUE_CHUNK = 2000


class PostgresBackend(PostgresOperations, SqlStore, WebReads, QueueControlPostgres):
    """The shared store. Open it with ``PostgresBackend.open``; close with ``aclose``."""

    dialect = "postgres"

    def __init__(self, target: Target, pool: asyncpg.Pool, *, caller_clock: bool) -> None:
        self.target = target.shown
        self.identity = target.identity
        #: The URL it was opened with, to open it again (it may hold a password).
        self.url = target.url
        self.schema = target.schema
        self.channel = channel_name(target.schema)
        self.host = procs.HOST
        self._target = target
        self._pool = pool
        self._caller_clock = caller_clock
        self._reap_key = lock_key("reap", target.schema)
        #: The stored config as last seen (jsonb text), which ``exchange`` decides with.
        self._config_json: str | None = None
        self._listener: Listener | None = None

    @classmethod
    async def open(
        cls,
        target: str,
        *,
        durable: bool = True,
        caller_clock: bool = False,
        pool_size: int = 4,
        create: bool = True,
    ) -> PostgresBackend:
        """Connect to ``target`` (a ``postgresql://`` URL), creating and migrating the schema.

        ``durable`` is accepted for symmetry with SQLite: on PostgreSQL every commit
        is as durable as the server is configured to make it. ``caller_clock`` makes
        the ``now`` arguments the store's clock (tests only; see the module docstring).
        """
        del durable
        parsed = parse_target(target)
        pool = await create_pool(parsed, size=pool_size)
        backend = cls(parsed, pool, caller_clock=caller_clock)
        try:
            async with backend._conn() as conn:
                await migrate(conn, parsed, create=create)
        except BaseException:
            await backend.aclose()
            raise
        return backend

    async def aclose(self) -> None:
        if self._listener is not None:
            await self._listener.close()
            self._listener = None
        try:
            await asyncio.wait_for(self._pool.close(), 5.0)
        except (TimeoutError, *_QUIET_ERRORS):
            self._pool.terminate()

    @contextlib.asynccontextmanager
    async def _conn(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; one that broke while in use is closed, never pooled again.

        The pool opens a fresh one for the next caller, so a worker rides out a
        server restart or a killed session with one failed call, and no second
        statement is ever sent down a connection whose last one did not end cleanly.
        """
        async with wrapped(self._target), self._pool.acquire() as conn:
            try:
                yield conn
            except BaseException as exc:
                if breaks_connection(exc):
                    # Already gone if asyncpg saw the socket close (then it has
                    # handed the connection back to the pool itself).
                    with contextlib.suppress(asyncpg.InterfaceError):
                        conn.terminate()
                raise

    def _clock(self, now: int) -> int | None:
        return now if self._caller_clock else None

    async def _fetch(self, name: str, **values: Any) -> list[asyncpg.Record]:
        query = SQL[name]
        async with self._conn() as conn:
            return await conn.fetch(query.text, *query.args(values))  # type: ignore[no-any-return]

    async def _fetchrow(self, name: str, **values: Any) -> asyncpg.Record | None:
        rows = await self._fetch(name, **values)
        return rows[0] if rows else None

    async def _rows(self, name: str, values: Mapping[str, Any]) -> list[asyncpg.Record]:
        # Not through ``_fetch``: a value may be called ``name`` (a schedule's).
        query = SQL[name]
        async with self._conn() as conn:
            return await conn.fetch(query.text, *query.args(dict(values)))  # type: ignore[no-any-return]

    async def enqueue(
        self, jobs: Sequence[NewJob], *, now: int, progress: OnProgress | None = None
    ) -> list[Job]:
        """One transaction; a big batch goes in statements of a few thousand jobs."""
        if not jobs:
            return []
        query = SQL["insert_jobs"]
        server_now = now
        unmet: list[int] = [0] * len(jobs)
        try:
            async with self._conn() as conn, conn.transaction():
                edges: list[dict[str, Any]] = []
                if any(j.after for j in jobs):
                    unmet, edges = await postgres_deps.plan(conn, jobs)
                for begin in range(0, len(jobs), _ENQUEUE_CHUNK):
                    chunk = jobs[begin : begin + _ENQUEUE_CHUNK]
                    waits = unmet[begin : begin + _ENQUEUE_CHUNK]
                    columns = job_columns(chunk, now, self._clock(now), waits)
                    try:
                        row = await conn.fetchrow(query.text, *query.args(columns))
                    except asyncpg.UniqueViolationError as exc:
                        raise _Collision from exc  # rolls the transaction back first
                    except asyncpg.DataError as exc:
                        raise unstorable(jobs, exc) from exc
                    server_now = row["now"]
                    if progress is not None:
                        progress(begin + len(chunk))
                await postgres_deps.insert(conn, edges)
        except _Collision as exc:
            raise await self._duplicate(jobs) from exc.__cause__
        return [inserted(j, server_now, now, n) for j, n in zip(jobs, unmet, strict=True)]

    async def _duplicate(self, jobs: Sequence[NewJob]) -> DuplicateJob:
        existing = {r["id"] for r in await self._fetch("existing_ids", ids=[j.id for j in jobs])}
        keys = [j.unique_key for j in jobs if j.unique_key is not None]
        held = {
            r["unique_key"]: (r["id"], r["state"])
            for r in (await self._fetch("key_holders", keys=keys) if keys else [])
        }
        return bookkeeping.duplicate_job(jobs, existing.__contains__, held.get)

    async def enqueue_stream(self, chunks: AsyncIterator[Sequence[NewJob]], *, now: int) -> int:
        """Gathered, then one ``enqueue``: not streamed on this store (yet)."""
        jobs = await bookkeeping.gather_stream(chunks)
        await self.enqueue(jobs, now=now)
        return len(jobs)

    async def enqueue_new(self, jobs: Sequence[NewJob], *, now: int) -> Enqueued:
        """One statement: ``ON CONFLICT DO NOTHING`` skips a taken id or a held key."""
        if not jobs:
            return Enqueued([], [])
        query = SQL["insert_jobs_new"]
        unmet = [0] * len(jobs)
        async with self._conn() as conn, conn.transaction():
            chained: list[NewJob] = []
            if any(j.after for j in jobs):
                # A dependency on a skipped job is one on the job that exists already.
                taken = {
                    r["id"]
                    for r in await conn.fetch(SQL["existing_ids"].text, [j.id for j in jobs])
                }
                chained = [j for j in jobs if j.id not in taken]
                waits, _ = await postgres_deps.plan(conn, chained)
                by_id = dict(zip((j.id for j in chained), waits, strict=True))
                unmet = [by_id.get(j.id, 0) for j in jobs]
            try:
                row = await conn.fetchrow(
                    query.text, *query.args(job_columns(jobs, now, self._clock(now), unmet))
                )
            except asyncpg.DataError as exc:
                raise unstorable(jobs, exc) from exc
            done = set(row["ids"])
            if chained:
                _, edges = await postgres_deps.plan(conn, [j for j in jobs if j.id in done])
                await postgres_deps.insert(conn, [e for e in edges if e["job_id"] in done])
            left = [(i, j) for i, j in enumerate(jobs, 1) if j.id not in done]
            taken = {
                r["id"] for r in await conn.fetch(SQL["existing_ids"].text, [j.id for _, j in left])
            }
            keys = [j.unique_key for _, j in left if j.unique_key is not None]
            holders = {
                r["unique_key"]: r["id"] for r in await conn.fetch(SQL["key_holders"].text, keys)
            }
        skipped = [
            (i, j.id if j.id in taken or j.unique_key not in holders else holders[j.unique_key])
            for i, j in left
        ]
        server_now = row["now"]
        return Enqueued(
            [
                inserted(j, server_now, now, n)
                for j, n in zip(jobs, unmet, strict=True)
                if j.id in done
            ],
            skipped,
        )

    def _policy(self) -> RetryPolicy:
        """The retry policy of the stored config as last seen."""
        return bookkeeping.policy_from_stored(
            json.loads(self._config_json) if self._config_json else {}
        )

    async def _exchange(self, cycle: Cycle) -> Exchanged:
        finishes, now = cycle.finishes, cycle.now
        values: dict[str, Any] = {
            "clock": self._clock(now),
            "worker": cycle.worker_id,
            "limit": cycle.claim,
            "queues": list(cycle.queues) if cycle.queues is not None else None,
            "lease_ms": cycle.lease_ms,
            "channel": self.channel,
            "buckets": BUCKETS,
            "why": bookkeeping.DEPENDENCY_ERROR,
            **start_columns(cycle.starts, finishes),
        }
        for _ in range(_CONFIG_ATTEMPTS):
            decisions = bookkeeping.decide_finishes(finishes, self._policy)
            values.update(finish_columns(finishes, decisions))
            # Claims and starts alone do not depend on the config: skip the check.
            values["config"] = (self._config_json or "{}") if finishes else None
            rows = await self._fetch("exchange", **values)
            head = rows[0]
            if head["fresh"]:
                break
            self._config_json = head["config"]
        else:
            raise BackendError("the stored config kept changing during a transition; retrying")
        back = now - head["server_now"]
        held = dict(zip(head["held"], head["held_states"], strict=True))
        finished = bookkeeping.finish_results(finishes, decisions, held, now)
        claimed = sorted(
            (r for r in rows if r["id"] is not None), key=lambda r: (-r["priority"], r["seq"])
        )
        claims = [Claim(job_from_row(r), r["claims"], r["lease_until"] + back) for r in claimed]
        next_due = head["next_due"]
        return Exchanged(finished, claims, None if next_due is None else next_due + back)

    async def unclaim(
        self, *, worker_id: str, claims: Sequence[tuple[str, int]], now: int
    ) -> list[tuple[str, int]]:
        if not claims:
            return []
        rows = await self._fetch(
            "unclaim",
            clock=self._clock(now),
            worker=worker_id,
            ids=[c[0] for c in claims],
            tokens=[c[1] for c in claims],
            channel=self.channel,
        )
        return [(r["id"], r["token"]) for r in rows]

    async def heartbeat(
        self, *, worker_id: str, running: Sequence[tuple[str, int]], lease_ms: int, now: int
    ) -> models.Heartbeat:
        query = SQL["heartbeat"]
        args = query.args({"clock": self._clock(now), "lease_ms": lease_ms, "worker": worker_id})
        # No timeout of its own: the worker bounds the call and fences itself on a
        # timer, and a connection cancelled mid-statement is closed (see ``_conn``).
        async with self._conn() as conn:
            row = await conn.fetchrow(query.text, *args)
        held = frozenset(zip(row["ids"], row["tokens"], strict=True))
        cancel = zip(row["cancel_ids"], row["cancel_tokens"], strict=True)
        return bookkeeping.heartbeat_answer(running, held, row["stop"], cancel)

    async def recover(
        self, *, now: int, dead_workers: Sequence[str] = (), on_lost: OnLost | None = None
    ) -> list[LostAttempt]:
        """Only one store sweeps at a time (an advisory lock): the others skip the tick.

        A sweep for known-dead workers waits for the lock instead, so those are
        recovered now. Leases are expired before the workers' rows are removed:
        the same order an exchange takes its locks in, so the two cannot deadlock.
        """
        clock = self._clock(now)
        async with self._conn() as conn, conn.transaction():
            if dead_workers:
                await conn.execute("SELECT pg_advisory_xact_lock($1)", self._reap_key)
                dead = list(dead_workers)
                await conn.execute(SQL["expire_worker_leases"].text, dead)
                await conn.execute(SQL["deregister_workers"].text, dead)
            elif not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", self._reap_key):
                return []
            rows = await conn.fetch(SQL["select_expired"].text, clock)
            lost = [lost_from_row(r, shift=now - r["server_now"]) for r in rows]
            if lost:
                await self._recover_rows(conn, lost, clock, on_lost)
            rows = await conn.fetchrow(SQL["counter_rows"].text)
            if rows["jobs"] > 64:
                await conn.execute(SQL["compact_counts"].text)
            if rows["finished"] > 64:
                compact = SQL["compact_counters"]
                await conn.execute(
                    compact.text, *compact.args({"kept_ms": bookkeeping.MINUTES_KEPT_MS})
                )
            return lost

    async def _recover_rows(
        self,
        conn: asyncpg.Connection,
        lost: list[LostAttempt],
        clock: int | None,
        on_lost: OnLost | None,
    ) -> None:
        stored = {r["key"]: r["value"] for r in await conn.fetch(SQL["config_all"].text)}
        records = bookkeeping.recovery_records(
            lost, bookkeeping.policy_from_stored(stored), on_lost
        )
        query = SQL["recover"]
        values = {
            "clock": clock,
            "host": self.host,
            "buckets": BUCKETS,
            "why": bookkeeping.DEPENDENCY_ERROR,
            "channel": self.channel,
            **columns(records, bookkeeping.RECOVERY_FIELDS, "r_"),
        }
        await conn.fetchrow(query.text, *query.args(values))

    async def release_strays(self, *, host: str, now: int, on_stray: OnLost) -> list[LostAttempt]:
        async with self._conn() as conn, conn.transaction():
            query = SQL["stray_attempts"]
            rows = await conn.fetch(
                query.text, *query.args({"host": host, "clock": self._clock(now)})
            )
            strays = [
                lost_from_row(r, job_id="job_id", token="attempt", shift=now - r["server_now"])
                for r in rows
            ]
            for item in strays:
                on_stray(item)
            if strays:
                await conn.execute(
                    SQL["forget_strays"].text,
                    [s.job_id for s in strays],
                    [s.token for s in strays],
                )
            return strays

    async def _requeue_named(self, job_ids: Sequence[str], now: int) -> list[str]:
        clock = self._clock(now)
        async with self._conn() as conn, conn.transaction():
            done = [await _requeue_one(conn, job_id, clock) for job_id in job_ids]
            if done:
                await conn.execute(SQL["bump_version"].text)
                await postgres_deps.revive(conn, done, clock=clock, channel=self.channel)
            return done

    async def _requeue_batch(
        self, *, after: int, upto: int, limit: int, now: int
    ) -> list[asyncpg.Record]:
        clock = self._clock(now)
        query = SQL["requeue_dead_batch"]
        values = {"clock": clock, "after": after, "upto": upto, "limit": limit}
        async with self._conn() as conn, conn.transaction():
            rows: list[asyncpg.Record] = await conn.fetch(query.text, *query.args(values))
            ids = [r["id"] for r in rows]
            await postgres_deps.revive(conn, ids, clock=clock, channel=self.channel)
            return rows

    async def fire(self, fire: Fire, *, now: int) -> Fired:
        """The compare-and-set takes the schedule's row lock: a racing worker waits for
        it, then finds the fire time moved on and changes nothing."""
        async with self._conn() as conn, conn.transaction():
            row = await self._one(conn, "fire_claim", bookkeeping.fire_claim_values(fire, now))
            if row is None:
                return Fired(handled=False)
            previous = None
            if row["last_job_id"] is not None:
                previous = await conn.fetchval(SQL["job_state"].text, row["last_job_id"])
            made = None
            if bookkeeping.fire_makes(row["overlap"], previous):
                made = fire.job.id
                try:
                    async with conn.transaction():  # a savepoint: a taken id is no failure
                        await self._insert(conn, [fire.job], now)
                except asyncpg.UniqueViolationError:
                    pass  # made already (``schedule run`` in the same second)
            await self._one(conn, "fire_done", bookkeeping.fire_done_values(fire, made))
            return Fired(handled=True, job_id=made)

    async def run_schedule(
        self, name: str, created_at: int, job: NewJob, *, fire_at: int, now: int
    ) -> None:
        values = bookkeeping.run_values(name, created_at, job.id, fire_at, now)
        try:
            async with self._conn() as conn, conn.transaction():
                if await self._one(conn, "run_claim", values) is None:
                    raise bookkeeping.schedule_gone(name)
                try:
                    await self._insert(conn, [job], now)
                except asyncpg.UniqueViolationError as exc:
                    raise _Collision from exc
        except _Collision as exc:
            raise await self._duplicate([job]) from exc.__cause__

    async def _one(
        self, conn: asyncpg.Connection, name: str, values: dict[str, Any]
    ) -> asyncpg.Record | None:
        query = SQL[name]
        return await conn.fetchrow(query.text, *query.args(values))

    async def _insert(self, conn: asyncpg.Connection, jobs: Sequence[NewJob], now: int) -> None:
        """Insert a few jobs inside the caller's transaction (as ``enqueue`` does)."""
        await self._one(conn, "insert_jobs", job_columns(jobs, now, self._clock(now)))

    async def counts(self, queues: Sequence[str] | None = None) -> dict[models.JobState, int]:
        rows = await self._fetch("counts", queues=list(queues) if queues is not None else None)
        if sum(r["rows"] for r in rows) > _COMPACT_ROWS:
            async with self._conn() as conn:
                await conn.execute(SQL["compact_counts"].text)
        return bookkeeping.counts_by_state(rows)

    async def probe(self, *, queues: Sequence[str] | None, now: int) -> QueueProbe:
        if self._listener is not None:
            # The slow poll is also when a lost LISTEN connection comes back.
            await self._listener.ensure()
        row = await self._fetchrow(
            "probe",
            clock=self._clock(now),
            queues=list(queues) if queues is not None else None,
        )
        assert row is not None
        return QueueProbe(busy=int(row["busy"]), due=bool(row["due"]), version=row["version"])

    async def register_worker(self, info: WorkerInfo, *, now: int) -> None:
        await self._fetch(
            "register_worker",
            id=info.id,
            host=info.host,
            pid=info.pid,
            proc_start=info.proc_start,
            started_at=info.started_at,
            now=now,
            clock=self._clock(now),
            count=info.count,
            queues=json.dumps(list(info.queues)) if info.queues else None,
        )

    async def list_workers(self) -> list[WorkerInfo]:
        """Times come back on this host's clock, so callers can judge heartbeat ages."""
        local = now_ms()
        rows = await self._fetch("list_workers", clock=local if self._caller_clock else None)
        return [worker_from_row(r, local - r["server_now"]) for r in rows]

    async def set_config(self, values: Mapping[str, str]) -> None:
        await self._fetch("config_set", keys=list(values), values=list(values.values()))

    async def notify(self, message: bytes) -> None:
        """NOTIFY every listening worker of this queue, on every host.

        Best effort: it announces a change that is already committed, so a lost
        connection must not turn that change into a reported failure (a retried
        ``enqueue`` would then be refused as a duplicate). A missed wake-up is
        covered by the workers' 1 s poll, a missed stop request by their heartbeat.
        """
        with contextlib.suppress(StoreUnreachable):
            async with self._conn() as conn:
                await conn.execute("SELECT pg_notify($1, $2)", self.channel, message.decode())

    async def subscribe(self, worker_id: str, callback: Callable[[bytes], None]) -> None:
        del worker_id  # every worker of the queue listens on the same channel
        self._listener = Listener(self._target, self.channel, callback)
        await self._listener.ensure()


_QUIET_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


class _Collision(Exception):
    """An id already exists: leave the transaction (rolling it back), then say which."""


async def _requeue_one(conn: asyncpg.Connection, job_id: str, clock: int | None) -> str:
    query = SQL["requeue_dead"]
    row = await conn.fetchrow(query.text, *query.args({"id": job_id, "clock": clock}))
    if row is not None:
        return str(row[0])
    raise bookkeeping.not_requeued(job_id, await conn.fetchval(SQL["job_state"].text, job_id))
