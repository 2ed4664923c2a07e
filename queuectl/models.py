"""Value types shared by every layer; no I/O happens here.

Times are integers of milliseconds since the Unix epoch (UTC) everywhere inside
queuectl: times are kept to the millisecond (reference §4.3), integers compare exactly in SQL,
and only the rendering edge turns them into ISO-8601 strings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from queuectl import models_late as _late

    Attempt = _late.Attempt
    ExecutionResult = _late.ExecutionResult
    ProcessStart = _late.ProcessStart
    RunningJob = _late.RunningJob
    Finish = _late.Finish
    LostAttempt = _late.LostAttempt
    WorkerInfo = _late.WorkerInfo
    Heartbeat = _late.Heartbeat
    JobChanges = _late.JobChanges
    Schedule = _late.Schedule
    Fire = _late.Fire
    QueueSetting = _late.QueueSetting
    QueueSettings = _late.QueueSettings


class JobState(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    DEAD = "dead"
    #: Stopped by a person (``cancel``): terminal, never retried by itself.
    CANCELLED = "cancelled"


#: States a job never leaves on its own (``dead`` and ``cancelled`` leave only by a retry).
TERMINAL_STATES = frozenset({JobState.COMPLETED, JobState.DEAD, JobState.CANCELLED})
#: States from which a worker may claim a job once ``next_run_at`` has passed.
RUNNABLE_STATES = frozenset({JobState.PENDING, JobState.FAILED})
#: ``after_mode`` values (reference §19.1): wait for dependencies to complete, or to
#: finish in any way. The first is the default.
AFTER_MODES = ("completed", "finished")


class Outcome(StrEnum):
    """How one attempt ended, as kept in the job's history."""

    COMPLETED = "completed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    SPAWN_FAILED = "spawn_failed"
    LOST = "lost"
    INTERRUPTED = "interrupted"
    #: Killed because someone cancelled the job while it ran.
    CANCELLED = "cancelled"


class StopMode(IntEnum):
    """What a stop request asks of a worker; higher values override lower ones."""

    NONE = 0
    GRACEFUL = 1
    NOW = 2


@dataclass(frozen=True, slots=True)
class NewJob:
    """A validated job, ready to insert; ``next_run_at`` is already resolved."""

    id: str
    command: str
    max_retries: int
    priority: int = 0
    queue: str = "default"
    timeout_s: float | None = None
    run_at: int | None = None
    next_run_at: int = 0
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    #: Set when the start was given as a delay (``run_at`` is then ``now + delay_ms``),
    #: so a store with a clock of its own can count the delay from that clock.
    delay_ms: int | None = None
    #: At most one job per key is pending, failed or processing (reference §4.2).
    unique_key: str | None = None
    #: The jobs it waits for (reference §19.1), in the order given; each exists already
    #: or comes earlier in the same enqueue.
    after: tuple[str, ...] = ()
    #: ``completed`` (wait for every dependency to complete) or ``finished`` (to end
    #: in any way).
    after_mode: str = "completed"


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    command: str
    state: JobState
    attempts: int
    max_retries: int
    priority: int
    queue: str
    timeout_s: float | None
    run_at: int | None
    next_run_at: int | None
    created_at: int
    updated_at: int
    last_error: str | None
    exit_code: int | None
    env: dict[str, str]
    cwd: str | None
    #: The fencing token: it grows by one with every claim and is never reset, so
    #: it also numbers the attempts in the job's history (from 1): the attempt
    #: number users see (``show``, ``logs --attempt``, ``$QUEUECTL_ATTEMPT``).
    #: ``attempts`` counts only the runs charged to ``max_retries``.
    claims: int = 0
    worker_id: str | None = None
    lease_until: int | None = None
    #: When someone asked to cancel the running job (epoch ms); ``None`` without a request.
    #: The request stays on the row until the job is retried, so a recovery sees it too.
    cancel_requested_at: int | None = None
    unique_key: str | None = None
    #: Its dependencies (reference §19.1) and how it waits for them.
    after: tuple[str, ...] = ()
    after_mode: str = "completed"
    #: How many dependencies it still waits for: a ``pending`` job with some is not
    #: runnable (not in the claim's index) until the last one finishes.
    unmet: int = 0
    #: The dependency whose end (``dead`` or ``cancelled``) cancelled this job.
    cancelled_by: str | None = None

    @property
    def waiting(self) -> bool:
        """Pending, but held by dependencies that have not finished yet."""
        return self.state is JobState.PENDING and self.unmet > 0


@dataclass(frozen=True, slots=True)
class Claim:
    """A job handed to one worker slot, with the token that fences its writes."""

    job: Job
    token: int
    lease_until: int


class Overlap(StrEnum):
    """What a schedule does at a fire time while its previous job is unfinished."""

    #: Skip the fire time (and count it) while the previous job is pending, failed
    #: or processing.
    SKIP = "skip"
    #: Make the job anyway.
    ALLOW = "allow"


@dataclass(frozen=True, slots=True)
class Fired:
    """What the store made of a ``Fire``."""

    #: ``False`` when another worker handled that fire time first (or the schedule
    #: was paused or removed): nothing changed.
    handled: bool
    #: The job made, ``None`` when the fire time was skipped (or not handled).
    job_id: str | None = None


#: The settings name of ``queue pause --all``; never a queue's name (those are non-empty).
ALL_QUEUES = ""


#: The records only the worker, the operators' commands and the web UI build: they
#: live in ``models_late`` and load on first use, so ``enqueue`` (which builds a
#: ``NewJob`` and reads back a ``Job``) does not pay for making them (issue 15).
_LATE = frozenset(
    {
        "Attempt",
        "ExecutionResult",
        "ProcessStart",
        "RunningJob",
        "Finish",
        "LostAttempt",
        "WorkerInfo",
        "Heartbeat",
        "JobChanges",
        "Schedule",
        "Fire",
        "QueueSetting",
        "QueueSettings",
    }
)

if not TYPE_CHECKING:
    from queuectl.late import first_use

    __getattr__ = first_use(globals(), "queuectl.models_late", _LATE)
