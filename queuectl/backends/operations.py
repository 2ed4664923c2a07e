"""What a person may do to jobs (cancel, retry, rm, update), decided once for every store.

Each store reads the named jobs' states under its write lock (SQLite's
``BEGIN IMMEDIATE``, PostgreSQL's ``FOR UPDATE``), hands them to a ``plan_*``
function here, and applies the plan with its own SQL in the same transaction.
The rules (which states each command accepts, what "all or nothing" means, the
words of every refusal) therefore live here once, and the dialects only run
statements. A refusal raises before anything is written, so nothing changes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from queuectl.exceptions import InvalidTransition, JobNotFound
from queuectl.models import JobState

#: Called with the running total after each batch (``base.OnProgress``).
_Progress = Callable[[int], None]

#: States ``cancel`` stops at once; a ``processing`` job gets a request instead.
CANCEL_AT_ONCE = frozenset({JobState.PENDING, JobState.FAILED})
#: States ``retry`` brings back, and whether their attempts start again from 0.
RETRY_RESETS = {JobState.DEAD: True, JobState.CANCELLED: True, JobState.FAILED: False}
#: States whose fields ``update`` may change.
UPDATABLE = frozenset({JobState.PENDING, JobState.FAILED})
#: Finished states ``purge`` deletes, and its default.
PURGEABLE = frozenset({JobState.COMPLETED, JobState.DEAD, JobState.CANCELLED})
PURGE_DEFAULT = (JobState.COMPLETED, JobState.CANCELLED)
#: Rows deleted (or moved) per short transaction by purges, retention and bulk retries.
BATCH = 500


@dataclass(frozen=True, slots=True)
class CancelResult:
    """What ``cancel`` did to each named job, in the order they were named."""

    #: Were ``pending`` or ``failed``: now ``cancelled``.
    cancelled: list[str] = field(default_factory=list)
    #: Are ``processing``: the request is on the row; their workers kill them.
    requested: list[str] = field(default_factory=list)
    #: Were ``cancelled`` already: left as they were.
    already: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RetryPlan:
    """``retry``: jobs whose attempts go back to 0, and ``failed`` ones that keep theirs."""

    reset: list[str] = field(default_factory=list)
    keep: list[str] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return [*self.reset, *self.keep]


def _unique(job_ids: Sequence[str]) -> list[str]:
    """An id named twice is one request for that job."""
    return list(dict.fromkeys(job_ids))


def _state(states: Mapping[str, JobState], job_id: str) -> JobState:
    found = states.get(job_id)
    if found is None:
        raise JobNotFound(f"no job with id {job_id!r}; nothing was changed")
    return found


def plan_cancel(job_ids: Sequence[str], states: Mapping[str, JobState]) -> CancelResult:
    """Reference §16.1 ``cancel``: refuse the whole list if one job is unknown or finished."""
    result = CancelResult()
    for job_id in _unique(job_ids):
        state = _state(states, job_id)
        if state in CANCEL_AT_ONCE:
            result.cancelled.append(job_id)
        elif state is JobState.PROCESSING:
            result.requested.append(job_id)
        elif state is JobState.CANCELLED:
            result.already.append(job_id)
        else:
            raise InvalidTransition(
                f"job {job_id!r} is {state.value}: only pending, failed and running jobs can"
                " be cancelled; nothing was changed"
            )
    return result


def plan_retry(job_ids: Sequence[str], states: Mapping[str, JobState]) -> RetryPlan:
    """Reference §16.2 ``retry``: dead and cancelled jobs start over; failed ones run now."""
    plan = RetryPlan()
    for job_id in _unique(job_ids):
        state = _state(states, job_id)
        reset = RETRY_RESETS.get(state)
        if reset is None:
            raise InvalidTransition(
                f"job {job_id!r} is {state.value}: only dead, cancelled and failed jobs can be"
                " retried; nothing was changed"
            )
        (plan.reset if reset else plan.keep).append(job_id)
    return plan


def plan_remove(job_ids: Sequence[str], states: Mapping[str, JobState]) -> list[str]:
    """Reference §16.3 ``rm``: any job but a running one, which must be cancelled first."""
    ids = _unique(job_ids)
    for job_id in ids:
        if _state(states, job_id) is JobState.PROCESSING:
            raise InvalidTransition(
                f"job {job_id!r} is running: cancel it first (queuectl cancel {job_id});"
                " nothing was changed"
            )
    return ids


def check_update(job_id: str, state: JobState | None) -> None:
    """Reference §16.5 ``update``: only a job that waits (``pending`` or ``failed``)."""
    if state is None:
        raise JobNotFound(f"no job with id {job_id!r}")
    if state not in UPDATABLE:
        raise InvalidTransition(
            f"job {job_id!r} is {state.value}: only pending and failed jobs can be updated;"
            " nothing was changed"
        )


def check_retry_state(state: JobState) -> None:
    """``retry --state`` takes the states a whole class of jobs is retried from."""
    if state not in (JobState.DEAD, JobState.CANCELLED):
        raise InvalidTransition(f"retry --state takes dead or cancelled, not {state.value}")


def check_purge_states(states: Sequence[JobState]) -> tuple[JobState, ...]:
    chosen = tuple(dict.fromkeys(states)) or PURGE_DEFAULT
    for state in chosen:
        if state not in PURGEABLE:
            raise InvalidTransition(
                f"purge deletes finished jobs only (completed, dead, cancelled), not {state.value}"
            )
    return chosen


async def in_batches(
    batch: Callable[[int], Awaitable[Sequence[Mapping[str, Any]]]],
    progress: _Progress | None = None,
) -> list[str]:
    """Run ``batch(after)`` until it moves nothing; the ids it moved, in order.

    Each batch is one short transaction of the dialect's that moves up to ``BATCH``
    jobs with ``seq`` above ``after`` and returns their ``(id, seq)`` rows, so a bulk
    change never holds the store for long and every job moves atomically.
    """
    done: list[str] = []
    after = 0
    while True:
        rows = await batch(after)
        if not rows:
            return done
        done.extend(r["id"] for r in rows)
        after = max(r["seq"] for r in rows)
        if progress is not None:
            progress(len(done))
