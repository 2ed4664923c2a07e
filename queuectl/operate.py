"""Operating the queue (reference §16): cancel, retry, rm, purge, update and wait, for ``Queue``.

These are ``Queue`` methods (``Queue`` mixes this class in); the CLI and the web
dashboard call them alike. Each returns what it changed, so a caller can say so.
The store decides and applies each change in one transaction
(``backends.operations`` holds the rules); what lives here is the waiting: for a
running job's worker to confirm a cancel, for jobs to finish.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from queuectl.backends import wakeup
from queuectl.backends.operations import CancelResult, RetryPlan, check_purge_states
from queuectl.clock import Clock, seconds_to_ms
from queuectl.exceptions import InvalidJob, JobNotFound, StoreUnreachable
from queuectl.jobspec import to_changes
from queuectl.models import TERMINAL_STATES, Job, JobState

if TYPE_CHECKING:
    from queuectl.backends import Backend
    from queuectl.queue import Progress

#: How often ``cancel`` and ``wait`` look at the jobs they wait for: quick at first
#: (a cancel is confirmed within a few ms), then less often for long waits.
_POLL_FIRST_S = 0.02
_POLL_MAX_S = 0.25
#: How often ``follow_job`` looks for the next attempt to start.
_FOLLOW_POLL_S = 0.1


@dataclass(frozen=True, slots=True)
class CancelReport:
    """What ``Queue.cancel`` saw by the time it returned."""

    request: CancelResult
    #: Running jobs whose attempt ended meanwhile, with the state it left them in
    #: (``cancelled``; ``completed`` if the command exited 0 before the kill).
    ended: dict[str, JobState] = field(default_factory=dict)
    #: Running jobs still running when the wait ran out; the request stays in force.
    running: list[str] = field(default_factory=list)

    @property
    def cancelled(self) -> list[str]:
        """Every named job that is ``cancelled`` now, in the order named."""
        done = set(self.request.cancelled) | set(self.request.already)
        done |= {i for i, s in self.ended.items() if s is JobState.CANCELLED}
        named = [*self.request.cancelled, *self.request.requested, *self.request.already]
        return [i for i in dict.fromkeys(named) if i in done]

    @property
    def not_cancelled(self) -> dict[str, JobState]:
        """Running jobs that ended some other way than ``cancelled``."""
        return {i: s for i, s in self.ended.items() if s is not JobState.CANCELLED}


@dataclass(frozen=True, slots=True)
class WaitReport:
    """What ``Queue.wait`` saw: each named job's state when it returned."""

    #: ``None`` for a job removed (``rm``, ``purge``) while it was waited for.
    states: dict[str, JobState | None]

    @property
    def ok(self) -> bool:
        return all(s is JobState.COMPLETED for s in self.states.values())

    @property
    def unfinished(self) -> list[str]:
        return [i for i, s in self.states.items() if s is not None and s not in TERMINAL_STATES]


class QueueOperations:
    """Mixed into ``Queue``, which provides ``backend``, ``clock``, ``get`` and ``follow``."""

    backend: Backend
    clock: Clock

    if TYPE_CHECKING:

        async def get(self, job_id: str) -> Job: ...

        def follow(
            self,
            job_id: str,
            attempt: int | None = None,
            *,
            notice: Callable[[str], None] | None = None,
        ) -> AsyncIterator[bytes]: ...

    async def follow_job(
        self, job_id: str, *, notice: Callable[[str], None] | None = None
    ) -> AsyncIterator[bytes]:
        """Yield the output of the job's current attempt and of every retry after it.

        Starts with the latest attempt (from its start), or waits for the first;
        ends once the job is finished (``completed``, ``dead`` or ``cancelled``), its
        state then being what ``wait`` reports. A job removed meanwhile ends it too.
        ``notice`` hears, for stderr, which attempt follows.
        """
        say = notice or _ignore
        job = await self.get(job_id)
        latest = await self.backend.attempt_output(job_id, None)
        number = latest.attempt if latest is not None else 1
        while True:
            told = False
            while await self.backend.attempt_output(job_id, number) is None:
                found = await self.backend.get_job(job_id)
                if found is None or found.state in TERMINAL_STATES:
                    return
                if not told:
                    say(f"[job {job_id} is {found.state.value}; waiting for attempt {number}]")
                told = True
                await asyncio.sleep(_FOLLOW_POLL_S)
            if number > 1 or job.state is not JobState.PENDING:
                say(f"[attempt {number}]")
            async for chunk in self.follow(job_id, number, notice=notice):
                yield chunk
            number += 1

    async def request_cancel(self, job_ids: Sequence[str]) -> CancelResult:
        """Cancel without waiting: waiting jobs now, running ones by request (see ``cancel``)."""
        result = await self.backend.cancel(job_ids, now=self.clock())
        if result.requested:
            # Wake their workers now; the heartbeat would read the request anyway.
            await self.backend.notify(wakeup.CANCEL)
        return result

    async def cancel(self, job_ids: Sequence[str], *, wait_s: float = 30.0) -> CancelReport:
        """Reference §16.1 ``cancel``: all or nothing, then wait up to ``wait_s`` for running ones.

        A ``pending`` or ``failed`` job is ``cancelled`` at once; a ``processing`` one
        once the worker holding its lease has killed its command's process group and
        recorded the attempt as cancelled. Raises ``JobNotFound`` or
        ``InvalidTransition`` (naming the job; nothing changed) for an unknown,
        ``completed`` or ``dead`` job.
        """
        request = await self.request_cancel(job_ids)
        # The requests are committed: losing the store now must not read as a
        # failure that changed nothing, so the wait rides out an outage.
        ended, running = await self._wait_states(request.requested, wait_s, through_outages=True)
        return CancelReport(request, ended, running)

    async def retry(self, job_ids: Sequence[str]) -> RetryPlan:
        """Reference §16.2 ``retry`` of named jobs: dead/cancelled start over, failed run now."""
        plan = await self.backend.retry_jobs(job_ids, now=self.clock())
        if plan.ids:
            await self.backend.notify(wakeup.JOB)
        return plan

    async def retry_state(
        self, state: JobState, *, queue: str | None = None, progress: Progress | None = None
    ) -> list[str]:
        """``retry --state dead|cancelled [--queue Q]``, in batches (each atomic)."""
        moved = None
        if progress is not None:
            total = (await self.backend.counts([queue] if queue else None))[state]
            progress("retrying", 0, total)

            def moved(n: int) -> None:
                progress("retrying", n, max(total, n))

        done = await self.backend.retry_state(state, queue=queue, now=self.clock(), progress=moved)
        if done:
            await self.backend.notify(wakeup.JOB)
        return done

    async def remove(self, job_ids: Sequence[str]) -> list[str]:
        """Reference §16.3 ``rm``: delete jobs, their attempts and output; refuse running ones."""
        return await self.backend.remove_jobs(job_ids)

    async def purge(
        self,
        states: Sequence[JobState] = (),
        *,
        older_than_s: float = 0,
        queue: str | None = None,
        dry_run: bool = False,
    ) -> int:
        """Reference §16.4 ``purge``: delete finished jobs (default completed and cancelled)."""
        chosen = check_purge_states(states)
        before = self.clock() - seconds_to_ms(older_than_s) + (0 if older_than_s else 1)
        return await self.backend.purge(chosen, before=before, queue=queue, dry_run=dry_run)

    async def apply_retention(self, retention_s: float, *, limit: int) -> int:
        """Delete up to about ``limit`` completed/cancelled jobs older than ``retention_s``.

        What workers run now and then (config ``retention``; 0 keeps jobs forever).
        """
        if retention_s <= 0:
            return 0
        before = self.clock() - seconds_to_ms(retention_s)
        return await self.backend.purge(check_purge_states(()), before=before, limit=limit)

    async def update(self, job_id: str, **fields: Any) -> Job:
        """Reference §16.5 ``update`` of a waiting job.

        ``fields``: ``priority``, ``queue``, ``max_retries``, ``timeout`` (seconds),
        ``run_at`` (as in a job), ``delay`` (seconds) or ``now=True``; ``None`` leaves
        a field as it is. Returns the job as stored.
        """
        now = self.clock()
        try:
            changes = to_changes(fields, now=now)
        except ValueError as exc:
            raise InvalidJob(f"cannot update job {job_id!r}: {exc}; nothing was changed") from None
        if changes.empty:
            raise InvalidJob(
                "nothing to change: give --priority, --run-at, --delay, --now, --queue,"
                " --max-retries or --timeout"
            )
        job = await self.backend.update_job(job_id, changes, now=now)
        if changes.next_run_at is not None or changes.queue is not None:
            await self.backend.notify(wakeup.JOB)
        return job

    async def wait(self, job_ids: Sequence[str], *, timeout_s: float | None = None) -> WaitReport:
        """Reference §16.6 ``wait``: until every named job is finished, or ``timeout_s`` has passed.

        Unknown ids raise ``JobNotFound`` (naming the first) before any waiting.
        """
        ids = list(dict.fromkeys(job_ids))
        known = await self.backend.job_states(ids)
        for job_id in ids:
            if job_id not in known:
                raise JobNotFound(f"no job with id {job_id!r}")
        ended, left = await self._wait_states(ids, timeout_s, until=TERMINAL_STATES)
        latest: dict[str, JobState] = {**ended}
        if left:
            latest.update(await self.backend.job_states(left))
        return WaitReport({i: latest.get(i) for i in ids})

    async def _wait_states(
        self,
        job_ids: Sequence[str],
        timeout_s: float | None,
        *,
        until: frozenset[JobState] | None = None,
        through_outages: bool = False,
    ) -> tuple[dict[str, JobState], list[str]]:
        """Poll until each job leaves ``processing`` (or reaches a state in ``until``).

        Returns the jobs that got there with their state, and those that did not by
        ``timeout_s`` (``None``: no limit). A job deleted meanwhile counts as gone.
        ``through_outages``: an unreachable store (a server restarting) is asked
        again at the next poll instead of ending the wait.
        """
        left = list(job_ids)
        ended: dict[str, JobState] = {}
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        pause = _POLL_FIRST_S
        while left:
            try:
                states = await self.backend.job_states(left)
            except StoreUnreachable:
                if not through_outages:
                    raise
                states = {job_id: JobState.PROCESSING for job_id in left}  # not known yet
            for job_id in list(left):
                state = states.get(job_id)
                arrived = state is None or (
                    state in until if until is not None else state is not JobState.PROCESSING
                )
                if arrived:
                    if state is not None:
                        ended[job_id] = state
                    left.remove(job_id)
            if not left:
                break
            if deadline is not None and loop.time() >= deadline:
                break
            wait = pause if deadline is None else min(pause, max(deadline - loop.time(), 0))
            await asyncio.sleep(wait)
            pause = min(pause * 2, _POLL_MAX_S)
        return ended, left


def _ignore(_: str) -> None:
    pass
