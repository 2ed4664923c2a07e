"""The library's front door: every user-facing operation, over any ``Backend``.

The CLI is a thin skin over this class (parse, call one method, render), and the
same calls work from Python::

    async with Queue.open("/tmp/q.db") as q:
        await q.enqueue_text('{"command": "echo hi"}')
        print(await q.status())
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
from array import array
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, BinaryIO

from queuectl import procs
from queuectl.backends import Backend, open_backend, wakeup
from queuectl.backends.base import OnProgress
from queuectl.clock import Clock, now_ms, seconds_to_ms
from queuectl.config import (
    DEFAULT_BUSY_TIMEOUT_S,
    QueueConfig,
    from_stored,
    key_name,
    normalize_key,
    parse_value,
)
from queuectl.exceptions import DuplicateJob, InvalidJob, JobNotFound, NoDatabase, QueueCtlError
from queuectl.jobspec import RawJob, Repeat, build_jobs, json_line_chunks, parse_input
from queuectl.leases import SHOWN_LIVE_FOR_LEASES, worker_is_live
from queuectl.models import TERMINAL_STATES, Job, JobState, NewJob, Outcome, StopMode
from queuectl.operate import QueueOperations
from queuectl.queues import QueueSettingsOperations

#: How often ``follow`` reads the store by default (``logs --follow``): a finished
#: attempt is noticed within this.
FOLLOW_POLL_S = 0.1
#: How often ``follow`` reads a running attempt's spool file: a local file, no store read.
_SPOOL_READ_S = 0.1

if TYPE_CHECKING:
    from tempfile import TemporaryDirectory

    from queuectl.backends.base import AttemptOutput, FinishedTotals, JobsPage, Links
    from queuectl.models import Attempt, RunningJob, WorkerInfo
    from queuectl.schedules import Schedules
_STOP_POLL_S = 0.1
#: Jobs a filtered page of the web dashboard looks at (see ``Queue.jobs_page``).
WEB_SCAN = 5000
#: Jobs per chunk of ``enqueue_lines``: big enough that a hop costs nothing, small
#: enough that two chunks in flight are a few MiB.
STREAM_CHUNK = 5000


#: Long operations report here: ``(stage, done, total)``, where ``total`` is ``None``
#: while unknown. May be called from another thread; must be cheap and not raise.
Progress = Callable[[str, int, int | None], None]


@dataclass(frozen=True, slots=True)
class Status:
    counts: dict[JobState, int]
    workers: list[WorkerInfo]
    #: Queues paused by name, in name order.
    paused: list[str] = field(default_factory=list)
    #: ``queue pause --all`` holds every queue.
    all_paused: bool = False
    #: Pending jobs held by dependencies (reference §19.1): counted in ``pending``.
    waiting: int = 0

    @property
    def coroutines(self) -> int:
        return sum(w.count for w in self.workers)

    @property
    def by_host(self) -> dict[str, int]:
        """Live worker coroutines per host, hosts in name order."""
        hosts: dict[str, int] = {}
        for w in sorted(self.workers, key=lambda w: w.host):
            hosts[w.host] = hosts.get(w.host, 0) + w.count
        return hosts


@dataclass(frozen=True, slots=True)
class Overview:
    """One frame of ``status --watch``: everything it shows, read with indexed queries."""

    now: int
    counts: dict[JobState, int]
    workers: list[WorkerInfo]
    #: Running jobs, longest-running first (at most ``running_limit`` of ``Queue.overview``).
    running: list[RunningJob]
    #: Attempts that ended in the last ``window_s`` seconds, per outcome.
    finished: dict[Outcome, int]
    window_s: float
    next_retry: Job | None
    #: The jobs that died most recently, newest first.
    dead: list[Job] = field(default_factory=list)
    #: Pending jobs held by dependencies (reference §19.1): counted in ``pending``.
    waiting: int = 0

    @property
    def coroutines(self) -> int:
        return sum(w.count for w in self.workers)

    @property
    def failed_recently(self) -> int:
        """Attempts that ended badly in the window (interrupted ones are not failures)."""
        return sum(n for o, n in self.finished.items() if o not in _NOT_FAILURES)


_NOT_FAILURES = frozenset({Outcome.COMPLETED, Outcome.INTERRUPTED, Outcome.CANCELLED})


@dataclass(frozen=True, slots=True)
class BurstProgress:
    """How far a drain of some queues got since ``start`` counts were taken."""

    #: Pending, running, or awaiting a retry, in the served queues: what a burst
    #: worker waits for.
    left: int
    running: int
    retrying: int
    completed: int
    dead: int
    cancelled: int = 0
    #: Pending jobs that are not due yet, once nothing else is left: a burst worker
    #: does not wait for them (so they are not in ``left``).
    later: int = 0

    @property
    def total(self) -> int:
        return self.left + self.completed + self.dead + self.cancelled


class Queue(QueueOperations, QueueSettingsOperations):
    """Every user-facing operation over one store; the mixins add reference §16, §17 and §18's."""

    def __init__(self, backend: Backend, *, clock: Clock = now_ms) -> None:
        self.backend = backend
        self.clock = clock
        #: Set when opened with ``create=False`` where no database exists: why the
        #: queue shown is empty (the CLI says it on stderr).
        self.missing: str | None = None
        self._reopen: tuple[str, float] | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        target: str,
        *,
        clock: Clock = now_ms,
        busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
        create: bool = True,
    ) -> AsyncIterator[Queue]:
        """Open the store; a locked database is retried for ``busy_timeout_s`` per call.

        ``create=False`` is for reading: where no database exists it never makes one
        but yields the empty queue (a throwaway store in a private temporary folder)
        with ``missing`` saying so, so every read behaves as on an empty database and
        an unknown job is still an unknown job.
        """
        empty: TemporaryDirectory[str] | None = None
        try:
            backend = await open_backend(target, busy_deadline_s=busy_timeout_s, create=create)
            missing = None
        except NoDatabase as exc:
            from tempfile import TemporaryDirectory  # not on every command's start

            empty = TemporaryDirectory(prefix="queuectl-empty-")
            try:
                backend = await open_backend(os.path.join(empty.name, "empty.db"))
            except BaseException:
                empty.cleanup()
                raise
            missing = str(exc)
        queue = cls(backend, clock=clock)
        queue.missing = missing
        queue._reopen = (target, busy_timeout_s)
        try:
            yield queue
        finally:
            await queue.backend.aclose()
            if empty is not None:
                empty.cleanup()

    @property
    def shown_target(self) -> str:
        """The store's name for a view (a PostgreSQL password masked; not the empty stand-in)."""
        return "no database yet" if self.missing else self.backend.target

    async def reopen_if_created(self) -> bool:
        """For a live view opened where no database existed: switch to it once it exists."""
        if self.missing is None or self._reopen is None:
            return False
        target, busy_timeout_s = self._reopen
        try:
            backend = await open_backend(target, busy_deadline_s=busy_timeout_s, create=False)
        except NoDatabase:
            return False
        previous, self.backend, self.missing = self.backend, backend, None
        await previous.aclose()
        return True

    async def config(self) -> QueueConfig:
        return from_stored(await self.backend.get_config())

    @property
    def schedules(self) -> Schedules:
        """``schedule add/list/rm/pause/resume/run`` (reference §19), over the store as it is."""
        # Imported here: cron arithmetic and zone data are not needed by `enqueue`.
        from queuectl.schedules import Schedules

        return Schedules(self.backend, clock=self.clock, config=self.config)

    async def enqueue_text(
        self,
        text: str,
        *,
        progress: Progress | None = None,
        skip_duplicates: bool = False,
        on_skip: Callable[[str, str], None] | None = None,
    ) -> list[Job]:
        """Enqueue an object, an array of objects, or JSON Lines, all or nothing.

        ``progress`` hears ``("parsing", 0, None)``, then ``("validating", 0, n)``
        and ``("writing", k, n)`` as the transaction fills up.
        """
        if progress is not None:
            progress("parsing", 0, None)
        with _gc_paused():
            raws = parse_input(text)
            if skip_duplicates:
                return await self.enqueue_skipping(raws, on_skip=on_skip)
            return await self.enqueue_raw(raws, progress=progress)

    async def enqueue_lines(
        self, lines: Iterable[str], *, on_ids: Callable[[list[str]], object], first_line: int = 1
    ) -> int:
        """Enqueue JSON Lines as they are read: all or none, in one transaction.

        For inputs too big to hold (issue 15: 10^6 lines in well under 100 MiB):
        lines are decoded and validated ``STREAM_CHUNK`` at a time, each chunk
        written while the next is validated. The first bad line stops it, named
        as ``enqueue_text`` names it, and nothing is enqueued. ``on_ids`` hears the
        ids of each chunk as it is validated, before the commit: the caller keeps
        them until this returns (the count of jobs). ``first_line`` numbers the
        first of ``lines`` (a caller that read ahead).
        """
        config = await self.config()
        now = self.clock()
        #: The input line of each job, by position: the labels of a duplicate.
        where = array("L")

        async def chunks() -> AsyncIterator[list[NewJob]]:
            for raws in json_line_chunks(lines, STREAM_CHUNK, first_line=first_line):
                jobs = build_jobs(raws, config=config, now=now)
                where.extend(r.line or r.position for r in raws)
                on_ids([j.id for j in jobs])
                yield jobs
            if not where:
                raise InvalidJob(
                    "no job given: expected a JSON object, an array of objects or JSON Lines"
                )

        def label(position: int) -> str:
            return RawJob(position, where[position - 1], None).label

        with _gc_paused():  # chunks hold no cycles: reference counting frees each
            try:
                count = await self.backend.enqueue_stream(chunks(), now=now)
            except DuplicateJob as exc:
                if exc.position is None or not 1 <= exc.position <= len(where):
                    raise
                raise _named_duplicate(exc, label) from exc
        await self.backend.notify(wakeup.JOB)
        return count

    async def enqueue(
        self,
        *specs: dict[str, object],
        skip_duplicates: bool = False,
        on_skip: Callable[[str, str], None] | None = None,
    ) -> list[Job]:
        raws = [RawJob(i, None, s) for i, s in enumerate(specs, 1)]
        if skip_duplicates:
            return await self.enqueue_skipping(raws, on_skip=on_skip)
        return await self.enqueue_raw(raws)

    async def enqueue_skipping(
        self, raws: list[RawJob], *, on_skip: Callable[[str, str], None] | None = None
    ) -> list[Job]:
        """``enqueue --skip-duplicates``: every job whose id is free and whose
        ``unique_key`` is not held (by an existing job, or an earlier job of the same
        call) is enqueued, in one transaction; ``on_skip(label, other)`` hears each
        job left out, ``label`` being its given id or ``#N`` (its position) and
        ``other`` the id of the job that has its id or key.
        """
        repeats: list[Repeat] = []
        jobs = build_jobs(raws, config=await self.config(), now=self.clock(), repeats=repeats)
        repeated = {id(x.raw) for x in repeats}
        kept = [r for r in raws if id(r) not in repeated]
        done = await self.backend.enqueue_new(jobs, now=self.clock())
        skipped = [(x.raw, x.other) for x in repeats]
        skipped += [(kept[position - 1], other) for position, other in done.skipped]
        if on_skip is not None:
            for raw, other in sorted(skipped, key=lambda s: s[0].position):
                given = raw.value.get("id") if isinstance(raw.value, dict) else None
                on_skip(given if isinstance(given, str) else f"#{raw.position}", other)
        if done.jobs:
            await self.backend.notify(b"j")
        return done.jobs

    async def enqueue_raw(
        self, raws: list[RawJob], *, progress: Progress | None = None
    ) -> list[Job]:
        now = self.clock()
        written: OnProgress | None = None
        if progress is not None:
            total = len(raws)
            progress("validating", 0, total)

            def written(n: int) -> None:
                progress("writing", n, total)

        jobs = build_jobs(raws, config=await self.config(), now=now)
        if written is not None:
            written(0)
        try:
            inserted = await self.backend.enqueue(jobs, now=now, progress=written)
        except DuplicateJob as exc:
            if exc.position is None or not 1 <= exc.position <= len(raws):
                raise
            # The store numbers jobs; the input's labels also know their lines.
            raise _named_duplicate(exc, lambda position: raws[position - 1].label) from exc
        await self.backend.notify(wakeup.JOB)
        return inserted

    async def get(self, job_id: str) -> Job:
        job = await self.backend.get_job(job_id)
        if job is None:
            raise JobNotFound(f"no job with id {job_id!r}")
        return job

    async def show(self, job_id: str) -> tuple[Job, list[Attempt]]:
        job = await self.get(job_id)
        return job, await self.backend.history(job_id)

    async def links(self, job_id: str) -> Links:
        """The jobs ``job_id`` waits on, and those waiting on it (reference §19.1)."""
        return await self.backend.dependencies(job_id)

    async def list_jobs(
        self, *, state: JobState | None = None, queue: str | None = None, limit: int = 50
    ) -> list[Job]:
        return await self.backend.list_jobs(state=state, queue=queue, limit=limit)

    async def dead_jobs(self, *, limit: int = 0) -> list[Job]:
        return await self.backend.list_jobs(state=JobState.DEAD, limit=limit)

    async def retry_dead(
        self, job_ids: Sequence[str] | None, *, progress: Progress | None = None
    ) -> list[str]:
        """``dlq retry``: the named dead jobs (all or none), or every dead job with ``None``.

        With ``None`` the jobs move in batches (see ``Backend.requeue_dead``) and
        ``progress`` hears ``("retrying", k, n)`` after each, ``n`` being the dead
        count when it began.
        """
        moved: OnProgress | None = None
        if progress is not None and job_ids is None:
            total = (await self.backend.counts())[JobState.DEAD]
            progress("retrying", 0, total)

            def moved(n: int) -> None:
                progress("retrying", n, max(total, n))

        done = await self.backend.requeue_dead(job_ids, now=self.clock(), progress=moved)
        if done:
            await self.backend.notify(wakeup.JOB)
        return done

    async def live_workers(self) -> list[WorkerInfo]:
        """Workers whose heartbeat is recent and, on this host, whose process still runs."""
        lease_ms = seconds_to_ms((await self.config()).lease)
        now = self.clock()
        return [
            w
            for w in await self.backend.list_workers()
            if worker_is_live(w, now=now, lease_ms=lease_ms, leases=SHOWN_LIVE_FOR_LEASES)
        ]

    async def status(self) -> Status:
        settings = await self.backend.queue_settings()
        paused = sorted(q for q, s in settings.queues.items() if s.paused)
        waiting = sum((await self.backend.blocked_counts()).values())
        return Status(
            await self.backend.counts(),
            await self.live_workers(),
            paused,
            settings.all_paused,
            waiting,
        )

    async def overview(
        self, *, window_s: float = 60, running_limit: int = 50, dead_limit: int = 5
    ) -> Overview:
        """Everything ``status --watch`` shows, from a handful of indexed reads.

        Each read is bounded by what it returns (running jobs, a minute of outcomes,
        one retry, a few dead jobs), never by the size of the queue's history, so a
        refresh every second costs the same with ten jobs or ten million.
        """
        now = self.clock()
        backend = self.backend
        return Overview(
            now=now,
            counts=await backend.counts(),
            workers=await self.live_workers(),
            running=await backend.running_jobs(limit=running_limit),
            finished=await backend.finished_since(now - seconds_to_ms(window_s)),
            window_s=window_s,
            next_retry=await backend.next_retry(),
            dead=await backend.recent_dead(limit=dead_limit),
            waiting=sum((await backend.blocked_counts()).values()),
        )

    async def burst_progress(
        self, queues: Sequence[str] | None, start: dict[JobState, int]
    ) -> BurstProgress:
        """Drain progress of ``queues`` (all when ``None``) relative to ``start`` counts.

        Read from the per-queue counters, so it also counts the work of every other
        worker serving those queues; that is the queue's progress, which is what a
        user draining it wants to see.
        """
        now = await self.backend.counts(queues or None)
        running = now[JobState.PROCESSING]
        retrying = now[JobState.FAILED]
        pending = now[JobState.PENDING]
        later = 0
        if pending and not running and not retrying:
            # The counters cannot tell due jobs from delayed ones; the probe a burst
            # worker drains by can: when nothing is due, the pending jobs are later.
            probe = await self.backend.probe(queues=queues or None, now=self.clock())
            if probe.busy == 0 and not probe.due:
                pending, later = 0, pending
        return BurstProgress(
            left=pending + running + retrying,
            running=running,
            retrying=retrying,
            completed=max(now[JobState.COMPLETED] - start[JobState.COMPLETED], 0),
            dead=max(now[JobState.DEAD] - start[JobState.DEAD], 0),
            cancelled=max(now[JobState.CANCELLED] - start[JobState.CANCELLED], 0),
            later=later,
        )

    async def counts(self, queues: Sequence[str] | None = None) -> dict[JobState, int]:
        return await self.backend.counts(queues or None)

    async def ids_for_completion(
        self, prefix: str, *, state: JobState | None = None, limit: int = 50
    ) -> list[str]:
        """Job ids for shell completion: indexed, at most ``limit``."""
        return await self.backend.job_ids(prefix, state=state, limit=limit)

    async def output(self, job_id: str, attempt: int | None = None) -> AttemptOutput:
        """The kept output of an attempt (the latest by default).

        Only a finished attempt has its output in the store. For one that still runs
        on this host, the output so far is read from its spool file; on another host
        it is not reachable (``output`` is empty: see ``running_notice``).
        """
        await self.get(job_id)
        out = await self.backend.attempt_output(job_id, attempt)
        if out is None:
            if attempt is None:
                raise QueueCtlError(f"job {job_id!r} has not run yet")
            raise QueueCtlError(f"job {job_id!r} has no attempt {attempt}")
        if out.finished or out.log_path is None or out.host != procs.HOST:
            return out
        try:
            with open(out.log_path, "rb") as spool:
                so_far = spool.read()
        except OSError:
            # It ended meanwhile (the worker removed the file): the store has it now.
            return await self.output(job_id, out.attempt)
        return replace(out, output=so_far, output_size=len(so_far))

    async def follow(
        self,
        job_id: str,
        attempt: int | None = None,
        *,
        notice: Callable[[str], None] | None = None,
        poll_s: float = FOLLOW_POLL_S,
        changed: Callable[[], bool] | None = None,
    ) -> AsyncIterator[bytes]:
        """Yield an attempt's output as it is written, until the attempt ends.

        A job that has not started yet is waited for. The live output is read from
        the spool file on this host; a worker on another host only makes the kept
        tail available once the attempt ends. ``notice`` hears what a person should
        know besides the bytes (waiting, output cut, remote host).

        The spool file is read every 0.1 s, the store only every ``poll_s`` seconds,
        or sooner when ``changed()`` says it may have moved: a terminal's follow
        polls fast, while the dashboard hangs many follows on its one shared poller
        (``changed``) so an open job page costs almost no store reads.
        """
        if not poll_s > 0:
            raise QueueCtlError(f"poll interval must be positive, not {poll_s!r}")
        say = notice or _ignore
        pace = _Pace(poll_s, changed)
        out = await self._wait_for_attempt(job_id, attempt, say, pace)
        if not out.finished and out.log_path is not None and out.host == procs.HOST:
            try:
                spool = open(out.log_path, "rb")  # noqa: SIM115 - held across awaits
            except OSError:
                pass  # the attempt ended meanwhile: the file is gone, the tail is kept
            else:
                with spool:
                    async for chunk in self._tail(job_id, out.attempt, spool, say, pace):
                        yield chunk
                return
        if not out.finished:
            say(
                f"attempt {out.attempt} runs on {out.host or 'another host'}; "
                "its output shows here when it ends"
            )
        final = out if out.finished else await self._wait_finished(job_id, out.attempt, pace)
        yield final.output
        if final.output_size > len(final.output):
            say(cut_notice(final))

    async def _tail(
        self,
        job_id: str,
        attempt: int,
        spool: BinaryIO,
        say: Callable[[str], None],
        pace: _Pace,
    ) -> AsyncIterator[bytes]:
        while True:
            chunk = spool.read(1 << 16)
            if chunk:
                yield chunk
                continue
            if os.fstat(spool.fileno()).st_size < spool.tell():
                # The worker cut an oversized spool down to its tail (executor
                # spool_max); the command keeps appending at the new end.
                say("the running command's output grew too large; skipping to its tail")
                spool.seek(0)
                continue
            if pace.due():
                out = await self.output(job_id, attempt)
                if out.finished:
                    # The file stays readable after the worker unlinks it.
                    rest = spool.read()
                    if rest:
                        yield rest
                    return
            await asyncio.sleep(min(_SPOOL_READ_S, pace.poll_s))

    async def _wait_for_attempt(
        self, job_id: str, attempt: int | None, say: Callable[[str], None], pace: _Pace
    ) -> AttemptOutput:
        waited = False
        while True:
            job = await self.get(job_id)
            out = await self.backend.attempt_output(job_id, attempt)
            if out is not None and (out.log_path is not None or out.finished):
                return out
            if out is None and job.state in TERMINAL_STATES:
                raise QueueCtlError(f"job {job_id!r} has no attempt {attempt}")
            if not waited and job.state is not JobState.PROCESSING:
                say(f"job {job_id} is {job.state.value}; waiting for it to start")
                waited = True
            await pace.wait()

    async def _wait_finished(self, job_id: str, attempt: int, pace: _Pace) -> AttemptOutput:
        while True:
            out = await self.output(job_id, attempt)
            if out.finished:
                return out
            await pace.wait()

    async def stop_workers(self, mode: StopMode, *, timeout_s: float | None = None) -> int:
        """Ask every live worker to stop and wait until they have exited; returns how many.

        The request goes through the store (so it reaches every host) and a wake-up
        makes idle workers read it at once.
        """
        live = {w.id for w in await self.live_workers()}
        if not live:
            return 0
        await self.backend.request_stop(mode)
        await self.backend.notify(wakeup.STOP)
        deadline = None if timeout_s is None else asyncio.get_running_loop().time() + timeout_s
        while True:
            remaining = live & {w.id for w in await self.live_workers()}
            if not remaining:
                return len(live)
            if deadline is not None and asyncio.get_running_loop().time() > deadline:
                raise QueueCtlError(
                    f"{len(remaining)} of {len(live)} worker(s) still running after {timeout_s:g}s"
                )
            await asyncio.sleep(_STOP_POLL_S)

    async def get_setting(self, key: str) -> object:
        name = normalize_key(key)
        return getattr(await self.config(), name)

    async def set_setting(self, key: str, value: str) -> tuple[str, object]:
        """Validate and store one setting; returns its canonical name and parsed value."""
        name = normalize_key(key)
        parsed = parse_value(name, value)
        await self.backend.set_config({name: str(parsed)})
        return key_name(name), parsed

    async def settings(self) -> dict[str, object]:
        return (await self.config()).to_dict()

    # Reads of the web dashboard and /metrics (queuectl.web); each is bounded.

    async def jobs_page(
        self,
        *,
        state: JobState | None = None,
        queue: str | None = None,
        text: str | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> JobsPage:
        """A page of jobs, newest first, older than the cursor ``before`` (keyset).

        ``text`` matches an id prefix or a substring of the command. With ``queue``
        or ``text`` the page filters a window of ``WEB_SCAN`` jobs, so it may be short
        and still have a next page (``JobsPage.next_before``).
        """
        filtered = queue is not None or bool(text)
        return await self.backend.jobs_page(
            state=state,
            queue=queue,
            text=text or None,
            before=before,
            limit=limit,
            scan=WEB_SCAN if filtered else limit,
        )

    async def queue_counts(self) -> dict[str, dict[JobState, int]]:
        """Jobs per state in every queue that has or had jobs, queues in name order."""
        return await self.backend.queue_counts()

    async def finished_per_minute(self, minutes: int = 60) -> list[tuple[int, dict[Outcome, int]]]:
        """Attempts ended per minute and outcome, for the last ``minutes`` minutes.

        Every minute is present (oldest first), the current one last and partial.
        """
        now = self.clock()
        first = (now // 60_000 - minutes + 1) * 60_000
        found: dict[int, dict[Outcome, int]] = {first + i * 60_000: {} for i in range(minutes)}
        for minute, outcome, n in await self.backend.finished_by_minute(first):
            if minute in found:
                found[minute][outcome] = found[minute].get(outcome, 0) + n
        return list(found.items())

    async def finished_totals(self) -> FinishedTotals:
        """Attempts finished per queue and outcome, and their durations, since the store
        was created: the store's own counters, which never go down (reference §20.5)."""
        return await self.backend.finished_totals()

    async def oldest_due(self, queues: Sequence[str]) -> dict[str, float]:
        """Seconds the longest-waiting due job of each queue has waited (0 when none)."""
        now = self.clock()
        ages: dict[str, float] = {}
        for name in queues:
            due = await self.backend.oldest_due(name, now=now)
            ages[name] = 0.0 if due is None else max(now - due, 0) / 1000
        return ages


def _named_duplicate(exc: DuplicateJob, label: Callable[[int], str]) -> DuplicateJob:
    """``exc`` from the store, its job named by ``label(position)`` (the input's own
    labels: an id, a line, a position), in the words ``build_jobs`` uses."""
    assert exc.position is not None
    at = label(exc.position)
    if exc.earlier is not None and exc.key is None:
        text = f"{at}: id {exc.job_id!r} is used twice in this input ({label(exc.earlier)})"
    elif exc.earlier is not None:
        text = (
            f"{at}: unique_key {exc.key!r} is used twice in this input "
            f"({label(exc.earlier)} has it too)"
        )
    elif exc.key is not None:
        text = f"{at}: {str(exc).split(': ', 1)[1]}"
    else:
        text = f"{at}: a job with id {exc.job_id!r} already exists"
    return DuplicateJob(
        text,
        job_id=exc.job_id,
        position=exc.position,
        key=exc.key,
        holder=exc.holder,
        earlier=exc.earlier,
    )


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic GC while a batch is decoded and stored.

    A 100,000-job batch allocates a few hundred thousand objects, none in cycles;
    the collector would walk them all again and again (a third of the time).
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def cut_notice(out: AttemptOutput) -> str:
    """What ``logs`` says on stderr when only the tail of an attempt's output was kept."""
    return (
        f"[output cut: showing the last {len(out.output):,} of {out.output_size:,} bytes "
        f"of attempt {out.attempt}; raise `output-limit` to keep more]"
    )


def running_notice(out: AttemptOutput) -> str | None:
    """What ``logs`` says on stderr about an attempt that has not ended, else ``None``."""
    if out.finished:
        return None
    if out.host in (None, procs.HOST):
        return f"[attempt {out.attempt} is still running: its output so far]"
    return (
        f"[attempt {out.attempt} is running on {out.host}: its output shows here when it ends"
        " (or run `queuectl logs --follow` there)]"
    )


class _Pace:
    """When a follow reads the store again: ``poll_s`` after the last read, or as soon
    as ``changed()`` says the store may have moved."""

    def __init__(self, poll_s: float, changed: Callable[[], bool] | None) -> None:
        self.poll_s = poll_s
        self.changed = changed
        self._next = asyncio.get_running_loop().time() + poll_s

    def due(self) -> bool:
        """Whether to read the store now; a yes starts the next interval."""
        now = asyncio.get_running_loop().time()
        if now >= self._next or (self.changed is not None and self.changed()):
            self._next = now + self.poll_s
            return True
        return False

    async def wait(self) -> None:
        while not self.due():
            await asyncio.sleep(min(_SPOOL_READ_S, self.poll_s))


def _ignore(_: str) -> None:
    pass
