"""What both stores do alike, written once over the few things a dialect must provide.

``SqliteBackend`` and ``PostgresBackend`` subclass ``SqlStore``: it implements the
parts of the ``Backend`` contract that are the same whatever the SQL (the reads,
whose named queries both dialects define, the shape of ``exchange`` and of ``dlq
retry``), and leaves to each dialect how it runs a query, a worker's cycle and a
requeue. The rules those apply come from ``bookkeeping``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from queuectl.backends import bookkeeping, operations
from queuectl.backends.base import Exchanged, OnProgress
from queuectl.backends.rows import (
    attempt_from_row,
    job_from_row,
    running_from_row,
    schedule_from_row,
)
from queuectl.models import Job, JobState, Outcome, StopMode

if TYPE_CHECKING:
    from queuectl.backends.base import AttemptOutput, DueSchedules, Link, Links
    from queuectl.models import Attempt, Finish, ProcessStart, RunningJob, Schedule

#: Dead jobs moved per statement by ``dlq retry --all``.
REQUEUE_BATCH = 500
#: A result row of either driver: ``sqlite3.Row`` or asyncpg's ``Record``.
Row = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Cycle:
    """One call of ``exchange``, as the dialect runs it (see ``JobStore.exchange``)."""

    worker_id: str
    starts: Sequence[ProcessStart]
    finishes: Sequence[Finish]
    claim: int
    queues: Sequence[str] | None
    lease_ms: int
    now: int


class SqlStore(ABC):
    """The dialect-independent half of a store; subclasses run the SQL."""

    @abstractmethod
    async def _rows(self, name: str, values: Mapping[str, Any]) -> Sequence[Row]:
        """Run the named query of this dialect in a transaction of its own."""

    @abstractmethod
    async def _exchange(self, cycle: Cycle) -> Exchanged:
        """``exchange`` with something to do, in one transaction."""

    @abstractmethod
    async def _requeue_named(self, job_ids: Sequence[str], now: int) -> list[str]:
        """``requeue_dead`` of distinct ids in one transaction (``bookkeeping.not_requeued``)."""

    @abstractmethod
    async def _retry_state_batch(
        self, *, state: JobState, queue: str | None, after: int, upto: int, now: int
    ) -> Sequence[Row]:
        """Move up to ``operations.BATCH`` jobs in ``state`` after seq ``after`` back to
        ``pending`` (``retry --state``); their ``id`` and ``seq`` in order."""

    @abstractmethod
    async def _purge_count(
        self, states: Sequence[JobState], *, before: int, queue: str | None
    ) -> int:
        """How many jobs ``purge`` would delete."""

    @abstractmethod
    async def _purge_batch(
        self, states: Sequence[JobState], *, before: int, queue: str | None
    ) -> int:
        """Delete up to ``operations.BATCH`` of them with their history, in one short
        transaction; how many."""

    @abstractmethod
    async def _requeue_batch(self, *, after: int, upto: int, limit: int, now: int) -> Sequence[Row]:
        """Move up to ``limit`` dead jobs after seq ``after``; their ``id`` and ``seq`` in order."""

    def _clock(self, now: int) -> int | None:
        """The ``:clock`` of a query: the caller's ``now``, or ``None`` for the store's own."""
        return now

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
        return await self._exchange(
            Cycle(worker_id, starts, finishes, claim, queues, lease_ms, now)
        )

    async def requeue_dead(
        self, job_ids: Sequence[str] | None, *, now: int, progress: OnProgress | None = None
    ) -> list[str]:
        if job_ids is not None:
            # An id named twice is one request for that job, not a second retry of it.
            return await self._requeue_named(list(dict.fromkeys(job_ids)), now)
        upto = (await self._rows("max_seq", {}))[0]["upto"]

        async def batch(after: int) -> Sequence[Row]:
            # One autocommit statement per batch: atomic on its own, and short.
            return await self._requeue_batch(after=after, upto=upto, limit=REQUEUE_BATCH, now=now)

        return await operations.in_batches(batch, progress)

    async def retry_state(
        self, state: JobState, *, queue: str | None, now: int, progress: OnProgress | None = None
    ) -> list[str]:
        operations.check_retry_state(state)
        upto = (await self._rows("max_seq", {}))[0]["upto"]

        async def batch(after: int) -> Sequence[Row]:
            return await self._retry_state_batch(
                state=state, queue=queue, after=after, upto=upto, now=now
            )

        return await operations.in_batches(batch, progress)

    async def purge(
        self,
        states: Sequence[JobState],
        *,
        before: int,
        queue: str | None = None,
        dry_run: bool = False,
        limit: int | None = None,
    ) -> int:
        """Batches of ``operations.BATCH``, each its own transaction; ``limit`` stops
        after about that many (retention takes one batch at a time)."""
        if dry_run:
            return await self._purge_count(states, before=before, queue=queue)
        deleted = 0
        while limit is None or deleted < limit:
            n = await self._purge_batch(states, before=before, queue=queue)
            deleted += n
            if n < operations.BATCH:
                break
        return deleted

    async def dependencies(self, job_id: str) -> Links:
        from queuectl.backends.base_late import Link, Links

        def link(row: Row) -> Link:
            state = row["state"]
            return Link(row["id"], None if state is None else JobState(state), bool(row["met"]))

        after = {r["id"]: link(r) for r in await self._rows("deps_of", {"id": job_id})}
        job = await self.get_job(job_id)
        order = list(job.after) if job is not None else []
        return Links(
            after=[after[i] for i in order if i in after]
            + [v for k, v in after.items() if k not in order],
            dependents=[link(r) for r in await self._rows("dependents_of", {"id": job_id})],
        )

    async def blocked_counts(self) -> dict[str, int]:
        return {r["queue"]: int(r["n"]) for r in await self._rows("blocked_counts", {})}

    async def get_job(self, job_id: str) -> Job | None:
        rows = await self._rows("get_job", {"id": job_id})
        return job_from_row(rows[0]) if rows else None

    async def list_jobs(
        self, *, state: JobState | None = None, queue: str | None = None, limit: int = 50
    ) -> list[Job]:
        name, values = bookkeeping.list_query(state, queue, limit)
        return [job_from_row(r) for r in await self._rows(name, values)]

    async def history(self, job_id: str) -> list[Attempt]:
        return [attempt_from_row(r) for r in await self._rows("history", {"id": job_id})]

    async def attempt_output(self, job_id: str, attempt: int | None) -> AttemptOutput | None:
        from queuectl.backends.base_late import AttemptOutput

        rows = await self._rows("attempt_output", {"id": job_id, "attempt": attempt})
        if not rows:
            return None
        row = rows[0]
        return AttemptOutput(
            attempt=row["attempt"],
            output=bytes(row["output"] or b""),
            output_size=row["output_size"],
            log_path=row["log_path"],
            host=row["host"],
            finished=row["finished_at"] is not None,
        )

    async def running_jobs(self, *, limit: int) -> list[RunningJob]:
        return [running_from_row(r) for r in await self._rows("running_jobs", {"limit": limit})]

    async def finished_since(self, since: int) -> dict[Outcome, int]:
        rows = await self._rows("finished_since", {"since": since})
        return {Outcome(r["outcome"]): int(r["n"]) for r in rows if r["outcome"]}

    async def next_retry(self) -> Job | None:
        rows = await self._rows("next_retry", {})
        return job_from_row(rows[0]) if rows else None

    async def recent_dead(self, *, limit: int) -> list[Job]:
        return [job_from_row(r) for r in await self._rows("recent_dead", {"limit": limit})]

    async def job_ids(
        self, prefix: str, *, state: JobState | None = None, limit: int = 50
    ) -> list[str]:
        name, values = bookkeeping.prefix_query(prefix, state, limit)
        return [r["id"] for r in await self._rows(name, values)]

    async def keep_lost_output(self, job_id: str, attempt: int, output: bytes, size: int) -> bool:
        """Store the tail of a lost attempt's output (once; ``False`` if it was not lost)."""
        values = {"id": job_id, "attempt": attempt, "output": output, "size": size}
        return bool(await self._rows("keep_lost_output", values))

    async def deregister_worker(self, worker_id: str) -> None:
        await self._rows("deregister_worker", {"id": worker_id})

    async def request_stop(self, mode: StopMode) -> list[str]:
        return [r["id"] for r in await self._rows("request_stop", {"mode": int(mode)})]

    async def get_config(self) -> dict[str, str]:
        return {r["key"]: r["value"] for r in await self._rows("config_all", {})}

    async def add_schedule(self, schedule: Schedule) -> None:
        if not await self._rows("insert_schedule", bookkeeping.schedule_values(schedule)):
            raise bookkeeping.duplicate_schedule(schedule.name)

    async def list_schedules(self) -> list[Schedule]:
        return [schedule_from_row(r) for r in await self._rows("list_schedules", {})]

    async def get_schedule(self, name: str) -> Schedule | None:
        rows = await self._rows("get_schedule", {"name": name})
        return schedule_from_row(rows[0]) if rows else None

    async def remove_schedule(self, name: str) -> bool:
        return bool(await self._rows("remove_schedule", {"name": name}))

    async def pause_schedule(self, name: str, *, now: int) -> bool:
        return bool(await self._rows("pause_schedule", {"name": name, "now": now}))

    async def resume_schedule(self, name: str, *, next_fire_at: int | None, now: int) -> bool:
        values = {"name": name, "next_fire_at": next_fire_at, "now": now}
        return bool(await self._rows("resume_schedule", values))

    async def due_schedules(self, *, now: int) -> DueSchedules:
        from queuectl.backends.base_late import DueSchedules

        rows = await self._rows("due_schedules", {"now": now, "clock": self._clock(now)})
        store_now = rows[0]["store_now"]
        next_at = rows[0]["next_at"]
        return DueSchedules(
            store_now=store_now,
            due=[schedule_from_row(r) for r in rows if r["name"] is not None],
            next_at=None if next_at is None else next_at + now - store_now,
        )
