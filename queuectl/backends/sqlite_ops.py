"""The SQLite store's side of what a person does to jobs: cancel, retry, rm, purge, update.

Kept apart from ``sqlite.py`` (the worker's paths). Each named-id operation is one
``BEGIN IMMEDIATE`` transaction: read the jobs' states, let ``operations`` decide
(it raises, and the transaction rolls back, if one job is refused), apply. Bulk
operations (``retry --state``, ``purge``, retention) go in batches, each its own
short transaction, so a million old jobs never hold the write lock for long.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from queuectl.backends import operations, sqlite_deps
from queuectl.backends.operations import CancelResult, RetryPlan
from queuectl.backends.rows import job_from_row
from queuectl.backends.sqlite_conn import transaction
from queuectl.models import Job, JobState
from queuectl.sql import queries

if TYPE_CHECKING:
    from queuectl.models import JobChanges

T = TypeVar("T")
SQL = queries("sqlite", "operations")


def _states(conn: sqlite3.Connection, job_ids: Sequence[str]) -> dict[str, JobState]:
    rows = conn.execute(SQL["states_of"], {"ids": json.dumps(list(job_ids))})
    return {r[0]: JobState(r[1]) for r in rows}


class OperatorWrites:
    """Mixed into ``SqliteBackend``, which provides ``_call`` (one hop to the DB thread)."""

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    async def job_states(self, job_ids: Sequence[str]) -> dict[str, JobState]:
        return await self._call(lambda c: _states(c, job_ids))

    async def cancel(self, job_ids: Sequence[str], *, now: int) -> CancelResult:
        def body(conn: sqlite3.Connection) -> CancelResult:
            plan = operations.plan_cancel(job_ids, _states(conn, job_ids))
            queues = Counter(
                conn.execute(SQL["cancel_waiting"], {"id": i, "now": now}).fetchone()[0]
                for i in plan.cancelled
            )
            conn.executemany(
                SQL["count_cancelled_waiting"], [{"queue": q, "n": n} for q, n in queues.items()]
            )
            conn.executemany(SQL["request_cancel"], [{"id": i, "now": now} for i in plan.requested])
            sqlite_deps.settle(conn, [(i, "cancelled") for i in plan.cancelled], now)
            return plan

        return await self._call(lambda c: transaction(c, body))

    async def retry_jobs(self, job_ids: Sequence[str], *, now: int) -> RetryPlan:
        def body(conn: sqlite3.Connection) -> RetryPlan:
            plan = operations.plan_retry(job_ids, _states(conn, job_ids))
            sqlite_deps.check_retry(conn, plan.ids)
            rows = [{"id": i, "reset": 1, "now": now} for i in plan.reset]
            rows += [{"id": i, "reset": 0, "now": now} for i in plan.keep]
            conn.executemany(SQL["retry_job"], rows)
            sqlite_deps.revive(conn, plan.ids, now)
            return plan

        return await self._call(lambda c: transaction(c, body))

    async def _retry_state_batch(
        self, *, state: JobState, queue: str | None, after: int, upto: int, now: int
    ) -> list[Any]:
        args = {"state": state.value, "queue": queue, "now": now, "after": after, "upto": upto}

        def body(conn: sqlite3.Connection) -> list[Any]:
            rows = conn.execute(SQL["retry_state_batch"], {**args, "limit": operations.BATCH})
            moved = rows.fetchall()
            # The jobs their end cancelled come back with them (reference §19.1).
            sqlite_deps.revive(conn, [r["id"] for r in moved], now)
            return moved

        # One short transaction per batch.
        return await self._call(lambda c: transaction(c, body))

    async def remove_jobs(self, job_ids: Sequence[str]) -> list[str]:
        def body(conn: sqlite3.Connection) -> list[str]:
            ids = operations.plan_remove(job_ids, _states(conn, job_ids))
            sqlite_deps.check_remove(conn, ids)
            conn.executemany(SQL["delete_job"], [{"id": i} for i in ids])
            conn.execute(SQL["delete_attempts"], {"ids": json.dumps(ids)})
            sqlite_deps.forget(conn, ids)
            return ids

        return await self._call(lambda c: transaction(c, body))

    def _purge_args(
        self, states: Sequence[JobState], before: int, queue: str | None
    ) -> tuple[list[str], dict[str, Any]]:
        """Which purge statements apply (finished and dead jobs sit in different
        indexes), and their arguments."""
        finished = [s.value for s in states if s is not JobState.DEAD]
        args = {"states": json.dumps(finished), "before": before, "queue": queue}
        kinds = (["finished"] if finished else []) + (["dead"] if JobState.DEAD in states else [])
        return kinds, args

    async def _purge_count(
        self, states: Sequence[JobState], *, before: int, queue: str | None
    ) -> int:
        kinds, args = self._purge_args(states, before, queue)
        total = 0
        for kind in kinds:
            rows = await self._call(functools.partial(_fetch, f"count_{kind}", args))
            total += int(rows[0][0])
        return total

    async def _purge_batch(
        self, states: Sequence[JobState], *, before: int, queue: str | None
    ) -> int:
        kinds, args = self._purge_args(states, before, queue)
        deleted = 0
        for kind in kinds:
            left = operations.BATCH - deleted
            if left <= 0:
                break
            batch = {**args, "limit": left}
            deleted += await self._call(functools.partial(_delete_batch, kind, batch))
        return deleted

    async def update_job(self, job_id: str, changes: JobChanges, *, now: int) -> Job:
        args = {
            "id": job_id,
            "now": now,
            "priority": changes.priority,
            "queue": changes.queue,
            "max_retries": changes.max_retries,
            "timeout_s": changes.timeout_s,
            "move": changes.next_run_at is not None,
            "run_at": changes.run_at,
            "next_run_at": changes.next_run_at,
        }

        def body(conn: sqlite3.Connection) -> Job:
            found = _states(conn, [job_id]).get(job_id)
            operations.check_update(job_id, found)
            row = conn.execute(SQL["update_job"], args).fetchone()
            return job_from_row(row)

        return await self._call(lambda c: transaction(c, body))


def _fetch(name: str, args: dict[str, Any], conn: sqlite3.Connection) -> list[sqlite3.Row]:
    return conn.execute(SQL[name], args).fetchall()


def _delete_batch(kind: str, args: dict[str, Any], conn: sqlite3.Connection) -> int:
    """One batch of a purge, with its attempts, in one short transaction."""

    def body(c: sqlite3.Connection) -> int:
        ids = [r[0] for r in c.execute(SQL[f"purge_{kind}_batch"], args).fetchall()]
        if ids:
            c.execute(SQL["delete_attempts"], {"ids": json.dumps(ids)})
            sqlite_deps.forget(c, ids)
        return len(ids)

    return transaction(conn, body)
