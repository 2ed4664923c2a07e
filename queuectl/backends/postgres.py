"""The shared store: one PostgreSQL schema, driven through asyncpg, for workers on many hosts.

Install with ``pip install 'queuectl[postgres]'`` and select it with a
``postgresql://`` URL (``?schema=NAME`` picks the schema, default ``queuectl``;
see ``backends.pgconn``). Each store holds a small asyncpg pool, plus one
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
The retry policy is decided here in Python (``retry.decide``) from the stored
config, which the statement checks is still current, so a finish always follows
the backoff settings stored at that moment without a second round trip.

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

from queuectl import procs
from queuectl.backends.base import AttemptOutput, Exchanged, FinishResult, OnLost, QueueProbe
from queuectl.backends.pgconn import (
    Listener,
    Target,
    channel_name,
    compile_query,
    create_pool,
    lock_key,
    migrate,
    parse_target,
    wrapped,
)
from queuectl.clock import now_ms
from queuectl.config import from_stored
from queuectl.exceptions import (
    BackendError,
    DuplicateJob,
    InvalidJob,
    InvalidTransition,
    JobNotFound,
)
from queuectl.models import (
    Attempt,
    Claim,
    Finish,
    Heartbeat,
    Job,
    JobState,
    LostAttempt,
    NewJob,
    Outcome,
    ProcessStart,
    StopMode,
    WorkerInfo,
)
from queuectl.retry import RetryDecision, RetryPolicy, decide
from queuectl.sql import queries

SQL = {name: compile_query(text) for name, text in queries("postgres").items()}
#: How often ``exchange`` re-decides finishes because the stored config changed under it.
_CONFIG_ATTEMPTS = 5
#: Delta rows of ``job_counts`` above which a reader folds them together.
_COMPACT_ROWS = 1000


def job_from_row(row: Mapping[str, Any]) -> Job:
    return Job(
        id=row["id"],
        command=row["command"],
        state=JobState(row["state"]),
        attempts=row["attempts"],
        max_retries=row["max_retries"],
        priority=row["priority"],
        queue=row["queue"],
        timeout_s=row["timeout_s"],
        run_at=row["run_at"],
        next_run_at=row["next_run_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        last_error=row["last_error"],
        exit_code=row["exit_code"],
        env=json.loads(row["env"]) if row["env"] else {},
        cwd=row["cwd"],
        claims=row["claims"],
        worker_id=row["worker_id"],
        lease_until=row["lease_until"],
    )


def _lost_from_row(row: Mapping[str, Any], token: str = "claims") -> LostAttempt:
    return LostAttempt(
        job_id=row["job_id"] if "job_id" in row else row["id"],
        token=row[token],
        attempts=row["attempts"],
        max_retries=row["max_retries"],
        worker_id=row["worker_id"],
        host=row["host"],
        pgid=row["pgid"],
        proc_start=row["proc_start"],
    )


def _policy(config_json: str | None) -> RetryPolicy:
    config = from_stored(json.loads(config_json) if config_json else {})
    return RetryPolicy(backoff_base=config.backoff_base, backoff_max_s=config.backoff_max)


class PostgresBackend:
    """The shared store. Open it with ``PostgresBackend.open``; close with ``aclose``."""

    dialect = "postgres"

    def __init__(self, target: Target, pool: asyncpg.Pool, *, caller_clock: bool) -> None:
        self.target = target.shown
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
                await migrate(conn, parsed)
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
        async with wrapped(self._target), self._pool.acquire() as conn:
            yield conn

    def _clock(self, now: int) -> int | None:
        return now if self._caller_clock else None

    async def _fetch(self, name: str, **values: Any) -> list[asyncpg.Record]:
        query = SQL[name]
        async with self._conn() as conn:
            return await conn.fetch(query.text, *query.args(values))  # type: ignore[no-any-return]

    async def _fetchrow(self, name: str, **values: Any) -> asyncpg.Record | None:
        rows = await self._fetch(name, **values)
        return rows[0] if rows else None

    async def enqueue(self, jobs: Sequence[NewJob], *, now: int) -> list[Job]:
        if not jobs:
            return []
        query = SQL["insert_jobs"]
        values = {
            "clock": self._clock(now),
            "now": now,
            "ids": [j.id for j in jobs],
            "commands": [j.command for j in jobs],
            "queues": [j.queue for j in jobs],
            "priorities": [j.priority for j in jobs],
            "max_retries": [j.max_retries for j in jobs],
            "timeouts": [j.timeout_s for j in jobs],
            "envs": [json.dumps(j.env) if j.env else None for j in jobs],
            "cwds": [j.cwd for j in jobs],
            "run_ats": [j.run_at for j in jobs],
            "next_run_ats": [j.next_run_at for j in jobs],
            "delays": [j.delay_ms for j in jobs],
        }
        async with self._conn() as conn:
            try:
                row = await conn.fetchrow(query.text, *query.args(values))
            except asyncpg.UniqueViolationError as exc:
                raise await _duplicate(conn, jobs) from exc
            except asyncpg.DataError as exc:
                raise _unstorable(jobs, exc) from exc
        return [_inserted(j, row["now"], now) for j in jobs]

    async def exchange(
        self,
        *,
        worker_id: str,
        starts: Sequence[ProcessStart] = (),
        finishes: Sequence[Finish] = (),
        claim: int = 0,
        queues: Sequence[str] | None = None,
        lease_ms: int = 10_000,
        now: int,
    ) -> Exchanged:
        if not (starts or finishes or claim):
            return Exchanged()
        values: dict[str, Any] = {
            "clock": self._clock(now),
            "worker": worker_id,
            "limit": claim,
            "queues": list(queues) if queues is not None else None,
            "lease_ms": lease_ms,
            "channel": self.channel,
            **_start_columns(starts, finishes),
        }
        for _ in range(_CONFIG_ATTEMPTS):
            policy = _policy(self._config_json)
            decisions = [_decide(f, policy) for f in finishes]
            values.update(_finish_columns(finishes, decisions))
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
        held = set(head["held"])
        finished = [
            FinishResult(f.job_id, f.job_id in held, d.state, _after(now, d.next_run_at))
            for f, (d, _) in zip(finishes, decisions, strict=True)
        ]
        claimed = sorted(
            (r for r in rows if r["id"] is not None), key=lambda r: (-r["priority"], r["seq"])
        )
        claims = [Claim(job_from_row(r), r["claims"], r["lease_until"] + back) for r in claimed]
        next_due = head["next_due"]
        return Exchanged(finished, claims, None if next_due is None else next_due + back)

    async def heartbeat(
        self, *, worker_id: str, running: Sequence[tuple[str, int]], lease_ms: int, now: int
    ) -> Heartbeat:
        query = SQL["heartbeat"]
        args = query.args({"clock": self._clock(now), "lease_ms": lease_ms, "worker": worker_id})
        # A heartbeat stuck longer than this is a failed one, so the worker can
        # fence itself before others take its jobs over.
        async with self._conn() as conn:
            row = await conn.fetchrow(query.text, *args, timeout=max(1.0, lease_ms / 3000))
        held = set(zip(row["ids"], row["tokens"], strict=True))
        lost = frozenset(t for t in running if t not in held)
        if row["stop"] is None:
            return Heartbeat(lost, StopMode.NONE, registered=False)
        return Heartbeat(lost, StopMode(row["stop"]))

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
            lost = [_lost_from_row(r) for r in rows]
            if lost:
                await self._recover_rows(conn, lost, clock, on_lost)
            if await conn.fetchval("SELECT count(*) FROM job_counts") > 64:
                await conn.execute(SQL["compact_counts"].text)
            return lost

    async def _recover_rows(
        self,
        conn: asyncpg.Connection,
        lost: list[LostAttempt],
        clock: int | None,
        on_lost: OnLost | None,
    ) -> None:
        stored = {r["key"]: r["value"] for r in await conn.fetch(SQL["config_all"].text)}
        policy = _policy(json.dumps(stored))
        states, delays, errors = [], [], []
        for item in lost:
            if on_lost is not None:
                on_lost(item)
            decision = policy.after_failure(
                attempts=item.attempts, max_retries=item.max_retries, now=0
            )
            states.append(decision.state.value)
            delays.append(decision.next_run_at)
            errors.append(f"worker lost: {item.worker_id or 'unknown'} stopped heartbeating")
        query = SQL["recover"]
        values = {
            "clock": clock,
            "host": self.host,
            "ids": [i.job_id for i in lost],
            "tokens": [i.token for i in lost],
            "states": states,
            "delays": delays,
            "errors": errors,
        }
        await conn.fetchrow(query.text, *query.args(values))

    async def release_strays(self, *, host: str, now: int, on_stray: OnLost) -> list[LostAttempt]:
        async with self._conn() as conn, conn.transaction():
            query = SQL["stray_attempts"]
            rows = await conn.fetch(
                query.text, *query.args({"host": host, "clock": self._clock(now)})
            )
            strays = [_lost_from_row(r, token="attempt") for r in rows]
            for item in strays:
                on_stray(item)
            if strays:
                await conn.execute(
                    SQL["forget_strays"].text,
                    [s.job_id for s in strays],
                    [s.token for s in strays],
                )
            return strays

    async def requeue_dead(self, job_ids: Sequence[str] | None, *, now: int) -> list[str]:
        clock = self._clock(now)
        async with self._conn() as conn, conn.transaction():
            if job_ids is None:
                done = [r[0] for r in await conn.fetch(SQL["requeue_all_dead"].text, clock)]
            else:
                # An id named twice is one request for that job, not a second retry of it.
                done = [
                    await _requeue_one(conn, job_id, clock) for job_id in dict.fromkeys(job_ids)
                ]
            if done:
                await conn.execute(SQL["bump_version"].text)
            return done

    async def get_job(self, job_id: str) -> Job | None:
        row = await self._fetchrow("get_job", id=job_id)
        return None if row is None else job_from_row(row)

    async def list_jobs(
        self, *, state: JobState | None = None, queue: str | None = None, limit: int = 50
    ) -> list[Job]:
        name = {
            (False, False): "list_all",
            (True, False): "list_by_state",
            (False, True): "list_by_queue",
            (True, True): "list_by_state_queue",
        }[(state is not None, queue is not None)]
        values: dict[str, Any] = {"limit": limit if limit > 0 else None}
        if state is not None:
            values["state"] = state.value
        if queue is not None:
            values["queue"] = queue
        rows = await self._fetch(name, **values)
        return [job_from_row(r) for r in rows]

    async def counts(self, queues: Sequence[str] | None = None) -> dict[JobState, int]:
        rows = await self._fetch("counts", queues=list(queues) if queues is not None else None)
        if sum(r["rows"] for r in rows) > _COMPACT_ROWS:
            async with self._conn() as conn:
                await conn.execute(SQL["compact_counts"].text)
        found = {r["state"]: r["n"] for r in rows}
        return {s: int(found.get(s.value) or 0) for s in JobState}

    async def history(self, job_id: str) -> list[Attempt]:
        rows = await self._fetch("history", id=job_id)
        return [
            Attempt(
                job_id=r["job_id"],
                attempt=r["attempt"],
                worker_id=r["worker_id"],
                started_at=r["started_at"],
                finished_at=r["finished_at"],
                outcome=Outcome(r["outcome"]) if r["outcome"] else None,
                exit_code=r["exit_code"],
                signal=r["signal"],
                error=r["error"],
                host=r["host"],
                pid=r["pid"],
                output_size=r["output_size"],
                output_truncated=r["output_size"] > (r["kept"] or 0),
            )
            for r in rows
        ]

    async def attempt_output(self, job_id: str, attempt: int | None) -> AttemptOutput | None:
        row = await self._fetchrow("attempt_output", id=job_id, attempt=attempt)
        if row is None:
            return None
        return AttemptOutput(
            attempt=row["attempt"],
            output=bytes(row["output"] or b""),
            output_size=row["output_size"],
            log_path=row["log_path"],
            host=row["host"],
            finished=row["finished_at"] is not None,
        )

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

    async def deregister_worker(self, worker_id: str) -> None:
        await self._fetch("deregister_worker", id=worker_id)

    async def list_workers(self) -> list[WorkerInfo]:
        """Times come back on this host's clock, so callers can judge heartbeat ages."""
        local = now_ms()
        rows = await self._fetch("list_workers", clock=local if self._caller_clock else None)
        return [_worker_from_row(r, local - r["server_now"]) for r in rows]

    async def request_stop(self, mode: StopMode) -> list[str]:
        return [r["id"] for r in await self._fetch("request_stop", mode=int(mode))]

    async def get_config(self) -> dict[str, str]:
        return {r["key"]: r["value"] for r in await self._fetch("config_all")}

    async def set_config(self, values: Mapping[str, str]) -> None:
        await self._fetch("config_set", keys=list(values), values=list(values.values()))

    async def notify(self, message: bytes) -> None:
        """NOTIFY every listening worker of this queue, on every host."""
        async with self._conn() as conn:
            await conn.execute("SELECT pg_notify($1, $2)", self.channel, message.decode())

    async def subscribe(self, worker_id: str, callback: Callable[[bytes], None]) -> None:
        del worker_id  # every worker of the queue listens on the same channel
        self._listener = Listener(self._target, self.channel, callback)
        await self._listener.ensure()


_QUIET_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


def _inserted(job: NewJob, server_now: int, now: int) -> Job:
    """The job as ``insert_jobs`` stored it (the same rules, in Python)."""
    run_at, next_run_at = job.run_at, job.next_run_at
    if job.delay_ms is not None:
        run_at = next_run_at = server_now + job.delay_ms
    elif next_run_at <= now:
        next_run_at = server_now - (now - next_run_at)
    return Job(
        id=job.id,
        command=job.command,
        state=JobState.PENDING,
        attempts=0,
        max_retries=job.max_retries,
        priority=job.priority,
        queue=job.queue,
        timeout_s=job.timeout_s,
        run_at=run_at,
        next_run_at=next_run_at,
        created_at=server_now,
        updated_at=server_now,
        last_error=None,
        exit_code=None,
        env=job.env,
        cwd=job.cwd,
    )


async def _duplicate(conn: asyncpg.Connection, jobs: Sequence[NewJob]) -> DuplicateJob:
    existing = {r[0] for r in await conn.fetch(SQL["existing_ids"].text, [j.id for j in jobs])}
    for position, job in enumerate(jobs, 1):
        if job.id in existing:
            return DuplicateJob(
                f"job {position}: a job with id {job.id!r} already exists",
                job_id=job.id,
                position=position,
            )
    return DuplicateJob()


def _unstorable(jobs: Sequence[NewJob], exc: Exception) -> InvalidJob | BackendError:
    """Text PostgreSQL cannot hold (a lone surrogate) names its job instead of failing late."""
    for position, job in enumerate(jobs, 1):
        texts = [job.id, job.command, job.queue, job.cwd or "", *job.env, *job.env.values()]
        for text in texts:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                return InvalidJob(f"job {position}: text that is not valid Unicode: {text!r}")
    return BackendError(f"cannot store the jobs: {exc}")


def _decide(finish: Finish, policy: RetryPolicy) -> tuple[RetryDecision, bool]:
    """The next state and whether the attempt is refunded, with ``next_run_at`` as a delay.

    Deciding at ``now = 0`` turns ``next_run_at`` into a delay in ms, which the
    statement adds to the server's clock.
    """
    r = finish.result
    return decide(
        ok=r.ok,
        interrupted=r.interrupted,
        attempts=finish.attempts,
        max_retries=finish.max_retries,
        policy=policy,
        now=0,
    )


def _after(now: int, delay_ms: int | None) -> int | None:
    return None if delay_ms is None else now + delay_ms


def _finish_columns(
    finishes: Sequence[Finish], decisions: Sequence[tuple[RetryDecision, bool]]
) -> dict[str, list[Any]]:
    results = [f.result for f in finishes]
    return {
        "f_ids": [f.job_id for f in finishes],
        "f_tokens": [f.token for f in finishes],
        "f_outcomes": [r.outcome.value for r in results],
        "f_exit_codes": [r.exit_code for r in results],
        "f_signals": [r.signal for r in results],
        "f_errors": [r.describe() for r in results],
        "f_outputs": [r.output_tail for r in results],
        "f_output_sizes": [r.output_size for r in results],
        "f_states": [d.state.value for d, _ in decisions],
        "f_delays": [d.next_run_at for d, _ in decisions],
        "f_refunds": [1 if refund else 0 for _, refund in decisions],
    }


def _start_columns(
    starts: Sequence[ProcessStart], finishes: Sequence[Finish]
) -> dict[str, list[Any]]:
    """Starts as columns; a start whose attempt also finishes in this batch rides on the finish.

    Two CTEs of one statement must not update the same attempts row.
    """
    finishing = {(f.job_id, f.token) for f in finishes}
    alone = [s for s in starts if (s.job_id, s.token) not in finishing]
    by_finish = {(s.job_id, s.token): s for s in starts if (s.job_id, s.token) in finishing}
    riding = [by_finish.get((f.job_id, f.token)) for f in finishes]
    return {
        "s_ids": [s.job_id for s in alone],
        "s_tokens": [s.token for s in alone],
        "s_hosts": [s.host for s in alone],
        "s_pids": [s.pid for s in alone],
        "s_pgids": [s.pgid for s in alone],
        "s_proc_starts": [s.proc_start for s in alone],
        "s_log_paths": [s.log_path for s in alone],
        "f_hosts": [s.host if s else None for s in riding],
        "f_pids": [s.pid if s else None for s in riding],
        "f_pgids": [s.pgid if s else None for s in riding],
        "f_proc_starts": [s.proc_start if s else None for s in riding],
        "f_log_paths": [s.log_path if s else None for s in riding],
    }


async def _requeue_one(conn: asyncpg.Connection, job_id: str, clock: int | None) -> str:
    query = SQL["requeue_dead"]
    row = await conn.fetchrow(query.text, *query.args({"id": job_id, "clock": clock}))
    if row is not None:
        return str(row[0])
    state = await conn.fetchval(SQL["job_state"].text, job_id)
    if state is None:
        raise JobNotFound(f"no job with id {job_id!r}")
    raise InvalidTransition(f"job {job_id!r} is {state}, not dead; only dead jobs can be retried")


def _worker_from_row(row: Mapping[str, Any], shift: int) -> WorkerInfo:
    return WorkerInfo(
        id=row["id"],
        host=row["host"],
        pid=row["pid"],
        started_at=row["started_at"] + shift,
        heartbeat_at=row["heartbeat_at"] + shift,
        count=row["count"],
        jobs_done=row["jobs_done"],
        queues=tuple(json.loads(row["queues"])) if row["queues"] else (),
        proc_start=row["proc_start"],
        stop_requested=StopMode(row["stop_requested"]),
    )
