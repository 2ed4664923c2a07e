"""The embedded store: one SQLite file in WAL mode, driven through aiosqlite.

Opening and migrating a file lives in ``sqlite_conn``; what a finish or a lost
attempt makes of a job is decided in ``bookkeeping`` and the reads both stores
share are in ``store.SqlStore``, so this module only runs SQLite's SQL.

An aiosqlite connection is one thread that runs queued calls in order. Each hop to
that thread costs about 80 µs here, more than the SQL itself, so every operation of
this store is one plain function run on the thread in a single hop (``_call``): a
whole ``BEGIN IMMEDIATE … COMMIT`` transaction never interleaves with another
coroutine's statements, and the worker's hot path is one hop per cycle.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import itertools
import json
import socket
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import aiosqlite

from queuectl import procs
from queuectl.backends import sqlite_deps, wakeup
from queuectl.backends.base import (
    Enqueued,
    Exchanged,
    FinishResult,
    OnLost,
    OnProgress,
    QueueProbe,
)
from queuectl.backends.bookkeeping import (
    MINUTES_KEPT_MS,
    Tallies,
    counts_by_state,
    decide_finishes,
    duplicate_job,
    finish_records,
    finish_results,
    fire_claim_values,
    fire_done_values,
    fire_makes,
    heartbeat_answer,
    not_requeued,
    policy_from_stored,
    recovery_records,
    run_values,
    schedule_gone,
    start_records,
)
from queuectl.backends.rows import job_from_row, lost_from_row, stored_job, worker_from_row
from queuectl.backends.sqlite_conn import (
    APPLICATION_ID,
    MIN_SQLITE,
    SCHEMA_VERSION,
    begin,
    is_busy,
    migrate,
    prepare_path,
    setup,
    transaction,
    translate,
)
from queuectl.backends.sqlite_ops import OperatorWrites
from queuectl.backends.sqlite_queues import QueueControlSqlite
from queuectl.backends.store import Cycle, SqlStore
from queuectl.backends.web_reads import WebReads
from queuectl.exceptions import BackendError, DatabaseBusy, DuplicateJob
from queuectl.models import Claim, Fired, Job, JobState, NewJob
from queuectl.retry import RetryPolicy
from queuectl.sql import queries

if TYPE_CHECKING:
    from queuectl.models import Fire, Heartbeat, LostAttempt, WorkerInfo

T = TypeVar("T")

SQL = queries("sqlite")
#: Rows inserted between two progress reports of a big enqueue.
_ENQUEUE_CHUNK = 2000
#: Rows per ``INSERT`` statement of an enqueue. Each statement pays SQLite's
#: per-statement work (its statement transaction, the AUTOINCREMENT counter read
#: and written back) and a trip through the GIL; one statement per 500 rows
#: instead of one per row took W1b's insert from ~9.5 to ~5.5 µs per row (issue 15).
_ROWS_PER_INSERT = 500


class SqliteBackend(OperatorWrites, SqlStore, WebReads, QueueControlSqlite):
    """The embedded store. Open it with ``SqliteBackend.open``; close with ``aclose``."""

    dialect = "sqlite"

    def __init__(self, path: Path, db: aiosqlite.Connection, *, busy_deadline_s: float) -> None:
        self.path = path
        self.target = str(path)
        self.identity = str(path.resolve())
        self._db = db
        self._busy_deadline_s = busy_deadline_s
        self._wake_socket: socket.socket | None = None
        self.host = procs.HOST

    @classmethod
    async def open(
        cls, target: str, *, durable: bool = True, busy_deadline_s: float = 15.0
    ) -> SqliteBackend:
        """Open (creating if needed) and migrate the database at ``target``.

        ``durable`` selects ``synchronous=FULL``: a commit survives power loss, which
        is what a confirmed enqueue promises. Workers pass ``False`` (``NORMAL``):
        a lost completion only means a re-run, which at-least-once delivery allows.
        """
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise BackendError(f"SQLite {sqlite3.sqlite_version} is too old; need 3.35 or newer")
        path = Path(target).expanduser()
        prepare_path(path)
        connection = aiosqlite.connect(path, isolation_level=None, timeout=1.0)
        try:
            db = await connection
        except sqlite3.Error as exc:
            await _thread_stopped(connection)
            raise translate(exc, path) from exc
        backend = cls(path, db, busy_deadline_s=busy_deadline_s)
        try:
            await backend._call(lambda c: setup(c, durable=durable))
        except BaseException:
            await db.close()
            raise
        return backend

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the connection's thread in one hop, retrying while locked.

        A busy database is retried as a whole (the transaction is rolled back first)
        with jittered exponential backoff until ``busy_deadline_s``; every other
        SQLite error becomes a ``BackendError`` with a message meant for users.
        """
        deadline = time.monotonic() + self._busy_deadline_s
        delay = 0.005
        while True:
            try:
                # aiosqlite has no public "run this callable on the connection's
                # thread"; _execute is that primitive (stable since 0.11).
                return await self._db._execute(fn, self._db._conn)  # type: ignore[no-any-return,no-untyped-call]
            except sqlite3.OperationalError as exc:
                if not is_busy(exc):
                    raise translate(exc, self.path) from exc
                if time.monotonic() + delay > deadline:
                    raise DatabaseBusy(
                        f"database {self.path} stayed locked by another process for "
                        f"{self._busy_deadline_s:g}s; nothing was changed"
                    ) from exc
                import random  # only on a locked database: not on every command's start

                await asyncio.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, 0.25)
            except sqlite3.Error as exc:
                raise translate(exc, self.path) from exc

    async def _rows(self, name: str, values: Mapping[str, Any]) -> list[Any]:
        return await self._call(functools.partial(_fetch_all, SQL[name], values))

    async def enqueue(
        self, jobs: Sequence[NewJob], *, now: int, progress: OnProgress | None = None
    ) -> list[Job]:
        chained = any(j.after for j in jobs)
        rows = [] if chained else _job_rows(jobs, now)
        unmet: list[int] = []

        def run(conn: sqlite3.Connection) -> None:
            begin(conn)
            try:
                if chained:
                    unmet.extend(sqlite_deps.plan(conn, jobs))
                    rows.extend(_job_rows(jobs, now, unmet))
                _insert_jobs(conn, jobs, rows, progress)
            except sqlite3.IntegrityError as exc:
                conn.rollback()
                raise duplicate_job(
                    jobs, functools.partial(_exists, conn), functools.partial(_holder, conn)
                ) from exc
            except BaseException:
                conn.rollback()
                raise
            conn.commit()

        # Build the returned records while the database thread inserts (a
        # 100,000-job batch spends about a second on each side).
        insert = asyncio.ensure_future(self._call(run))
        await asyncio.sleep(0)
        try:
            inserted = [
                stored_job(j, created_at=now, run_at=j.run_at, next_run_at=j.next_run_at)
                for j in jobs
            ]
        finally:
            await insert
        if chained:
            inserted = [
                dataclasses.replace(j, unmet=n) for j, n in zip(inserted, unmet, strict=True)
            ]
        return inserted

    async def enqueue_stream(self, chunks: AsyncIterator[Sequence[NewJob]], *, now: int) -> int:
        """One transaction over many hops: each chunk is inserted while the next is
        validated, so neither the input nor its jobs are ever held whole.

        A chunk goes in under a savepoint: a taken id or key rolls back that chunk
        only, so the rows of earlier chunks can still tell whether the other job is
        one of this stream (its ``seq`` is past the one the stream started from).
        """
        start: int = await self._call(_begin_stream)
        per_queue: Counter[str] = Counter()
        count = 0
        inflight: asyncio.Future[None] | None = None
        try:
            async for chunk in chunks:
                if inflight is not None:
                    await inflight
                rows = _job_rows(chunk, now)
                inflight = asyncio.ensure_future(
                    self._call(functools.partial(_insert_chunk, chunk, rows, count, start))
                )
                # One turn of the loop hands the chunk to the database thread; without
                # it the task would only start at the next ``await``, after the next
                # chunk's validation, and the two would take turns instead of overlapping.
                await asyncio.sleep(0)
                per_queue.update(j.queue for j in chunk)
                count += len(chunk)
            if inflight is not None:
                await inflight
        except BaseException:
            if inflight is not None and not inflight.done():
                with contextlib.suppress(BaseException):
                    await inflight
            await self._call(lambda c: c.rollback())
            raise
        counts = [{"queue": q, "n": n} for q, n in per_queue.items()]

        def commit(conn: sqlite3.Connection) -> None:
            try:
                conn.executemany(SQL["add_pending_counts"], counts)
            except BaseException:
                conn.rollback()
                raise
            conn.commit()

        await self._call(commit)
        return count

    async def enqueue_new(self, jobs: Sequence[NewJob], *, now: int) -> Enqueued:
        unmet: list[int] = []

        def body(conn: sqlite3.Connection) -> list[tuple[int, str]]:
            skipped: list[tuple[int, str]] = []
            per_queue: Counter[str] = Counter()
            chained = (
                [j for j in jobs if not _exists(conn, j.id)] if any(j.after for j in jobs) else []
            )
            # A dependency on a skipped job is one on the job that exists already.
            waits = dict(zip((j.id for j in chained), sqlite_deps.plan(conn, chained), strict=True))
            unmet.extend(waits.get(j.id, 0) for j in jobs)
            inserted: list[NewJob] = []
            rows = _job_rows(jobs, now, unmet)
            for position, (job, row) in enumerate(zip(jobs, rows, strict=True), 1):
                if conn.execute(SQL["insert_job_new"], row).rowcount:
                    per_queue[job.queue] += 1
                    inserted.append(job)
                    continue
                found = None if _exists(conn, job.id) else _holder(conn, job.unique_key)
                skipped.append((position, job.id if found is None else found[0]))
            conn.executemany(
                SQL["add_pending_counts"], [{"queue": q, "n": n} for q, n in per_queue.items()]
            )
            if chained:
                sqlite_deps.insert(conn, [j for j in inserted if j.after])
            return skipped

        skipped = await self._call(lambda c: transaction(c, body))
        left = {p for p, _ in skipped}
        return Enqueued(
            [
                stored_job(j, created_at=now, run_at=j.run_at, next_run_at=j.next_run_at, unmet=n)
                for i, (j, n) in enumerate(zip(jobs, unmet, strict=True), 1)
                if i not in left
            ],
            skipped,
        )

    async def _exchange(self, cycle: Cycle) -> Exchanged:
        worker_id, claim, queues, now = cycle.worker_id, cycle.claim, cycle.queues, cycle.now
        start_rows = start_records(cycle.starts)
        scope = "any" if queues is None else "queues"
        claim_args = {
            "worker": worker_id,
            "lease_until": now + cycle.lease_ms,
            "now": now,
            "limit": claim,
        }
        if queues is not None:
            claim_args["queues"] = json.dumps(list(queues))

        # A start of an attempt that ends in this same exchange is written by its
        # finish's update (one statement per attempt instead of two).
        ending = {(f.job_id, f.token) for f in cycle.finishes}
        started = {(r["id"], r["token"]): r for r in start_rows if (r["id"], r["token"]) in ending}
        if started:
            start_rows = [r for r in start_rows if (r["id"], r["token"]) not in started]

        def body(conn: sqlite3.Connection) -> Exchanged:
            if start_rows:
                conn.executemany(SQL["record_start"], start_rows)
            finished = _finish_all(conn, cycle, started) if cycle.finishes else []
            claims: list[Claim] = []
            next_due: int | None = None
            if claim > 0:
                shape = SQL[f"claim_shape_{scope}"]
                held, open_queues, queue = conn.execute(shape, claim_args).fetchone()
                if held or open_queues > 1:
                    sql = SQL[f"claim_{scope}"]
                else:
                    # At most one queue has pending jobs: no walk merging queues.
                    sql, claim_args["queue"] = SQL[f"claim_one_{scope}"], queue
                cursor = conn.execute(sql, claim_args)
                rows = cursor.fetchall()
                if rows:
                    # Each row as a dict first: sqlite3.Row looks a name up by comparing
                    # it with every column name in turn (quadratic over `jobs`' columns).
                    names = [d[0] for d in cursor.description]
                    for row in rows:
                        values = dict(zip(names, row, strict=True))
                        job = job_from_row(values)
                        claims.append(Claim(job, values["claims"], values["lease_until"]))
                claims.sort(key=lambda c: (-c.job.priority, c.job.created_at))
                if len(claims) < claim:
                    next_due = _next_due(conn, queues)
            return Exchanged(finished, claims, next_due)

        return await self._call(lambda c: transaction(c, body))

    async def unclaim(
        self, *, worker_id: str, claims: Sequence[tuple[str, int]], now: int
    ) -> list[tuple[str, int]]:
        def body(conn: sqlite3.Connection) -> list[tuple[str, int]]:
            back: list[tuple[str, int]] = []
            for job_id, token in claims:
                args = {"id": job_id, "token": token, "worker": worker_id, "now": now}
                if conn.execute(SQL["unclaim_job"], args).fetchone() is not None:
                    conn.execute(SQL["unclaim_attempt"], args)
                    back.append((job_id, token))
            return back

        back = await self._call(lambda c: transaction(c, body)) if claims else []
        if back:
            await self.notify(wakeup.JOB)
        return back

    async def heartbeat(
        self, *, worker_id: str, running: Sequence[tuple[str, int]], lease_ms: int, now: int
    ) -> Heartbeat:
        args = {"worker": worker_id, "lease_until": now + lease_ms, "now": now}

        def body(conn: sqlite3.Connection) -> Heartbeat:
            rows = conn.execute(SQL["heartbeat_leases"], args).fetchall()
            held = frozenset((r[0], r[1]) for r in rows)
            cancel = [(r[0], r[1]) for r in rows if r[2] is not None]
            row = conn.execute(SQL["heartbeat_worker"], args).fetchone()
            return heartbeat_answer(running, held, None if row is None else row[0], cancel)

        return await self._call(lambda c: transaction(c, body))

    async def recover(
        self, *, now: int, dead_workers: Sequence[str] = (), on_lost: OnLost | None = None
    ) -> list[LostAttempt]:
        host = self.host

        def body(conn: sqlite3.Connection) -> list[LostAttempt]:
            for worker in dead_workers:
                conn.execute(SQL["expire_worker_leases"], {"worker": worker})
                conn.execute(SQL["deregister_worker"], {"id": worker})
            conn.execute(SQL["forget_minutes"], {"before": now - MINUTES_KEPT_MS})
            rows = conn.execute(SQL["select_expired"], {"now": now}).fetchall()
            if not rows:
                return []
            lost = [lost_from_row(r) for r in rows]
            tallies = Tallies()
            settled: list[tuple[str, str]] = []
            for args in recovery_records(lost, _policy(conn), on_lost):
                args.update(host=host, now=now)
                ended = conn.execute(SQL["recover_attempt"], args).fetchone()
                job = conn.execute(SQL["recover_job"], args).fetchone()
                if job is not None:
                    settled.append((job[0], job[1]))
                if ended is not None:
                    duration = now - ended["started_at"]
                    tallies.add(ended["queue"], args["tally"], duration, outcome="lost", now=now)
            _write_tallies(conn, tallies)
            # A lost attempt that made its job dead (or cancelled) ends it: its
            # dependents are settled in this same transaction.
            sqlite_deps.settle(conn, settled, now)
            return lost

        return await self._call(lambda c: transaction(c, body))

    async def release_strays(self, *, host: str, now: int, on_stray: OnLost) -> list[LostAttempt]:
        def body(conn: sqlite3.Connection) -> list[LostAttempt]:
            rows = conn.execute(SQL["stray_attempts"], {"host": host, "now": now}).fetchall()
            strays = [lost_from_row(r, job_id="job_id", token="attempt") for r in rows]
            for item in strays:
                on_stray(item)
                conn.execute(SQL["forget_stray"], {"id": item.job_id, "token": item.token})
            return strays

        return await self._call(lambda c: transaction(c, body))

    async def _requeue_named(self, job_ids: Sequence[str], now: int) -> list[str]:
        def body(conn: sqlite3.Connection) -> list[str]:
            done: list[str] = []
            for job_id in job_ids:
                row = conn.execute(SQL["requeue_dead"], {"id": job_id, "now": now}).fetchone()
                if row is None:
                    state = conn.execute(SQL["job_state"], {"id": job_id}).fetchone()
                    raise not_requeued(job_id, None if state is None else state[0])
                done.append(row[0])
            sqlite_deps.revive(conn, done, now)
            return done

        return await self._call(lambda c: transaction(c, body))

    async def _requeue_batch(self, *, after: int, upto: int, limit: int, now: int) -> list[Any]:
        args = {"now": now, "after": after, "upto": upto, "limit": limit}

        def body(conn: sqlite3.Connection) -> list[Any]:
            rows = conn.execute(SQL["requeue_dead_batch"], args).fetchall()
            sqlite_deps.revive(conn, [r["id"] for r in rows], now)
            return rows

        return await self._call(lambda c: transaction(c, body))

    async def fire(self, fire: Fire, *, now: int) -> Fired:
        return await self._call(lambda c: transaction(c, lambda t: _fire(t, fire, now)))

    async def run_schedule(
        self, name: str, created_at: int, job: NewJob, *, fire_at: int, now: int
    ) -> None:
        values = run_values(name, created_at, job.id, fire_at, now)

        def body(conn: sqlite3.Connection) -> None:
            if conn.execute(SQL["run_claim"], values).fetchone() is None:
                raise schedule_gone(name)
            try:
                _insert_jobs(conn, [job], _job_rows([job], now))
            except sqlite3.IntegrityError as exc:
                raise duplicate_job([job], functools.partial(_exists, conn)) from exc

        await self._call(lambda c: transaction(c, body))

    async def counts(self, queues: Sequence[str] | None = None) -> dict[JobState, int]:
        if queues is None:
            return counts_by_state(await self._rows("counts", {}))
        return counts_by_state(
            await self._rows("counts_queues", {"queues": json.dumps(list(queues))})
        )

    async def probe(self, *, queues: Sequence[str] | None, now: int) -> QueueProbe:
        args = {"now": now, "queues": json.dumps(list(queues or ()))}

        def read(conn: sqlite3.Connection) -> QueueProbe:
            # Paused queues are neither busy nor due: --burst does not wait for them.
            if queues is None:
                busy = conn.execute(SQL["busy_any"]).fetchone()[0]
                due = conn.execute(SQL["due_any"], args).fetchone()[0]
            else:
                busy = conn.execute(SQL["busy_queues"], args).fetchone()[0]
                due = conn.execute(SQL["due_queues"], args).fetchone()[0]
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            return QueueProbe(busy=int(busy), due=bool(due), version=int(version))

        return await self._call(read)

    async def register_worker(self, info: WorkerInfo, *, now: int) -> None:
        args = {
            "id": info.id,
            "host": info.host,
            "pid": info.pid,
            "proc_start": info.proc_start,
            "started_at": info.started_at,
            "now": now,
            "count": info.count,
            "queues": json.dumps(list(info.queues)) if info.queues else None,
        }
        await self._call(lambda c: c.execute(SQL["register_worker"], args))

    async def list_workers(self) -> list[WorkerInfo]:
        rows = await self._call(lambda c: c.execute(SQL["list_workers"]).fetchall())
        return [worker_from_row(r) for r in rows]

    async def set_config(self, values: Mapping[str, str]) -> None:
        rows = [{"key": k, "value": v} for k, v in values.items()]
        await self._call(lambda c: transaction(c, lambda t: t.executemany(SQL["config_set"], rows)))

    async def notify(self, message: bytes) -> None:
        """Poke the idle workers on this host through their abstract Unix sockets.

        A datagram to an abstract socket needs no file beside the database and
        cannot go stale; a lost one only delays a start until the fallback poll.
        """
        host = self.host
        rows = await self._call(
            lambda c: c.execute("SELECT id FROM workers WHERE host = ?", (host,)).fetchall()
        )
        if rows:
            wakeup.poke([r[0] for r in rows], message)

    async def subscribe(self, worker_id: str, callback: Callable[[bytes], None]) -> None:
        sock = wakeup.bind(worker_id)
        self._wake_socket = sock

        def readable() -> None:
            while True:
                try:
                    data = sock.recv(64)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    return
                callback(data)

        asyncio.get_running_loop().add_reader(sock.fileno(), readable)

    async def aclose(self) -> None:
        if self._wake_socket is not None:
            asyncio.get_running_loop().remove_reader(self._wake_socket.fileno())
            self._wake_socket.close()
            self._wake_socket = None
        await self._db.close()


async def _thread_stopped(connection: aiosqlite.Connection) -> None:
    """Wait for the thread of a connection that failed to open.

    aiosqlite stops it without waiting; if the event loop closed first, the thread
    would print a traceback about the closed loop on its way out.
    """
    thread = connection._thread
    for _ in range(1000):
        if not thread.is_alive():
            return
        await asyncio.sleep(0.002)


def _job_rows(
    jobs: Sequence[NewJob], now: int, unmet: Sequence[int] | None = None
) -> list[tuple[Any, ...]]:
    """The positional values of ``insert_job``, one tuple per job (``unmet``: how many
    dependencies each waits for, ``sqlite_deps.plan``)."""
    waits = unmet if unmet is not None else itertools.repeat(0)
    return [
        (
            j.id,
            j.command,
            j.queue,
            j.priority,
            j.max_retries,
            j.timeout_s,
            json.dumps(j.env) if j.env else None,
            j.cwd,
            j.run_at,
            j.next_run_at,
            now,
            now,
            j.unique_key,
            json.dumps(list(j.after)) if j.after else None,
            j.after_mode,
            n,
        )
        for j, n in zip(jobs, waits, strict=False)
    ]


def _insert_jobs(
    conn: sqlite3.Connection,
    jobs: Sequence[NewJob],
    rows: Sequence[tuple[Any, ...]],
    progress: OnProgress | None = None,
) -> None:
    """Insert and count jobs inside the caller's transaction (``IntegrityError``: a taken id)."""
    if progress is None:
        _insert_rows(conn, rows)
    else:
        for start in range(0, len(rows), _ENQUEUE_CHUNK):
            chunk = rows[start : start + _ENQUEUE_CHUNK]
            _insert_rows(conn, chunk)
            progress(start + len(chunk))
    per_queue = Counter(j.queue for j in jobs)
    conn.executemany(
        SQL["add_pending_counts"], [{"queue": q, "n": n} for q, n in per_queue.items()]
    )
    if any(j.after for j in jobs):
        sqlite_deps.insert(conn, jobs)


def _insert_rows(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """``insert_job`` for every row, in order, up to ``_ROWS_PER_INSERT`` rows per statement.

    A statement inserts its rows in the order given, so ``seq`` follows the input; a
    taken id or key aborts the statement whole (``IntegrityError``), as it aborted
    the one row before.
    """
    if not rows:
        return
    most = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // len(rows[0])
    per = max(1, min(_ROWS_PER_INSERT, most))
    for start in range(0, len(rows), per):
        part = rows[start : start + per]
        conn.execute(_insert_many(len(part)), [value for row in part for value in row])


@functools.cache
def _insert_many(count: int) -> str:
    """``insert_job`` with ``count`` rows of values (the statement cache keeps each text)."""
    head, sep, values = SQL["insert_job"].partition("VALUES")
    return head + sep + ",\n".join([values.strip()] * count)


def _fire(conn: sqlite3.Connection, fire: Fire, now: int) -> Fired:
    row = conn.execute(SQL["fire_claim"], fire_claim_values(fire, now)).fetchone()
    if row is None:
        return Fired(handled=False)
    made = None
    previous = None
    if row["last_job_id"] is not None:
        found = conn.execute(SQL["job_state"], {"id": row["last_job_id"]}).fetchone()
        previous = None if found is None else found[0]
    if fire_makes(row["overlap"], previous):
        made = fire.job.id
        try:
            _insert_jobs(conn, [fire.job], _job_rows([fire.job], now))
        except sqlite3.IntegrityError:
            # Made already (``schedule run`` in the same second): it counts as made.
            if not _exists(conn, made):
                raise
    conn.execute(SQL["fire_done"], fire_done_values(fire, made))
    return Fired(handled=True, job_id=made)


def _begin_stream(conn: sqlite3.Connection) -> int:
    """``BEGIN IMMEDIATE``; the ``seq`` after which this transaction's jobs are numbered."""
    begin(conn)
    row = conn.execute(
        "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'jobs'), 0),"
        " coalesce((SELECT max(seq) FROM jobs), 0))"
    ).fetchone()
    return int(row[0])


def _insert_chunk(
    jobs: Sequence[NewJob],
    rows: Sequence[tuple[Any, ...]],
    before: int,
    start: int,
    conn: sqlite3.Connection,
) -> None:
    """Insert one chunk of a stream (``before`` jobs came earlier) inside its transaction."""
    chained = any(j.after for j in jobs)
    if chained:
        # Dependencies on jobs of earlier chunks: those rows are in, in this same
        # transaction, so the store's check finds them (a later one is an error).
        unmet = sqlite_deps.plan(conn, jobs)
        rows = [(*row[:-1], n) for row, n in zip(rows, unmet, strict=True)]  # unmet is last
    conn.execute("SAVEPOINT chunk")
    try:
        _insert_rows(conn, rows)
        if chained:
            sqlite_deps.insert(conn, jobs)
    except sqlite3.IntegrityError as exc:
        conn.execute("ROLLBACK TO chunk")
        raise _stream_duplicate(conn, jobs, before, start) from exc
    conn.execute("RELEASE chunk")


def _stream_duplicate(
    conn: sqlite3.Connection, jobs: Sequence[NewJob], before: int, start: int
) -> DuplicateJob:
    """Which job of the chunk is refused, and whether the other is of this stream.

    Jobs take ``seq`` one after another in the stream's transaction (AUTOINCREMENT
    after ``start``), so the other job's position in the stream is ``seq - start``.
    """

    def earlier(job_id: str) -> int | None:
        row = conn.execute("SELECT seq FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None or row[0] <= start else int(row[0]) - start

    found = duplicate_job(jobs, functools.partial(_exists, conn), functools.partial(_holder, conn))
    if found.position is None:
        return found
    found.position += before
    other = found.holder if found.key is not None else found.job_id
    found.earlier = None if other is None else earlier(other)
    return found


def _exists(conn: sqlite3.Connection, job_id: str) -> bool:
    return conn.execute(SQL["job_exists"], {"id": job_id}).fetchone() is not None


def _holder(conn: sqlite3.Connection, key: str | None) -> tuple[str, str] | None:
    """The id and state of the job holding ``key``, if one does."""
    row = conn.execute(SQL["key_holder"], {"key": key}).fetchone()
    return None if row is None else (row[0], row[1])


def _fetch_all(sql: str, args: Mapping[str, Any], conn: sqlite3.Connection) -> list[Any]:
    return conn.execute(sql, args).fetchall()


def _policy(conn: sqlite3.Connection) -> RetryPolicy:
    return policy_from_stored({r[0]: r[1] for r in conn.execute(SQL["config_all"])})


def _next_due(conn: sqlite3.Connection, queues: Sequence[str] | None) -> int | None:
    if queues is None:
        row = conn.execute(SQL["next_due_any"]).fetchone()
    else:
        row = conn.execute(SQL["next_due_queues"], {"queues": json.dumps(list(queues))}).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def _finish_all(
    conn: sqlite3.Connection, cycle: Cycle, started: Mapping[tuple[str, int], dict[str, Any]]
) -> list[FinishResult]:
    """Finish the cycle's attempts; ``started``: the start records of some of them
    (by job id and token), written with their end."""
    worker_id, finishes, now = cycle.worker_id, cycle.finishes, cycle.now
    decisions = decide_finishes(finishes, lambda: _policy(conn))
    held: dict[str, str] = {}
    settled: list[tuple[str, str]] = []
    tallies = Tallies()
    for args in finish_records(finishes, decisions):
        args.update(worker=worker_id, now=now)
        start = started.get((args["id"], args["token"]))
        row = conn.execute(SQL["finish_job"], args).fetchone()
        if row is None:
            if start is not None:
                # Not this worker's attempt any more: its start is still recorded.
                conn.execute(SQL["record_start"], start)
        else:
            if start is None:
                ended = conn.execute(SQL["finish_attempt"], args).fetchone()
            else:
                ended = conn.execute(SQL["finish_attempt_started"], {**args, **start}).fetchone()
            held[row["id"]] = row["state"]
            if row["waited"]:
                settled.append((row["id"], row["state"]))
            if ended is not None:
                duration = now - ended["started_at"]
                # A state other than the one decided: a cancel request was in force.
                how = args["tally"] if row["state"] == args["state"] else args["cancel_tally"]
                tallies.add(row["queue"], how, duration, outcome=args["outcome"], now=now)
    if held:
        conn.execute(SQL["count_done"], {"n": len(held), "worker": worker_id})
    _write_tallies(conn, tallies)
    # The dependents of jobs that just ended, in the transaction that ended them
    # (only jobs some job waits on: settle finds nothing to do for the others).
    if settled:
        sqlite_deps.settle(conn, settled, now)
    return finish_results(finishes, decisions, held, now)


def _write_tallies(conn: sqlite3.Connection, tallies: Tallies) -> None:
    """The finished-attempt counters, in the transaction that finished the attempts:
    every cell in one ``executemany`` of one table (migration 013)."""
    if tallies:
        conn.executemany(SQL["count_tallies"], tallies.cells())


__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "SQL", "SqliteBackend", "job_from_row", "migrate"]
