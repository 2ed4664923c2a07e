"""The store's rules, decided once above the two SQL dialects.

What a finished attempt, a lost attempt or a dead-letter retry makes of a job, and
the words it leaves in ``last_error`` and in errors, are decided here, as saq's base
``Queue.finish``/``retry`` decide them for every broker. ``backends.sqlite`` and
``backends.postgres`` only run their SQL with what this module hands them, so a new
state or field is a change here (or in ``retry``) plus the SQL of each dialect.

Parameter records are keyed by the names the SQL uses (``id``, ``token``, ``state``,
``delay_ms`` …): SQLite binds one record per statement, PostgreSQL the same records
turned into one array per column (``postgres_rows.columns``). Times leave this
module as delays; each dialect adds them to its own clock.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from typing import Any

from queuectl.backends.base import FinishResult, OnLost
from queuectl.config import from_stored
from queuectl.exceptions import DuplicateJob, InvalidTransition, JobNotFound
from queuectl.models import (
    Finish,
    Heartbeat,
    JobState,
    LostAttempt,
    NewJob,
    ProcessStart,
    StopMode,
)
from queuectl.retry import RetryDecision, RetryPolicy, decide

#: The fields of ``start_records``.
START_FIELDS = ("id", "token", "host", "pid", "pgid", "proc_start", "log_path", "slot")
#: The fields of ``finish_records``: the attempt's end (its history row), then the job's next state.
FINISH_FIELDS = (
    "id",
    "token",
    "outcome",
    "exit_code",
    "signal",
    "error",
    "output",
    "output_size",
    "state",
    "delay_ms",
    "refund",
)
#: The fields of ``recovery_records``.
RECOVERY_FIELDS = ("id", "token", "state", "delay_ms", "error")
#: Ids of a prefix that shell completion looks at when it also filters by state.
COMPLETION_SCAN = 2000
#: Above every code point: ``prefix <= id < prefix + _TOP`` is "id starts with prefix".
_TOP = "\U0010ffff"


def policy_from_stored(stored: Mapping[str, str]) -> RetryPolicy:
    """The retry policy in force, from the stored config (field name → text)."""
    config = from_stored(stored)
    return RetryPolicy(backoff_base=config.backoff_base, backoff_max_s=config.backoff_max)


def start_records(starts: Iterable[ProcessStart]) -> list[dict[str, Any]]:
    """Per start, the values of ``START_FIELDS``: where the attempt's command runs."""
    return [
        dict(
            zip(
                START_FIELDS,
                (s.job_id, s.token, s.host, s.pid, s.pgid, s.proc_start, s.log_path, s.slot),
                strict=True,
            )
        )
        for s in starts
    ]


def decide_finishes(
    finishes: Sequence[Finish], load_policy: Callable[[], RetryPolicy]
) -> list[RetryDecision]:
    """What each finished attempt makes of its job.

    ``load_policy`` reads the stored backoff settings; it is called only when a
    retry is to be scheduled (SPEC §5), so a cycle of successes reads no config.
    """
    failing = any(not (f.result.ok or f.result.interrupted) for f in finishes)
    # Success and a forced stop do not consult the policy: the defaults stand in.
    policy = load_policy() if failing else RetryPolicy()
    return [
        decide(
            ok=f.result.ok,
            interrupted=f.result.interrupted,
            attempts=f.attempts,
            max_retries=f.max_retries,
            policy=policy,
        )
        for f in finishes
    ]


def finish_records(
    finishes: Sequence[Finish], decisions: Sequence[RetryDecision]
) -> list[dict[str, Any]]:
    """Per finish, the values of ``FINISH_FIELDS``."""
    records = []
    for f, d in zip(finishes, decisions, strict=True):
        r = f.result
        values = (
            f.job_id,
            f.token,
            r.outcome.value,
            r.exit_code,
            r.signal,
            r.describe(),
            r.output_tail,
            r.output_size,
            d.state.value,
            d.delay_ms,
            1 if d.refund else 0,
        )
        records.append(dict(zip(FINISH_FIELDS, values, strict=True)))
    return records


def finish_results(
    finishes: Sequence[Finish],
    decisions: Sequence[RetryDecision],
    held: Container[str],
    now: int,
) -> list[FinishResult]:
    """What ``exchange`` reports; ``held`` names the jobs whose fence let the write through."""
    return [
        FinishResult(f.job_id, f.job_id in held, d.state, d.next_run_at(now))
        for f, d in zip(finishes, decisions, strict=True)
    ]


def heartbeat_answer(
    running: Iterable[tuple[str, int]], held: frozenset[tuple[str, int]], stop: int | None
) -> Heartbeat:
    """What a heartbeat tells its worker.

    ``held`` are the ``(job id, token)`` whose lease it extended: the others of
    ``running`` were lost and must be killed. ``stop`` is the worker row's stop
    request, ``None`` when the row is gone (removed as stale), so the worker
    registers again.
    """
    lost = frozenset(t for t in running if t not in held)
    if stop is None:
        return Heartbeat(lost, StopMode.NONE, registered=False, held=held)
    return Heartbeat(lost, StopMode(stop), held=held)


def lost_error(worker_id: str | None) -> str:
    """``last_error`` of an attempt whose worker stopped heartbeating."""
    return f"worker lost: {worker_id or 'unknown'} stopped heartbeating"


def recovery_records(
    lost: Iterable[LostAttempt], policy: RetryPolicy, on_lost: OnLost | None
) -> list[dict[str, Any]]:
    """Per lost attempt, the values of ``RECOVERY_FIELDS``: it counts as a failed attempt.

    ``on_lost`` runs for each first: it may kill the attempt's orphaned processes,
    which must happen before the caller's transaction makes the job claimable again.
    """
    records = []
    for item in lost:
        if on_lost is not None:
            on_lost(item)
        decision = policy.after_failure(attempts=item.attempts, max_retries=item.max_retries)
        values = (
            item.job_id,
            item.token,
            decision.state.value,
            decision.delay_ms,
            lost_error(item.worker_id),
        )
        records.append(dict(zip(RECOVERY_FIELDS, values, strict=True)))
    return records


def duplicate_job(
    jobs: Sequence[NewJob],
    exists: Callable[[str], bool],
    holder: Callable[[str], tuple[str, str] | None] | None = None,
) -> DuplicateJob:
    """The error naming the first job of ``jobs`` whose id ``exists`` already, or else
    the first whose ``unique_key`` a waiting or running job holds (``holder`` gives
    that job's id and state, SPEC 7)."""
    for position, job in enumerate(jobs, 1):
        if exists(job.id):
            return DuplicateJob(
                f"job {position}: a job with id {job.id!r} already exists",
                job_id=job.id,
                position=position,
            )
    for position, job in enumerate(jobs, 1):
        found = holder(job.unique_key) if holder and job.unique_key is not None else None
        if found is not None:
            other, state = found
            return DuplicateJob(
                f"job {position}: unique_key {job.unique_key!r} is held by job {other!r} ({state})",
                job_id=job.id,
                position=position,
                key=job.unique_key,
                holder=other,
            )
    return DuplicateJob()


#: The states in which a job holds its ``unique_key`` (the partial unique index's).
KEY_HOLDING_STATES = frozenset({JobState.PENDING, JobState.FAILED, JobState.PROCESSING})


def not_requeued(job_id: str, state: str | None) -> JobNotFound | InvalidTransition:
    """Why ``dlq retry`` could not move ``job_id`` (its state, ``None`` if it is missing)."""
    if state is None:
        return JobNotFound(f"no job with id {job_id!r}")
    return InvalidTransition(f"job {job_id!r} is {state}, not dead; only dead jobs can be retried")


def list_query(state: JobState | None, queue: str | None, limit: int) -> tuple[str, dict[str, Any]]:
    """One named query per filter, so each has a plan that uses its index.

    ``limit <= 0`` means all: the value ``None`` (the SQL says what that means).
    """
    name = {
        (False, False): "list_all",
        (True, False): "list_by_state",
        (False, True): "list_by_queue",
        (True, True): "list_by_state_queue",
    }[(state is not None, queue is not None)]
    values = {
        "state": state.value if state else None,
        "queue": queue,
        "limit": limit if limit > 0 else None,
    }
    return name, values


def prefix_query(prefix: str, state: JobState | None, limit: int) -> tuple[str, dict[str, Any]]:
    """Ids that start with ``prefix`` as a range on the primary key, never a scan."""
    values: dict[str, Any] = {"lo": prefix, "hi": prefix + _TOP, "limit": limit}
    if state is None:
        return "ids_by_prefix", values
    return "ids_by_prefix_state", {**values, "state": state.value, "scan": COMPLETION_SCAN}


def counts_by_state(rows: Iterable[Mapping[str, Any]]) -> dict[JobState, int]:
    """Rows of ``state`` and ``n`` as a count for every state, zeros included."""
    by_name = {r["state"]: r["n"] for r in rows}
    return {s: int(by_name.get(s.value) or 0) for s in JobState}
