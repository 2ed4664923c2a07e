"""The records of running, recovering and operating jobs, loaded on first use.

They belong with ``queuectl.models`` and are imported from there (``from
queuectl.models import Claim`` works as before); they live in a module of their
own because building a frozen, slotted dataclass costs about half a millisecond
at import, and ``enqueue``, which needs none of them, should not pay for thirteen
(issue 15). No I/O happens here.
"""

from __future__ import annotations

from dataclasses import dataclass

from queuectl.models import NewJob, Outcome, Overlap, StopMode


@dataclass(frozen=True, slots=True)
class Attempt:
    """One claim of a job: what ran, where, and how it ended."""

    job_id: str
    attempt: int
    worker_id: str | None
    started_at: int
    finished_at: int | None
    outcome: Outcome | None
    exit_code: int | None
    signal: int | None
    error: str | None
    host: str | None = None
    pid: int | None = None
    output_size: int = 0
    output_truncated: bool = False


@dataclass(frozen=True, slots=True)
class ExecutionResult:
    """What happened to one command; a failing command is data, not an exception."""

    exit_code: int | None = None
    signal: int | None = None
    timed_out: bool = False
    spawn_error: str | None = None
    interrupted: bool = False
    lost_lease: bool = False
    #: Killed because the job was cancelled (``queuectl cancel``).
    cancelled: bool = False
    duration_s: float = 0.0
    output_tail: bytes = b""
    output_size: int = 0

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not (
            self.timed_out or self.interrupted or self.lost_lease or self.cancelled
        )

    @property
    def output_truncated(self) -> bool:
        return self.output_size > len(self.output_tail)

    def describe(self) -> str | None:
        """The ``last_error`` text for a failed attempt, ``None`` for success."""
        if self.ok:
            return None
        if self.spawn_error is not None:
            return f"could not start: {self.spawn_error}"
        if self.cancelled:
            return "cancelled while running"
        if self.lost_lease:
            return "lease lost: another worker took the job over"
        if self.interrupted:
            return "interrupted by a forced worker stop"
        if self.timed_out:
            return f"timed out after {self.duration_s:.3g}s"
        if self.signal is not None:
            return f"killed by signal {self.signal}"
        return f"exit code {self.exit_code}"

    @property
    def outcome(self) -> Outcome:
        if self.ok:
            return Outcome.COMPLETED
        if self.spawn_error is not None:
            return Outcome.SPAWN_FAILED
        if self.cancelled:
            return Outcome.CANCELLED
        if self.interrupted:
            return Outcome.INTERRUPTED
        if self.lost_lease:
            return Outcome.LOST
        if self.timed_out:
            return Outcome.TIMED_OUT
        return Outcome.FAILED


@dataclass(frozen=True, slots=True)
class ProcessStart:
    """Where an attempt's command runs, so a later recovery can kill what is left of it."""

    job_id: str
    token: int
    host: str
    pid: int
    pgid: int
    #: ``<boot id>:<start ticks>`` of the group leader, to never signal a reused pid.
    proc_start: str | None
    #: The file the command's output is spooled to while it runs.
    log_path: str | None = None
    #: Which of the worker's slots runs it (``slot 0`` .. ``count - 1``), for the live view.
    slot: int | None = None


@dataclass(frozen=True, slots=True)
class RunningJob:
    """A job some worker slot is running right now, as the live view shows it."""

    job_id: str
    command: str
    #: The attempt being run: its history row number (from 1), as ``show`` lists it.
    attempt: int
    max_retries: int
    worker_id: str | None
    #: ``None`` until the worker has recorded where the command runs (a few ms).
    slot: int | None
    started_at: int
    host: str | None = None
    pid: int | None = None
    #: The job's ``attempts`` (runs charged to ``max_retries``); ``None``: as ``attempt``.
    attempts: int | None = None


@dataclass(frozen=True, slots=True)
class Finish:
    """The end of one attempt, as a worker reports it; the store picks the next state."""

    job_id: str
    token: int
    attempts: int
    max_retries: int
    result: ExecutionResult


@dataclass(frozen=True, slots=True)
class LostAttempt:
    """An attempt whose lease expired or whose worker is known to be dead."""

    job_id: str
    token: int
    attempts: int
    max_retries: int
    worker_id: str | None
    host: str | None
    pgid: int | None
    proc_start: str | None
    #: When the attempt was claimed (epoch ms); its processes cannot be older.
    started_at: int | None = None
    #: Where its output was spooled, on ``host`` (kept by the recovering worker there).
    log_path: str | None = None


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    id: str
    host: str
    pid: int
    started_at: int
    heartbeat_at: int
    count: int
    jobs_done: int
    queues: tuple[str, ...] = ()
    proc_start: str | None = None
    stop_requested: StopMode = StopMode.NONE


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """The store's answer to a worker's heartbeat."""

    #: Tokens of running attempts whose lease this worker no longer holds.
    lost: frozenset[tuple[str, int]]
    stop: StopMode
    #: Tokens of running attempts that someone asked to cancel (``queuectl cancel``).
    cancel: frozenset[tuple[str, int]] = frozenset()
    #: ``False`` when the worker's row was gone (removed as stale) and must be re-added.
    registered: bool = True
    #: Every attempt the store says this worker holds (``(job id, token)``), including
    #: claims whose answer never reached it (a connection lost after the commit).
    held: frozenset[tuple[str, int]] = frozenset()


@dataclass(frozen=True, slots=True)
class JobChanges:
    """What ``update`` changes in a waiting job; ``None`` leaves a field as it is."""

    priority: int | None = None
    queue: str | None = None
    max_retries: int | None = None
    timeout_s: float | None = None
    #: A new start: ``run_at`` as the record shows it, ``next_run_at`` when it is due.
    run_at: int | None = None
    next_run_at: int | None = None
    #: Set when the new start was given as a delay (``--delay``, ``--now``: 0), so a
    #: store with a clock of its own counts it from that clock.
    delay_ms: int | None = None

    @property
    def empty(self) -> bool:
        return all(
            v is None
            for v in (self.priority, self.queue, self.max_retries, self.timeout_s, self.next_run_at)
        )


@dataclass(frozen=True, slots=True)
class Schedule:
    """A stored schedule: a cron expression in a zone, and the job it makes."""

    name: str
    cron: str
    tz: str
    overlap: Overlap
    paused: bool
    #: The job template as an enqueue object (only the fields given).
    job: dict[str, object]
    #: The next fire time not yet handled (kept while paused; shown as none).
    next_fire_at: int | None
    last_fire_at: int | None
    last_job_id: str | None
    #: Fire times that made no job: missed while no worker ran, or skipped by overlap.
    skipped: int
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class Fire:
    """One fire of a due schedule, as a worker asks the store to make it.

    The store makes it only if the schedule still waits for ``due_at`` (it was not
    handled elsewhere meanwhile), and then, in the same transaction, moves the
    schedule on to ``next_at`` and counts ``missed``.
    """

    name: str
    #: The schedule's ``created_at``: a schedule removed and added again is another one.
    created_at: int
    due_at: int
    next_at: int | None
    missed: int
    fire_at: int
    job: NewJob


@dataclass(frozen=True, slots=True)
class QueueSetting:
    """A named queue's stored settings (a row exists only while it has one)."""

    queue: str
    paused: bool = False
    #: At most this many of its jobs processing at once; ``None``: no limit.
    limit: int | None = None


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """Every stored queue setting, read together."""

    #: ``queue pause --all`` is in force: every queue is held, whatever its own row says.
    all_paused: bool
    queues: dict[str, QueueSetting]

    def paused(self, queue: str) -> bool:
        setting = self.queues.get(queue)
        return self.all_paused or (setting is not None and setting.paused)

    def limit(self, queue: str) -> int | None:
        setting = self.queues.get(queue)
        return None if setting is None else setting.limit
