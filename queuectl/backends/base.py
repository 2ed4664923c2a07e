"""The contract every job store keeps; its docstrings are the specification.

A store owns its SQL and exposes domain verbs (like huey's ``BaseStorage`` and River's
driver executor) rather than a generic ``execute``: SQLite and PostgreSQL differ in
exactly the places that matter (claims, clocks, wake-ups).

Conventions shared by all methods:

* ``now`` is always a parameter (epoch milliseconds), so tests can pin time.
* Writes that belong to one attempt are fenced by ``(job id, token, worker id)``
  and report whether they took effect instead of raising.
* Failures of the underlying database surface as ``BackendError`` subclasses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from queuectl.backends.operations import CancelResult, RetryPlan
from queuectl.models import Claim, Fired, Job, JobState, NewJob, Outcome, StopMode

if TYPE_CHECKING:
    from queuectl.backends import base_late as _late
    from queuectl.models import (
        Attempt,
        Finish,
        Fire,
        Heartbeat,
        JobChanges,
        LostAttempt,
        ProcessStart,
        QueueSettings,
        RunningJob,
        Schedule,
        WorkerInfo,
    )

    AttemptOutput = _late.AttemptOutput
    Link = _late.Link
    Links = _late.Links
    JobsPage = _late.JobsPage
    FinishedTotals = _late.FinishedTotals
    DueSchedules = _late.DueSchedules


@dataclass(frozen=True, slots=True)
class FinishResult:
    """What ``exchange`` made of one ``Finish``."""

    job_id: str
    #: ``False`` when the fence rejected the write: the lease was lost.
    held: bool
    state: JobState
    next_run_at: int | None


@dataclass(frozen=True, slots=True)
class Exchanged:
    finished: list[FinishResult] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)
    #: Earliest ``next_run_at`` of a waiting job in the served queues, filled in
    #: when fewer jobs were claimed than asked for (it drives the wake-up timer).
    next_due_at: int | None = None


@dataclass(frozen=True, slots=True)
class Enqueued:
    """What ``enqueue_new`` did."""

    jobs: list[Job]
    #: ``(1-based position in the batch, id of the job that has its id or key)``.
    skipped: list[tuple[int, str]]


@dataclass(frozen=True, slots=True)
class QueueProbe:
    """What ``--burst`` and the idle loop need to know, read in one go."""

    #: Jobs processing or failed (awaiting a retry) in the served queues.
    busy: int
    #: Whether a pending or failed job in the served queues is due now.
    due: bool
    #: Changes whenever another connection commits (SQLite ``data_version``).
    version: int


#: Called with each lost attempt before the job becomes claimable again, so a
#: still-running orphan on this host can be killed first.
OnLost = Callable[["LostAttempt"], None]

#: Told how many items a long write has done so far (a running total), so a terminal
#: can draw a progress bar. It may be called from another thread (the SQLite store
#: calls it from its connection's thread), must be cheap, and must not raise.
OnProgress = Callable[[int], None]


class JobStore(Protocol):
    async def enqueue(
        self, jobs: Sequence[NewJob], *, now: int, progress: OnProgress | None = None
    ) -> list[Job]:
        """Insert all jobs in one transaction, or none of them.

        Raises ``DuplicateJob`` naming the first id that already exists (with its
        ``job_id`` and 1-based ``position`` in ``jobs``), or else the first job whose
        ``unique_key`` a pending, failed or processing job holds (``key``, ``holder``);
        the existing job is untouched. Keys are enforced by a partial unique index.
        Returns only after the commit is durable.

        ``progress``, if given, is called with the number of jobs written so far
        (inside the still-open transaction) every few thousand jobs; a store may
        call it less often or never. It says nothing about the commit.
        """
        ...

    async def enqueue_stream(self, chunks: AsyncIterator[Sequence[NewJob]], *, now: int) -> int:
        """Insert every job of ``chunks`` in one transaction, or none; the count.

        For a batch too big to hold (``enqueue`` of millions of JSON Lines): a store
        may write each chunk as it comes, the next being validated meanwhile. An
        exception from ``chunks`` rolls everything back. ``DuplicateJob`` is as for
        ``enqueue``, ``position`` counting across chunks, and ``earlier`` set when
        the other job is an earlier one of this stream.
        """
        ...

    async def enqueue_new(self, jobs: Sequence[NewJob], *, now: int) -> Enqueued:
        """``enqueue --skip-duplicates``: insert, in one transaction, every job whose id
        is free and whose ``unique_key`` no pending, failed or processing job holds;
        skip the others. The store decides, by its constraints (insert or nothing), so a
        concurrent enqueue cannot slip in between a check and a write.
        """
        ...

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
        """The worker's hot path: one transaction that records and then claims.

        Records where started commands run, records finished attempts (each fenced;
        the next state follows the retry policy with the backoff settings stored *at
        this moment*), then claims up to ``claim`` due jobs from ``queues`` (all
        queues when ``None``) ordered by priority (high first), then age (oldest first).
        Each claim increments ``attempts`` and the fencing token, sets the lease to
        ``now + lease_ms`` and opens the attempt's history row, atomically.
        """
        ...

    async def unclaim(
        self, *, worker_id: str, claims: Sequence[tuple[str, int]], now: int
    ) -> list[tuple[str, int]]:
        """Hand back claimed jobs whose command never started, as if never claimed.

        For a worker that claimed a job ahead and will not run it (its current
        command runs long, or it is stopping). Each ``(job id, token)`` is fenced
        like a finish (this worker's claim, still ``processing``) and also needs its
        attempt to have no start or end recorded and no cancel request on the job;
        then the claim's attempt row is deleted, ``attempts`` and the token step
        back by one, and the job is ``pending`` again, due now (``next_run_at =
        now``), so it keeps its place in claim order (priority, then age). A retry
        that was due comes back as ``pending``: it was due either way. The state
        counts move with it. Returns the claims handed back (in one transaction);
        the others are left as they are, and the caller finishes them instead. Idle
        workers are told that a job is claimable.
        """
        ...

    async def heartbeat(
        self, *, worker_id: str, running: Sequence[tuple[str, int]], lease_ms: int, now: int
    ) -> Heartbeat:
        """Extend the leases this worker still holds and read its stop request.

        ``running`` lists ``(job id, token)`` of the attempts the worker is running;
        the answer names those whose lease it no longer holds, so it can kill them.
        Re-registers the worker if its row was removed as stale.
        """
        ...

    async def recover(
        self, *, now: int, dead_workers: Sequence[str] = (), on_lost: OnLost | None = None
    ) -> list[LostAttempt]:
        """Fail every attempt whose lease ran out, or whose worker is in ``dead_workers``.

        Each counts as a failed attempt ("worker lost") and follows the retry policy.
        ``on_lost`` runs for each before the transaction commits, so no other worker
        can start the job again while an orphan of the old attempt is still alive.
        Removes the rows of ``dead_workers``. Returns what it recovered.
        """
        ...

    async def keep_lost_output(self, job_id: str, attempt: int, output: bytes, size: int) -> bool:
        """Keep ``output`` (the tail of ``size`` bytes) as a ``lost`` attempt's output.

        Called by a worker on the attempt's host, which can read its spool file, after
        ``recover``; only an attempt recovered as lost and without output is changed.
        """
        ...

    async def release_strays(self, *, host: str, now: int, on_stray: OnLost) -> list[LostAttempt]:
        """Hand over, once, the attempts on ``host`` that may have left processes behind.

        These are attempts recorded on ``host`` (with a process group) that did not
        end by themselves and whose lease nobody holds any more: unfinished ones, and
        ones recovered as lost, possibly by a worker on another host that could not
        kill their processes. ``on_stray`` runs for each before the transaction
        commits; their process-group id is then forgotten, so it is never signalled
        again once the kernel may have given it to an unrelated process. A worker
        calls this when it starts, so no orphan of a crash outlives the next start.
        """
        ...

    async def requeue_dead(
        self, job_ids: Sequence[str] | None, *, now: int, progress: OnProgress | None = None
    ) -> list[str]:
        """Move dead jobs back to ``pending`` with ``attempts = 0``; ``None`` means all.

        Named ids are all or nothing: raises ``JobNotFound`` or ``InvalidTransition``
        naming the first id that is missing or not dead, and then changes nothing.
        An id named more than once counts once. Returns the ids moved, in order.

        ``None`` moves the jobs that are dead when the call starts in batches of a
        few hundred, oldest job first, each batch its own short transaction (so a
        huge dead-letter queue never holds the write lock for long, and every job
        moves atomically). A job that dies during the call, or was enqueued after it
        started, may or may not be included; the call always ends. ``progress`` is
        called with the running total after each batch.
        """
        ...


class JobOperations(Protocol):
    """What a person does to jobs; the rules live in ``backends.operations``.

    Named-id calls are one transaction each and all or nothing: an unknown id
    raises ``JobNotFound``, a refused state ``InvalidTransition``, naming the job,
    and then nothing is changed. An id named twice counts once.
    """

    async def job_states(self, job_ids: Sequence[str]) -> dict[str, JobState]:
        """The current state of each named job that exists (unknown ids are left out)."""
        ...

    async def cancel(self, job_ids: Sequence[str], *, now: int) -> CancelResult:
        """Cancel ``pending``/``failed`` jobs at once; put a request on ``processing`` ones.

        The worker that holds a requested job's lease kills its command and ends the
        attempt as cancelled (the wake-up is the caller's ``notify(b"c")``; on
        PostgreSQL the store sends it at commit). ``cancelled`` jobs are left alone;
        ``completed`` and ``dead`` ones are refused.
        """
        ...

    async def retry_jobs(self, job_ids: Sequence[str], *, now: int) -> RetryPlan:
        """``dead``/``cancelled`` → ``pending`` with ``attempts = 0``; ``failed`` → ``pending``
        keeping its attempts; all due at ``now``; any cancel request is dropped."""
        ...

    async def retry_state(
        self, state: JobState, *, queue: str | None, now: int, progress: OnProgress | None = None
    ) -> list[str]:
        """Every job in ``state`` (``dead`` or ``cancelled``), optionally of one queue,
        back to ``pending``, in batches (each atomic) as ``requeue_dead(None)`` does."""
        ...

    async def remove_jobs(self, job_ids: Sequence[str]) -> list[str]:
        """Delete jobs with their attempts and output; a ``processing`` one is refused."""
        ...

    async def purge(
        self,
        states: Sequence[JobState],
        *,
        before: int,
        queue: str | None = None,
        dry_run: bool = False,
        limit: int | None = None,
    ) -> int:
        """Delete jobs in ``states`` (finished ones) last updated before ``before``.

        In short batches, each its own transaction, so it never holds the store for
        long; ``limit`` stops after about that many. Returns how many were deleted
        (``dry_run``: how many would be).
        """
        ...

    async def update_job(self, job_id: str, changes: JobChanges, *, now: int) -> Job:
        """Change the given fields of a ``pending`` or ``failed`` job; returns it as stored."""
        ...


class JobReader(Protocol):
    async def get_job(self, job_id: str) -> Job | None: ...

    async def list_jobs(
        self, *, state: JobState | None = None, queue: str | None = None, limit: int = 50
    ) -> list[Job]:
        """Newest first; ``limit <= 0`` means all."""
        ...

    async def counts(self, queues: Sequence[str] | None = None) -> dict[JobState, int]:
        """Jobs per state (every state present, zeros included) without scanning jobs."""
        ...

    async def history(self, job_id: str) -> list[Attempt]:
        """Every attempt of the job, oldest first."""
        ...

    async def attempt_output(self, job_id: str, attempt: int | None) -> AttemptOutput | None:
        """The kept output of one attempt (the latest when ``attempt`` is ``None``)."""
        ...

    async def probe(self, *, queues: Sequence[str] | None, now: int) -> QueueProbe: ...

    async def running_jobs(self, *, limit: int) -> list[RunningJob]:
        """Jobs in ``processing`` with their current attempt, longest-running first.

        At most ``limit`` rows; ``slot``, ``host`` and ``pid`` are ``None`` until the
        worker recorded the start. Called on every refresh of ``status --watch``: it
        must cost in proportion to the running jobs, not to the table.
        """
        ...

    async def finished_since(self, since: int) -> dict[Outcome, int]:
        """How many attempts ended at or after ``since`` (epoch ms), per outcome.

        Outcomes with no attempt are left out. Attempts that are still running do not
        count. Must read an index on the attempts' end time (one refresh of the live
        view reads a minute of them), never scan the history.
        """
        ...

    async def next_retry(self) -> Job | None:
        """The ``failed`` job due soonest (ties: oldest job), or ``None``; indexed."""
        ...

    async def recent_dead(self, *, limit: int) -> list[Job]:
        """The ``limit`` jobs that died most recently (by ``updated_at``), newest first; indexed."""
        ...

    async def job_ids(
        self, prefix: str, *, state: JobState | None = None, limit: int = 50
    ) -> list[str]:
        """Ids that start with ``prefix`` (case-sensitive), in id order, for shell completion.

        At most ``limit``. With ``state``, only jobs in that state, and a store may
        look at only the first few thousand ids of the prefix to stay cheap (a key
        press must never scan the table), so it can return fewer than exist.
        """
        ...


class WorkerRegistry(Protocol):
    async def register_worker(self, info: WorkerInfo, *, now: int) -> None: ...

    async def deregister_worker(self, worker_id: str) -> None: ...

    async def list_workers(self) -> list[WorkerInfo]:
        """Every registered worker row, live or stale; callers judge liveness."""
        ...

    async def request_stop(self, mode: StopMode) -> list[str]:
        """Ask every registered worker to stop; returns the ids asked."""
        ...


class ConfigStore(Protocol):
    async def get_config(self) -> dict[str, str]:
        """Stored values by field name (``max_retries``), as text."""
        ...

    async def set_config(self, values: Mapping[str, str]) -> None: ...


class Notifier(Protocol):
    async def notify(self, message: bytes) -> None:
        """Wake idle workers: ``wakeup.JOB`` after an enqueue, ``wakeup.STOP`` after a stop,
        ``wakeup.CANCEL`` after a cancel request (workers read it in their heartbeat)."""
        ...

    async def subscribe(self, worker_id: str, callback: Callable[[bytes], None]) -> None:
        """Deliver wake-ups for ``worker_id`` to ``callback`` until the store closes."""
        ...


class QueueControl(Protocol):
    """Queue settings (pause, limit) and the per-queue reads of ``queue list`` and ``why``.

    (Per-queue counts and the oldest due job are ``WebReader``'s.) Settings live in a
    small table of their own; the claim of ``exchange`` reads it in
    the same statement, so a pause or a limit holds from the moment it is committed,
    for every worker of the store. The queue named ``ALL_QUEUES`` ('') is ``pause --all``.
    A queue's row is removed once it has no setting left.
    """

    async def queue_settings(self) -> QueueSettings: ...

    async def set_paused(self, queues: Sequence[str], *, paused: bool) -> None:
        """Pause or resume each of ``queues`` (``ALL_QUEUES`` is ``--all``), in one transaction."""
        ...

    async def resume_all(self) -> None:
        """``resume --all``: lift ``pause --all`` and the pause of every queue, atomically."""
        ...

    async def set_limit(self, queue: str, limit: int | None) -> None:
        """At most ``limit`` (> 0) jobs of ``queue`` processing at once; ``None`` removes it."""
        ...

    async def due_ahead(self, job_id: str, *, queues: Sequence[str] | None, now: int) -> bool:
        """Whether a due job of an open queue (among ``queues``; ``None``: all) would be
        claimed before ``job_id``: a higher priority, or the same and older. Indexed."""
        ...

    async def dependencies(self, job_id: str) -> Links:
        """The jobs ``job_id`` waits on and the jobs that wait on it, with their states."""
        ...

    async def blocked_counts(self) -> dict[str, int]:
        """Pending jobs held by dependencies, per queue (an index of them only)."""
        ...


class WebReader(Protocol):
    """Reads of the web dashboard and ``/metrics``; each bounded, however big the tables."""

    async def jobs_page(
        self,
        *,
        state: JobState | None,
        queue: str | None,
        text: str | None,
        before: int | None,
        limit: int,
        scan: int,
    ) -> JobsPage:
        """Jobs older than the cursor ``before`` (``None``: the newest), newest first.

        Keyset pagination on the insertion order (``seq``), through the state index
        when ``state`` is given: a page costs the same at the first job or the
        millionth. ``queue`` and ``text`` (an id prefix or a substring of the command,
        case-sensitive) filter a window of at most ``scan`` jobs, so a rare match
        never scans the table: a page may then hold fewer than ``limit`` jobs while
        ``next_before`` still points further back.
        """
        ...

    async def queue_counts(self) -> dict[str, dict[JobState, int]]:
        """Jobs per queue and state, every state present, from the kept counters."""
        ...

    async def finished_by_minute(self, since: int) -> list[tuple[int, Outcome, int]]:
        """``(minute start ms, outcome, attempts)`` for attempts ended at or after ``since``.

        Reads the index on the attempts' end time only (an hour of attempts).
        """
        ...

    async def oldest_due(self, queue: str, *, now: int) -> int | None:
        """The earliest ``next_run_at <= now`` of a waiting job of ``queue``, or ``None``."""
        ...

    async def finished_totals(self) -> FinishedTotals:
        """The kept counters of finished attempts: a few rows per queue."""
        ...


class ScheduleStore(Protocol):
    """Schedules (reference §19.2): the rows, and the one transaction that makes a fire."""

    async def add_schedule(self, schedule: Schedule) -> None:
        """Store a new schedule; ``DuplicateSchedule`` if the name is taken (nothing changes)."""
        ...

    async def list_schedules(self) -> list[Schedule]:
        """Every schedule, by name."""
        ...

    async def get_schedule(self, name: str) -> Schedule | None: ...

    async def remove_schedule(self, name: str) -> bool:
        """Delete the schedule (its jobs stay); ``False`` if there was none."""
        ...

    async def pause_schedule(self, name: str, *, now: int) -> bool:
        """Stop firing until resumed; ``False`` if there is no such schedule."""
        ...

    async def resume_schedule(self, name: str, *, next_fire_at: int | None, now: int) -> bool:
        """Fire again from ``next_fire_at`` (if it was paused); ``False`` if there is none."""
        ...

    async def due_schedules(self, *, now: int) -> DueSchedules:
        """The active schedules whose next fire time has come, by the store's clock.

        Reads an index of the active schedules' next fire times, never the jobs.
        """
        ...

    async def fire(self, fire: Fire, *, now: int) -> Fired:
        """Make one fire time of a schedule, exactly once however many workers race.

        One transaction: a compare-and-set moves the schedule from ``fire.due_at``
        to ``fire.next_at`` (only if it still waits for ``due_at``, is the same
        schedule and is not paused; otherwise nothing changes and ``handled`` is
        ``False``); then, unless the overlap rule holds it back
        (``bookkeeping.fire_makes``), ``fire.job`` is inserted (an id that exists
        already counts as made); then the skipped fire times are counted. A worker
        killed midway leaves nothing: the fire time is still due for the others.
        """
        ...

    async def run_schedule(
        self, name: str, created_at: int, job: NewJob, *, fire_at: int, now: int
    ) -> None:
        """``schedule run``: insert ``job`` and record it as the last fire, at ``fire_at``.

        One transaction; ``ScheduleNotFound`` if the schedule is gone (or was added
        again since it was read), ``DuplicateJob`` if the id exists: nothing changes.
        """
        ...


class Backend(
    JobStore,
    JobOperations,
    JobReader,
    WorkerRegistry,
    ConfigStore,
    Notifier,
    WebReader,
    QueueControl,
    ScheduleStore,
    Protocol,
):
    """A job store: SQLite (``backends.sqlite``) or PostgreSQL (``backends.postgres``)."""

    #: The target it was opened with (a path or URL), for messages.
    target: str
    #: Where the store lives, the same however the target was spelt and never holding a
    #: password: the resolved file path, or the server, database and schema. Workers
    #: mark their jobs' processes with a hash of it (``procs.store_tag``), so that two
    #: stores on one host never take each other's processes for their own orphans.
    identity: str

    async def aclose(self) -> None: ...


#: The results only reads of the dashboard, ``show``, ``logs`` and the scheduler
#: build: they live in ``base_late`` and load on first use, so ``enqueue`` does not
#: pay for making them (issue 15).
_LATE = frozenset({"AttemptOutput", "Link", "Links", "JobsPage", "FinishedTotals", "DueSchedules"})

if not TYPE_CHECKING:
    from queuectl.late import first_use

    __getattr__ = first_use(globals(), "queuectl.backends.base_late", _LATE)
