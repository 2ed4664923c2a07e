"""The PostgreSQL store's side of what a person does to jobs: cancel, retry, rm, purge, update.

Kept apart from ``postgres.py`` (the workers' paths). Each named-id operation is
one transaction: lock the named rows (``FOR UPDATE``, in id order), let
``operations`` decide (it raises, and the transaction rolls back, if one job is
refused), apply. A worker's claim skips locked rows, so a job being cancelled is
never claimed in the middle; a worker finishing one waits for the lock, then its
fenced write sees the new state. Bulk operations go in short batches.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg

from queuectl.backends import operations, postgres_deps
from queuectl.backends.operations import CancelResult, RetryPlan
from queuectl.backends.postgres_conn import compile_query
from queuectl.backends.rows import job_from_row
from queuectl.exceptions import BackendError
from queuectl.models import Job, JobChanges, JobState
from queuectl.sql import queries

SQL = {name: compile_query(text) for name, text in queries("postgres", "operations").items()}
_DEADLOCK_TRIES = 3
T = TypeVar("T")


class PostgresOperations:
    """Mixed into ``PostgresBackend``, which provides the pool and the clock."""

    def _conn(self) -> contextlib.AbstractAsyncContextManager[asyncpg.Connection]:
        raise NotImplementedError

    def _clock(self, now: int) -> int | None:
        raise NotImplementedError

    #: The schema's NOTIFY channel (``PostgresBackend`` sets it).
    channel: str

    @contextlib.asynccontextmanager
    async def _locked(
        self, job_ids: Sequence[str]
    ) -> AsyncIterator[tuple[asyncpg.Connection, dict[str, JobState]]]:
        async with self._conn() as conn, conn.transaction():
            rows = await _run(conn, "lock_states", ids=list(dict.fromkeys(job_ids)))
            yield conn, {r["id"]: JobState(r["state"]) for r in rows}

    async def job_states(self, job_ids: Sequence[str]) -> dict[str, JobState]:
        async with self._conn() as conn:
            rows = await _run(conn, "states_of", ids=list(job_ids))
        return {r["id"]: JobState(r["state"]) for r in rows}

    async def cancel(self, job_ids: Sequence[str], *, now: int) -> CancelResult:
        return await _again_on_deadlock(lambda: self._cancel(job_ids, now))

    async def _cancel(self, job_ids: Sequence[str], now: int) -> CancelResult:
        clock = self._clock(now)
        async with self._locked(job_ids) as (conn, states):
            plan = operations.plan_cancel(job_ids, states)
            if plan.cancelled:
                await _run(conn, "cancel_waiting", ids=plan.cancelled, clock=clock)
                cancelled = [(i, JobState.CANCELLED.value) for i in plan.cancelled]
                await postgres_deps.settle(conn, cancelled, clock=clock, channel=self.channel)
            if plan.requested:
                await _run(conn, "request_cancel", ids=plan.requested, clock=clock)
            return plan

    async def retry_jobs(self, job_ids: Sequence[str], *, now: int) -> RetryPlan:
        return await _again_on_deadlock(lambda: self._retry_jobs(job_ids, now))

    async def _retry_jobs(self, job_ids: Sequence[str], now: int) -> RetryPlan:
        async with self._locked(job_ids) as (conn, states):
            plan = operations.plan_retry(job_ids, states)
            if plan.ids:
                clock = self._clock(now)
                await postgres_deps.check_retry(conn, plan.ids)
                await _run(conn, "retry_jobs", ids=plan.ids, reset=plan.reset, clock=clock)
                await postgres_deps.revive(conn, plan.ids, clock=clock, channel=self.channel)
                await conn.execute("SELECT nextval('queuectl_version')")
            return plan

    async def _retry_state_batch(
        self, *, state: JobState, queue: str | None, after: int, upto: int, now: int
    ) -> list[asyncpg.Record]:
        values = {"state": state.value, "queue": queue, "after": after, "upto": upto}
        clock = self._clock(now)
        async with self._conn() as conn, conn.transaction():
            rows = await _run(
                conn, "retry_state_batch", clock=clock, limit=operations.BATCH, **values
            )
            # The jobs their end cancelled come back with them (reference §19.1).
            ids = [r["id"] for r in rows]
            await postgres_deps.revive(conn, ids, clock=clock, channel=self.channel)
            return rows

    async def remove_jobs(self, job_ids: Sequence[str]) -> list[str]:
        return await _again_on_deadlock(lambda: self._remove_jobs(job_ids))

    async def _remove_jobs(self, job_ids: Sequence[str]) -> list[str]:
        async with self._locked(job_ids) as (conn, states):
            ids = operations.plan_remove(job_ids, states)
            await postgres_deps.check_remove(conn, ids)
            await _run(conn, "delete_jobs", ids=ids)
            await postgres_deps.forget(conn, ids)
            return ids

    async def _purge_count(
        self, states: Sequence[JobState], *, before: int, queue: str | None
    ) -> int:
        values = {"states": [s.value for s in states], "before": before, "queue": queue}
        async with self._conn() as conn:
            rows = await _run(conn, "purge_count", **values)
        return int(rows[0]["n"])

    async def _purge_batch(
        self, states: Sequence[JobState], *, before: int, queue: str | None
    ) -> int:
        values = {"states": [s.value for s in states], "before": before, "queue": queue}
        async with self._conn() as conn:
            rows = await _run(conn, "purge_batch", limit=operations.BATCH, **values)
        return int(rows[0]["n"])

    async def update_job(self, job_id: str, changes: JobChanges, *, now: int) -> Job:
        async with self._locked([job_id]) as (conn, states):
            operations.check_update(job_id, states.get(job_id))
            rows = await _run(
                conn,
                "update_job",
                id=job_id,
                clock=self._clock(now),
                priority=changes.priority,
                queue=changes.queue,
                max_retries=changes.max_retries,
                timeout_s=changes.timeout_s,
                move=changes.next_run_at is not None,
                delay_ms=changes.delay_ms,
                run_at=changes.run_at,
                next_run_at=changes.next_run_at,
            )
            if changes.next_run_at is not None:
                await conn.execute("SELECT nextval('queuectl_version')")
            return job_from_row(rows[0])


async def _again_on_deadlock(op: Callable[[], Awaitable[T]]) -> T:
    """Run ``op`` again if PostgreSQL broke a deadlock by aborting it (nothing was changed).

    Locking several named jobs can meet a worker's batch that finishes some of them
    in another order; the server aborts one of the two after ``deadlock_timeout``.
    """
    for attempt in range(_DEADLOCK_TRIES):
        try:
            return await op()
        except BackendError as exc:
            last = attempt + 1 == _DEADLOCK_TRIES
            if last or not isinstance(exc.__cause__, asyncpg.DeadlockDetectedError):
                raise
    raise AssertionError("unreachable")


async def _run(conn: asyncpg.Connection, name: str, **values: Any) -> list[asyncpg.Record]:
    query = SQL[name]
    return await conn.fetch(query.text, *query.args(values))  # type: ignore[no-any-return]
