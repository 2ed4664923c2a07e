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

import json
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from queuectl.backends.base import FinishResult, OnLost
from queuectl.config import from_stored
from queuectl.exceptions import (
    DuplicateJob,
    DuplicateSchedule,
    InvalidJob,
    InvalidTransition,
    JobNotFound,
    ScheduleNotFound,
)
from queuectl.models import JobState, NewJob, Outcome, Overlap, StopMode
from queuectl.retry import RetryDecision, RetryPolicy, decide, if_cancel_requested

if TYPE_CHECKING:
    from queuectl.models import Finish, Fire, Heartbeat, LostAttempt, ProcessStart, Schedule

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
    "cancel_state",
    "tally",
    "cancel_tally",
)
#: The fields of ``recovery_records``.
RECOVERY_FIELDS = ("id", "token", "state", "delay_ms", "error", "cancel_state", "tally")
#: How a finished attempt counts in ``queuectl_jobs_finished_total`` (reference §20.5): every
#: finished attempt under exactly one of these. ``cancelled`` also counts a cancelled
#: job that never started.
TALLIES = ("completed", "failed", "dead", "cancelled", "lost", "interrupted")
#: Upper bounds (ms, inclusive) of the attempt-duration histogram, for shell jobs: from
#: a 10 ms ``true`` to an hour-long build, about two per factor of ten.
DURATION_BOUNDS_MS = (
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000,
    300_000, 900_000, 1_800_000, 3_600_000,
)  # fmt: skip
#: The bucket above the last bound (Prometheus' ``+Inf``) as the stores keep it.
OVER_MS = 1 << 62
#: Every bucket a duration can fall into, as both stores' SQL takes them.
BUCKETS_MS = (*DURATION_BOUNDS_MS, OVER_MS)
#: Attempts ended per minute are kept this long (ms) for the dashboard's last-hour chart.
MINUTES_KEPT_MS = 2 * 3_600_000
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
    retry is to be scheduled (reference §5.4), so a cycle of successes reads no config.
    """
    failing = any(not (f.result.ok or f.result.interrupted or f.result.cancelled) for f in finishes)
    # Success and a forced stop do not consult the policy: the defaults stand in.
    policy = load_policy() if failing else RetryPolicy()
    return [
        decide(
            ok=f.result.ok,
            interrupted=f.result.interrupted,
            cancelled=f.result.cancelled,
            attempts=f.attempts,
            max_retries=f.max_retries,
            policy=policy,
        )
        for f in finishes
    ]


def tally(outcome: Outcome, state: JobState) -> str:
    """How an attempt that ended with ``outcome``, leaving its job in ``state``, counts.

    A failure counts as ``dead`` when it made the job dead, ``cancelled`` when a cancel
    request ended the job, else ``failed`` (it will be retried); a completed, lost,
    interrupted or cancelled attempt counts as such whatever follows.
    """
    if outcome in (Outcome.COMPLETED, Outcome.LOST, Outcome.INTERRUPTED, Outcome.CANCELLED):
        return outcome.value
    if state is JobState.CANCELLED:
        # Failed while a cancel request was in force: never retried, so not "failed".
        return "cancelled"
    return "dead" if state is JobState.DEAD else "failed"


def bucket_ms(duration_ms: int) -> int:
    """The histogram bucket of a duration: the smallest bound that holds it."""
    for bound in DURATION_BOUNDS_MS:
        if duration_ms <= bound:
            return bound
    return OVER_MS


class Tallies:
    """The counter increments of one transaction, summed per row before they are written.

    Each store writes ``count_rows`` and ``duration_rows`` in the transaction that
    finished the attempts, so a counter moves exactly when an attempt's end commits.
    """

    def __init__(self) -> None:
        # Plain dicts, not Counters: built once per finishing transaction (hot path).
        self._counts: dict[tuple[str, str], int] = {}
        self._durations: dict[tuple[str, int], list[int]] = {}
        self._minutes: dict[tuple[int, str], int] = {}

    def add(self, queue: str, tally: str, duration_ms: int, *, outcome: str, now: int) -> None:
        """One finished attempt: how it counts (``tally``), how long it ran, and the
        attempt's own ``outcome`` in the minute of ``now`` (the overview's chart)."""
        counts, minutes = self._counts, self._minutes
        key = (queue, tally)
        counts[key] = counts.get(key, 0) + 1
        minute = (now // 60_000 * 60_000, outcome)
        minutes[minute] = minutes.get(minute, 0) + 1
        ms = duration_ms if duration_ms > 0 else 0
        cell = self._durations.get((queue, bucket_ms(ms)))
        if cell is None:
            self._durations[queue, bucket_ms(ms)] = [1, ms]
        else:
            cell[0] += 1
            cell[1] += ms

    def __bool__(self) -> bool:
        return bool(self._counts)

    def count_rows(self) -> list[dict[str, Any]]:
        return [{"queue": q, "tally": t, "n": n} for (q, t), n in self._counts.items()]

    def minute_rows(self) -> list[dict[str, Any]]:
        return [{"minute": m, "outcome": o, "n": n} for (m, o), n in self._minutes.items()]

    def cells(self) -> list[tuple[str, object, object, int, int]]:
        """Every counter cell as ``(kind, a, b, n, sum_ms)``: SQLite's one counter
        table (its migration 013), written with one positional ``executemany``."""
        cells: list[tuple[str, object, object, int, int]] = [
            ("finished", q, t, n, 0) for (q, t), n in self._counts.items()
        ]
        cells += [("duration", q, le, n, ms) for (q, le), (n, ms) in self._durations.items()]
        cells += [("minute", m, o, n, 0) for (m, o), n in self._minutes.items()]
        return cells

    def duration_rows(self) -> list[dict[str, Any]]:
        return [
            {"queue": q, "le_ms": le, "n": n, "sum_ms": total}
            for (q, le), (n, total) in self._durations.items()
        ]


def finish_records(
    finishes: Sequence[Finish], decisions: Sequence[RetryDecision]
) -> list[dict[str, Any]]:
    """Per finish, the values of ``FINISH_FIELDS``."""
    records = []
    for f, d in zip(finishes, decisions, strict=True):
        r = f.result
        outcome = r.outcome
        # What the job becomes instead if a cancel request is in force on its row.
        cancel_state = if_cancel_requested(d.state)
        values = (
            f.job_id,
            f.token,
            outcome.value,
            r.exit_code,
            r.signal,
            r.describe(),
            r.output_tail,
            r.output_size,
            d.state.value,
            d.delay_ms,
            1 if d.refund else 0,
            cancel_state.value,
            tally(outcome, d.state),
            # How it counts instead if a cancel request is in force.
            tally(outcome, cancel_state),
        )
        records.append(dict(zip(FINISH_FIELDS, values, strict=True)))
    return records


def finish_results(
    finishes: Sequence[Finish],
    decisions: Sequence[RetryDecision],
    held: Mapping[str, str],
    now: int,
) -> list[FinishResult]:
    """What ``exchange`` reports.

    ``held`` maps the jobs whose fence let the write through to the state written:
    the decision's, or ``cancelled`` when a cancel request was in force.
    """
    results = []
    for f, d in zip(finishes, decisions, strict=True):
        written = held.get(f.job_id)
        if written is None:
            results.append(FinishResult(f.job_id, False, d.state, d.next_run_at(now)))
            continue
        state = JobState(written)
        next_run_at = d.next_run_at(now) if state is d.state else None
        results.append(FinishResult(f.job_id, True, state, next_run_at))
    return results


def heartbeat_answer(
    running: Iterable[tuple[str, int]],
    held: frozenset[tuple[str, int]],
    stop: int | None,
    cancel: Iterable[tuple[str, int]] = (),
) -> Heartbeat:
    """What a heartbeat tells its worker.

    ``held`` are the ``(job id, token)`` whose lease it extended: the others of
    ``running`` were lost and must be killed. ``cancel`` are those of them that
    someone asked to cancel: killed too, and finished as cancelled. ``stop`` is the
    worker row's stop request, ``None`` when the row is gone (removed as stale), so
    the worker registers again.
    """
    from queuectl.models_late import Heartbeat

    lost = frozenset(t for t in running if t not in held)
    asked = frozenset(cancel) - lost
    if stop is None:
        return Heartbeat(lost, StopMode.NONE, asked, registered=False, held=held)
    return Heartbeat(lost, StopMode(stop), asked, held=held)


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
            if_cancel_requested(decision.state).value,
            tally(Outcome.LOST, decision.state),
        )
        records.append(dict(zip(RECOVERY_FIELDS, values, strict=True)))
    return records


async def gather_stream(chunks: AsyncIterator[Sequence[NewJob]]) -> list[NewJob]:
    """Every job of an ``enqueue_stream``, for a store that writes them in one go.

    A job whose id or ``unique_key`` an earlier job of the stream has is refused
    here, as a streaming store's constraint would refuse it (``earlier`` set).
    """
    jobs: list[NewJob] = []
    ids: dict[str, int] = {}
    keys: dict[str, int] = {}
    async for chunk in chunks:
        for job in chunk:
            position = len(jobs) + 1
            first = ids.get(job.id)
            if first is not None:
                raise DuplicateJob(job_id=job.id, position=position, earlier=first)
            if job.unique_key is not None:
                first = keys.get(job.unique_key)
                if first is not None:
                    raise DuplicateJob(
                        job_id=job.id, position=position, key=job.unique_key, earlier=first
                    )
                keys[job.unique_key] = position
            ids[job.id] = position
            jobs.append(job)
    return jobs


def duplicate_job(
    jobs: Sequence[NewJob],
    exists: Callable[[str], bool],
    holder: Callable[[str], tuple[str, str] | None] | None = None,
) -> DuplicateJob:
    """The error naming the first job of ``jobs`` whose id ``exists`` already, or else
    the first whose ``unique_key`` a waiting or running job holds (``holder`` gives
    that job's id and state, reference §4.2)."""
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


#: States in which a schedule's previous job holds back the next one (``overlap: skip``).
UNFINISHED_STATES = frozenset(
    {JobState.PENDING.value, JobState.FAILED.value, JobState.PROCESSING.value}
)


def schedule_values(schedule: Schedule) -> dict[str, Any]:
    """The stored values of a new schedule (``insert_schedule``)."""
    return {
        "name": schedule.name,
        "cron": schedule.cron,
        "tz": schedule.tz,
        "overlap": schedule.overlap.value,
        "paused": 1 if schedule.paused else 0,
        "job": json.dumps(schedule.job, separators=(",", ":")),
        "next_fire_at": schedule.next_fire_at,
        "now": schedule.created_at,
    }


def fire_claim_values(fire: Fire, now: int) -> dict[str, Any]:
    """The compare-and-set of ``fire_claim``: the fire time must still be the one read."""
    return {
        "name": fire.name,
        "created_at": fire.created_at,
        "due_at": fire.due_at,
        "next_at": fire.next_at,
        "now": now,
    }


def fire_makes(overlap: str, previous_state: str | None) -> bool:
    """Whether a fire time makes its job, given the state of the schedule's previous job.

    ``overlap: skip`` holds a fire time back while that job is unfinished (reference §19.2);
    a previous job that was removed holds nothing back.
    """
    return overlap == Overlap.ALLOW.value or previous_state not in UNFINISHED_STATES


def fire_done_values(fire: Fire, made: str | None) -> dict[str, Any]:
    """What a handled fire leaves on its schedule (``fire_done``).

    Every fire time that made no job counts as skipped: the ``missed`` ones before
    it, and this one too when the overlap rule held it back. ``made`` is the job's
    id (it may already have existed: ``schedule run`` in the same second).
    """
    return {
        "name": fire.name,
        "skipped": fire.missed + (0 if made else 1),
        "fire_at": fire.fire_at if made else None,
        "job_id": made,
    }


def run_values(name: str, created_at: int, job_id: str, fire_at: int, now: int) -> dict[str, Any]:
    """``schedule run``: its job counts as the schedule's last fire (``run_claim``)."""
    return {
        "name": name,
        "created_at": created_at,
        "job_id": job_id,
        "fire_at": fire_at,
        "now": now,
    }


def schedule_gone(name: str) -> ScheduleNotFound:
    return ScheduleNotFound(f"no schedule named {name!r}")


def duplicate_schedule(name: str) -> DuplicateSchedule:
    return DuplicateSchedule(f"a schedule named {name!r} already exists")


# Dependencies (reference §19.1). The stores run the statements of dependencies.sql in
# the transaction that finished, cancelled or retried the jobs; what they decide is here.

#: States in which a job has finished: its dependents stop waiting on it (or are cancelled).
ENDED_STATES = frozenset({JobState.COMPLETED, JobState.DEAD, JobState.CANCELLED})
#: Ends that cancel the dependents of ``after_mode: completed``.
GONE_STATES = frozenset({JobState.DEAD, JobState.CANCELLED})
#: ``last_error`` of a job cancelled by a dependency; ``{id}`` is that job's id.
DEPENDENCY_ERROR = "cancelled: dependency {id} did not complete (it ended dead or cancelled)"


def outside_deps(jobs: Sequence[NewJob]) -> list[str]:
    """The dependencies named by ``jobs`` that are not in the batch: they must exist."""
    batch = {j.id for j in jobs}
    return list(dict.fromkeys(d for j in jobs for d in j.after if d not in batch))


def dependency_met(state: JobState | None, mode: str) -> bool:
    """Whether a dependency in ``state`` no longer holds a job waiting in ``mode``.

    A dependency removed since (``None``) holds nothing back.
    """
    if state is None or state is JobState.COMPLETED:
        return True
    return mode == "finished" and state in GONE_STATES


def plan_after(
    jobs: Sequence[NewJob], states: Mapping[str, JobState]
) -> tuple[list[int], list[dict[str, Any]]]:
    """How many dependencies each new job waits for, and its ``job_deps`` rows.

    ``states`` are those of ``outside_deps`` as the store read them under its lock.
    A dependency that is neither there nor earlier in the batch, or one already
    ``dead`` or ``cancelled`` under ``after_mode: completed``, is an error naming
    the job by its position, and nothing is enqueued.
    """
    unmet: list[int] = []
    edges: list[dict[str, Any]] = []
    earlier: set[str] = set()
    for position, job in enumerate(jobs, 1):
        waits = 0
        for dep in job.after:
            if dep in earlier:
                met = False
            else:
                state = states.get(dep)
                if state is None:
                    raise InvalidJob(
                        f"job {position}: after names {dep!r}, which is not a job (a dependency"
                        " must exist already or come earlier in the same enqueue);"
                        " nothing was enqueued"
                    )
                if job.after_mode == "completed" and state in GONE_STATES:
                    raise InvalidJob(
                        f"job {position}: after names {dep!r}, which is {state.value} and will"
                        f" never complete (retry it first, or use after_mode finished);"
                        " nothing was enqueued"
                    )
                met = dependency_met(state, job.after_mode)
            waits += 0 if met else 1
            edges.append({"job_id": job.id, "depends_on": dep, "met": 1 if met else 0})
        unmet.append(waits)
        earlier.add(job.id)
    return unmet, edges


def check_retry_blockers(job_ids: Sequence[str], blockers: Iterable[tuple[str, str, str]]) -> None:
    """``retry`` of a job that waits to complete on a dependency that is ``dead`` or
    ``cancelled`` (and not retried in the same call) is an error naming it: it would
    only be cancelled again. ``blockers``: (job, dependency, its state) rows."""
    retried = set(job_ids)
    for job_id, dep, state in blockers:
        if dep not in retried:
            raise InvalidTransition(
                f"job {job_id!r} waits on {dep!r}, which is {state}: retry {dep} instead (it"
                f" brings {job_id} back with it); nothing was changed"
            )


def refuse_removal(job_ids: Sequence[str], waiting: Iterable[tuple[str, str, str]]) -> None:
    """``rm`` of a job that an unfinished job (not removed in the same call) depends on
    is an error naming both. ``waiting``: (dependency, dependent, its state) rows."""
    removed = set(job_ids)
    for dep, job_id, state in waiting:
        if job_id not in removed:
            raise InvalidTransition(
                f"job {dep!r} is a dependency of {job_id!r} ({state}), which has not"
                f" finished: cancel or remove {job_id} first; nothing was changed"
            )


def lowered(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The met edges (``job_id`` rows) as how much each job's ``unmet`` goes down."""
    return [{"id": i, "n": n} for i, n in Counter(r["job_id"] for r in rows).items()]
