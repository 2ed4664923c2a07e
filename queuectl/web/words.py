"""What the pages say, in the terminal's words.

Column names, the ``2/4`` of attempts, ``3m05s``, ``exit 1``, ``1.2 KiB`` and the
field names of ``show`` come from ``queuectl.cli.render``, so a person moving
between ``queuectl list`` and the dashboard reads the same thing in both. Only the
secrets differ: a job's environment shows its names, never its values.
"""

from __future__ import annotations

from dataclasses import dataclass

from queuectl.backends.base import Link, Links
from queuectl.cli.render import (
    DEPENDENTS_LABEL,
    after_label,
    attempt_cells,
    attempts_text,
    one_line,
    relative,
    signal_name,
)
from queuectl.clock import to_iso
from queuectl.models import Attempt, Job, JobState, Schedule, WorkerInfo
from queuectl.queues import QueueInfo
from queuectl.records import JobRecord

JOB_COLUMNS = ("ID", "STATE", "ATTEMPTS", "PRI", "QUEUE", "NEXT RUN", "UPDATED", "COMMAND")
WORKER_COLUMNS = ("ID", "HOST", "PID", "STARTED", "HEARTBEAT", "SLOTS", "DONE", "QUEUES")
ATTEMPT_COLUMNS = ("#", "STARTED", "DURATION", "RESULT", "ERROR", "WORKER", "OUTPUT")
SCHEDULE_COLUMNS = (
    "NAME", "CRON", "TZ", "NEXT FIRE", "LAST FIRE", "LAST JOB", "SKIPPED", "OVERLAP", "COMMAND"
)  # fmt: skip
QUEUE_COLUMNS = (
    "QUEUE", "PAUSED", "LIMIT", *(s.value.upper() for s in JobState), "OLDEST DUE"
)  # fmt: skip
STATES = tuple(s.value for s in JobState)
HIDDEN = "(hidden)"


@dataclass(frozen=True, slots=True)
class When:
    """A time as the terminal shows it (relative), with the exact one beside it."""

    text: str
    iso: str


def when(ms: int | None, now: int) -> When | None:
    if ms is None:
        return None
    return When(relative(ms, now), to_iso(ms) or "")


def job_row(job: Job, now: int) -> dict[str, object]:
    waiting = job.state in (JobState.PENDING, JobState.FAILED)
    return {
        "id": job.id,
        "state": job.state.value,
        # ``pending (waiting)`` as ``queuectl list`` says it (reference §19.1).
        "waiting": job.waiting,
        "attempts": attempts_text(job.attempts, job.max_retries),
        "priority": job.priority,
        "queue": job.queue,
        "next_run": when(job.next_run_at, now) if waiting else None,
        "updated": when(job.updated_at, now),
        "command": one_line(job.command),
    }


def job_fields(job: Job, now: int) -> list[tuple[str, object]]:
    """The fields of ``queuectl show``, in its order and words (env values hidden)."""
    waiting = job.state in (JobState.PENDING, JobState.FAILED)
    fields: list[tuple[str, object]] = [
        ("id", job.id),
        ("command", job.command),
        ("state", job.state),
        ("attempts", f"{job.attempts} of {job.max_retries + 1} (max retries {job.max_retries})"),
        ("priority", str(job.priority)),
        ("queue", job.queue),
        ("timeout", f"{job.timeout_s:g}s" if job.timeout_s else "none"),
        ("run at", when(job.run_at, now) or "-"),
        ("next run", (when(job.next_run_at, now) if waiting else None) or "-"),
        ("created", when(job.created_at, now) or "-"),
        ("updated", when(job.updated_at, now) or "-"),
        ("last error", job.last_error or "-"),
        ("exit code", "-" if job.exit_code is None else str(job.exit_code)),
    ]
    if job.worker_id:
        fields.append(("worker", job.worker_id))
    if job.cwd:
        fields.append(("cwd", job.cwd))
    if job.env:
        fields.append(("env", " ".join(f"{k}={HIDDEN}" for k in job.env)))
    return fields


@dataclass(frozen=True, slots=True)
class LinkView:
    """A job at the other end of a dependency: its id and state (``None``: removed)."""

    id: str
    state: str | None


def link_fields(job: Job, links: Links) -> list[tuple[str, list[LinkView]]]:
    """The rows ``queuectl show`` adds for dependencies (reference §19.1), in its words:
    ``after`` (``after (any end)`` with ``after_mode: finished``) and ``waited on by``."""
    rows: list[tuple[str, list[LinkView]]] = []
    if links.after:
        rows.append((after_label(job), [_link(link) for link in links.after]))
    if links.dependents:
        rows.append((DEPENDENTS_LABEL, [_link(link) for link in links.dependents]))
    return rows


def _link(link: Link) -> LinkView:
    return LinkView(link.id, link.state.value if link.state else None)


def attempt_result(a: Attempt) -> tuple[str, str]:
    """``(text, css class)``: ``exit 1``, ``SIGKILL (9)``, ``timed out``, ``running``."""
    kind = a.outcome.value if a.outcome else "running"
    if a.signal is not None:
        return f"{signal_name(a.signal)} ({a.signal})", kind
    if a.exit_code is not None:
        return f"exit {a.exit_code}", kind
    if a.outcome is not None:
        return a.outcome.value.replace("_", " "), kind
    return "running", kind


def attempt_row(a: Attempt, now: int) -> dict[str, object]:
    duration, worker, output = attempt_cells(a, now)
    result, kind = attempt_result(a)
    return {
        "attempt": a.attempt,
        "started": when(a.started_at, now),
        "duration": duration,
        "result": result,
        "kind": kind,
        "error": a.error or "-",
        "worker": worker,
        "output": output,
        "running": a.finished_at is None,
    }


def worker_row(w: WorkerInfo, now: int) -> dict[str, object]:
    return {
        "id": w.id,
        "host": w.host,
        "pid": w.pid,
        "started": when(w.started_at, now),
        "heartbeat": when(w.heartbeat_at, now),
        "slots": w.count,
        "done": w.jobs_done,
        "queues": ",".join(w.queues) or "*",
    }


def schedule_row(s: Schedule, now: int) -> dict[str, object]:
    """A row of ``schedule list``: ``paused`` stands in the NEXT FIRE column while paused."""
    return {
        "name": s.name,
        "cron": s.cron,
        "tz": s.tz,
        "paused": s.paused,
        "next_fire": None if s.paused else when(s.next_fire_at, now),
        "last_fire": when(s.last_fire_at, now),
        "last_job": s.last_job_id,
        "skipped": s.skipped,
        "overlap": s.overlap.value,
        "command": one_line(str(s.job.get("command", ""))),
    }


def queue_row(info: QueueInfo, now: int) -> dict[str, object]:
    """A row of ``queue list``: PAUSED is ``all`` (held by ``pause --all``), ``yes`` or ``no``."""
    return {
        "name": info.name,
        "paused": paused_word(info),
        "paused_by_name": info.paused_by_name,
        "limit": str(info.limit) if info.limit else "-",
        "counts": {s.value: info.counts[s] for s in JobState},
        "oldest_due": when(info.oldest_due_at, now),
    }


def paused_word(info: QueueInfo) -> str:
    return "all" if info.paused_by_all else ("yes" if info.paused_by_name else "no")


def workers_line(workers: list[WorkerInfo]) -> str:
    """``workers: 3 (in 2 processes)``, as ``queuectl status`` ends (hosts when several)."""
    processes = len(workers)
    coroutines = sum(w.count for w in workers)
    line = f"workers: {coroutines} (in {processes} process{'es' if processes != 1 else ''})"
    hosts: dict[str, int] = {}
    for w in sorted(workers, key=lambda w: w.host):
        hosts[w.host] = hosts.get(w.host, 0) + w.count
    if len(hosts) > 1:
        line += "; by host: " + ", ".join(f"{host} {n}" for host, n in hosts.items())
    return line


def redact(record: JobRecord) -> JobRecord:
    """A job record without its environment's values (they may hold secrets)."""
    return {**record, "env": dict.fromkeys(record["env"], HIDDEN)}
