"""Results of the store's reads for the dashboard, ``show``, ``logs`` and the scheduler.

They belong with ``queuectl.backends.base`` and are imported from there; they live
in a module of their own, loaded on first use, because building a frozen, slotted
dataclass costs about half a millisecond at import and ``enqueue`` needs none of
them (issue 15).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from queuectl.models import Job, JobState, Schedule


@dataclass(frozen=True, slots=True)
class AttemptOutput:
    attempt: int
    output: bytes
    output_size: int
    #: Where the running command's output is spooled, on ``host``.
    log_path: str | None
    host: str | None
    finished: bool


@dataclass(frozen=True, slots=True)
class Link:
    """A job on the other end of a dependency: its id, its state (``None``: removed since),
    and whether that edge is met."""

    id: str
    state: JobState | None
    met: bool


@dataclass(frozen=True, slots=True)
class Links:
    """``show``: a job's dependencies (in the order given) and the jobs waiting on it."""

    after: list[Link]
    dependents: list[Link]


@dataclass(frozen=True, slots=True)
class JobsPage:
    """One page of a job list, newest first, and where the next (older) page starts."""

    jobs: list[Job]
    #: The cursor of the next page (pass as ``before``), ``None`` at the end.
    next_before: int | None
    #: How many jobs the page looked at (the window), to say so when a search is cut.
    scanned: int = 0


@dataclass(frozen=True, slots=True)
class FinishedTotals:
    """The store's counters of finished attempts since it was created; they never go down.

    Kept in the transaction that finishes each attempt (not counted from the attempts
    table, which ``purge`` and ``rm`` shrink).
    """

    #: queue → outcome (``bookkeeping.TALLIES``) → attempts.
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    #: queue → bucket upper bound in ms (``bookkeeping.BUCKETS_MS``) → attempts in it
    #: (per bucket, not cumulative).
    buckets: dict[str, dict[int, int]] = field(default_factory=dict)
    #: queue → total duration of its finished attempts, ms.
    sum_ms: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DueSchedules:
    """What the workers' scheduler reads: what is due now, and when to look again."""

    #: The store's clock when it read (PostgreSQL: the server's), to plan fires by.
    store_now: int
    due: list[Schedule]
    #: The earliest fire time after ``store_now`` of an active schedule, moved onto
    #: the caller's clock (for its timer); ``None`` when there is none.
    next_at: int | None
