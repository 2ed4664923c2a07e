"""The JSON shapes of docs/reference.md §4.4, §4.5 and §8, built from model objects.

Kept apart from ``render`` so that ``enqueue --json`` never imports rich.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any, TypedDict

from queuectl.clock import to_iso
from queuectl.models import RUNNABLE_STATES, Attempt, Job, JobState, Schedule, WorkerInfo

if TYPE_CHECKING:
    from queuectl.queue import Status
    from queuectl.queues import QueueInfo


class JobRecord(TypedDict):
    id: str
    command: str
    state: str
    attempts: int
    max_retries: int
    priority: int
    queue: str
    timeout: float | None
    run_at: str | None
    next_run_at: str | None
    created_at: str | None
    updated_at: str | None
    last_error: str | None
    exit_code: int | None
    env: dict[str, str]
    cwd: str | None
    worker: str | None
    unique_key: str | None
    after: list[str]
    after_mode: str


class AttemptRecord(TypedDict):
    attempt: int
    started_at: str | None
    finished_at: str | None
    outcome: str | None
    exit_code: int | None
    signal: int | None
    error: str | None
    worker: str | None
    host: str | None
    pid: int | None
    output_size: int
    output_truncated: bool


class WorkerRecord(TypedDict):
    id: str
    host: str
    pid: int
    started_at: str | None
    heartbeat_at: str | None
    count: int
    jobs_done: int
    queues: list[str] | None


def _number(value: float | None) -> float | None:
    if value is None:
        return None
    return int(value) if float(value).is_integer() else value


def job_record(job: Job) -> JobRecord:
    waiting = job.state in RUNNABLE_STATES
    return {
        "id": job.id,
        "command": job.command,
        "state": job.state.value,
        "attempts": job.attempts,
        "max_retries": job.max_retries,
        "priority": job.priority,
        "queue": job.queue,
        "timeout": _number(job.timeout_s),
        "run_at": to_iso(job.run_at),
        "next_run_at": to_iso(job.next_run_at) if waiting else None,
        "created_at": to_iso(job.created_at),
        "updated_at": to_iso(job.updated_at),
        "last_error": job.last_error,
        "exit_code": job.exit_code,
        "env": job.env,
        "cwd": job.cwd,
        "worker": job.worker_id,
        "unique_key": job.unique_key,
        "after": list(job.after),
        "after_mode": job.after_mode,
    }


def attempt_record(attempt: Attempt) -> AttemptRecord:
    return {
        "attempt": attempt.attempt,
        "started_at": to_iso(attempt.started_at),
        "finished_at": to_iso(attempt.finished_at),
        "outcome": attempt.outcome.value if attempt.outcome else None,
        "exit_code": attempt.exit_code,
        "signal": attempt.signal,
        "error": attempt.error,
        "worker": attempt.worker_id,
        "host": attempt.host,
        "pid": attempt.pid,
        "output_size": attempt.output_size,
        "output_truncated": attempt.output_truncated,
    }


def worker_record(worker: WorkerInfo) -> WorkerRecord:
    return {
        "id": worker.id,
        "host": worker.host,
        "pid": worker.pid,
        "started_at": to_iso(worker.started_at),
        "heartbeat_at": to_iso(worker.heartbeat_at),
        "count": worker.count,
        "jobs_done": worker.jobs_done,
        "queues": list(worker.queues) or None,
    }


class ScheduleRecord(TypedDict):
    name: str
    cron: str
    tz: str
    paused: bool
    overlap: str
    next_fire_at: str | None
    last_fire_at: str | None
    last_job_id: str | None
    skipped: int
    job: dict[str, Any]


def schedule_record(schedule: Schedule) -> ScheduleRecord:
    """Reference §19.5's keys, exactly; ``next_fire_at`` is ``null`` while paused."""
    return {
        "name": schedule.name,
        "cron": schedule.cron,
        "tz": schedule.tz,
        "paused": schedule.paused,
        "overlap": schedule.overlap.value,
        "next_fire_at": None if schedule.paused else to_iso(schedule.next_fire_at),
        "last_fire_at": to_iso(schedule.last_fire_at),
        "last_job_id": schedule.last_job_id,
        "skipped": schedule.skipped,
        "job": dict(schedule.job),
    }


class QueueRecord(TypedDict):
    queue: str
    paused: bool
    #: ``"name"`` (paused by name), ``"all"`` (held by ``pause --all``) or ``None``.
    paused_by: str | None
    limit: int | None
    jobs: dict[str, int]
    oldest_due_at: str | None


def queue_record(info: QueueInfo) -> QueueRecord:
    """One queue of ``queue list --json`` (reference §17.1: ``queue, paused, limit, jobs``)."""
    return {
        "queue": info.name,
        "paused": info.paused,
        "paused_by": "all" if info.paused_by_all else ("name" if info.paused_by_name else None),
        "limit": info.limit,
        "jobs": {s.value: info.counts[s] for s in JobState},
        "oldest_due_at": to_iso(info.oldest_due_at),
    }


def status_record(status: Status) -> dict[str, Any]:
    """``status --json`` (reference §12.1, with what is paused); the web API's too."""
    return {
        "jobs": {s.value: status.counts[s] for s in JobState},
        "workers": status.coroutines,
        "hosts": status.by_host,
        "paused": status.paused,
        "all_paused": status.all_paused,
    }


def print_json(document: Any) -> None:
    """Exactly one JSON document on stdout (reference §2.3)."""
    sys.stdout.write(json.dumps(document, ensure_ascii=False, indent=2) + "\n")
