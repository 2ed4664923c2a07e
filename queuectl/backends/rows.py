"""Rows of either store as model objects; no I/O.

Both stores name their columns alike and keep times as epoch milliseconds, so one
mapping serves them; sqlite3.Row and asyncpg's Record both read by column name.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from queuectl.models import ALL_QUEUES, Job, JobState, NewJob, Outcome, Overlap, StopMode

if TYPE_CHECKING:
    from queuectl.models import (
        Attempt,
        LostAttempt,
        QueueSettings,
        RunningJob,
        Schedule,
        WorkerInfo,
    )


def job_from_row(row: Mapping[str, Any]) -> Job:
    return Job(
        id=row["id"],
        command=row["command"],
        state=JobState(row["state"]),
        attempts=row["attempts"],
        max_retries=row["max_retries"],
        priority=row["priority"],
        queue=row["queue"],
        timeout_s=row["timeout_s"],
        run_at=row["run_at"],
        next_run_at=row["next_run_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        last_error=row["last_error"],
        exit_code=row["exit_code"],
        env=json.loads(row["env"]) if row["env"] else {},
        cwd=row["cwd"],
        claims=row["claims"],
        worker_id=row["worker_id"],
        lease_until=row["lease_until"],
        cancel_requested_at=row["cancel_requested_at"],
        unique_key=row["unique_key"],
        after=tuple(json.loads(row["after_ids"])) if row["after_ids"] else (),
        after_mode=row["after_mode"],
        unmet=row["unmet"],
        cancelled_by=row["cancelled_by"],
    )


def worker_from_row(row: Mapping[str, Any], shift: int = 0) -> WorkerInfo:
    """``shift`` moves the store's times onto the caller's clock (PostgreSQL keeps its own)."""
    from queuectl.models_late import WorkerInfo

    return WorkerInfo(
        id=row["id"],
        host=row["host"],
        pid=row["pid"],
        started_at=row["started_at"] + shift,
        heartbeat_at=row["heartbeat_at"] + shift,
        count=row["count"],
        jobs_done=row["jobs_done"],
        queues=tuple(json.loads(row["queues"])) if row["queues"] else (),
        proc_start=row["proc_start"],
        stop_requested=StopMode(row["stop_requested"]),
    )


def lost_from_row(
    row: Mapping[str, Any], *, job_id: str = "id", token: str = "claims", shift: int = 0
) -> LostAttempt:
    """An expired claim (``jobs`` columns) or a stray attempt (``job_id``, ``attempt``).

    ``shift`` moves the attempt's start onto the caller's clock, where it is compared
    with the start times of this host's processes.
    """
    from queuectl.models_late import LostAttempt

    started = row["started_at"]
    return LostAttempt(
        job_id=row[job_id],
        token=row[token],
        attempts=row["attempts"],
        max_retries=row["max_retries"],
        worker_id=row["worker_id"],
        host=row["host"],
        pgid=row["pgid"],
        proc_start=row["proc_start"],
        started_at=None if started is None else started + shift,
        log_path=row["log_path"] if "log_path" in row.keys() else None,  # noqa: SIM118
    )


def attempt_from_row(r: Mapping[str, Any]) -> Attempt:
    from queuectl.models_late import Attempt

    return Attempt(
        job_id=r["job_id"],
        attempt=r["attempt"],
        worker_id=r["worker_id"],
        started_at=r["started_at"],
        finished_at=r["finished_at"],
        outcome=Outcome(r["outcome"]) if r["outcome"] else None,
        exit_code=r["exit_code"],
        signal=r["signal"],
        error=r["error"],
        host=r["host"],
        pid=r["pid"],
        output_size=r["output_size"],
        output_truncated=r["output_size"] > (r["kept"] or 0),
    )


def running_from_row(r: Mapping[str, Any]) -> RunningJob:
    from queuectl.models_late import RunningJob

    return RunningJob(
        job_id=r["id"],
        command=r["command"],
        attempt=r["claims"],
        max_retries=r["max_retries"],
        worker_id=r["worker_id"],
        slot=r["slot"],
        started_at=r["started_at"],
        host=r["host"],
        pid=r["pid"],
        attempts=r["attempts"],
    )


def stored_job(
    job: NewJob, *, created_at: int, run_at: int | None, next_run_at: int, unmet: int = 0
) -> Job:
    """A just-enqueued job as its store now holds it, without reading it back."""
    return Job(
        id=job.id,
        command=job.command,
        state=JobState.PENDING,
        attempts=0,
        max_retries=job.max_retries,
        priority=job.priority,
        queue=job.queue,
        timeout_s=job.timeout_s,
        run_at=run_at,
        next_run_at=next_run_at,
        created_at=created_at,
        updated_at=created_at,
        last_error=None,
        exit_code=None,
        env=job.env,
        cwd=job.cwd,
        unique_key=job.unique_key,
        after=job.after,
        after_mode=job.after_mode,
        unmet=unmet,
    )


def schedule_from_row(row: Mapping[str, Any]) -> Schedule:
    from queuectl.models_late import Schedule

    return Schedule(
        name=row["name"],
        cron=row["cron"],
        tz=row["tz"],
        overlap=Overlap(row["overlap"]),
        paused=bool(row["paused"]),
        job=json.loads(row["job"]),
        next_fire_at=row["next_fire_at"],
        last_fire_at=row["last_fire_at"],
        last_job_id=row["last_job_id"],
        skipped=int(row["skipped"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def settings_from_rows(rows: Sequence[Mapping[str, Any]]) -> QueueSettings:
    """``queue_settings`` rows (``queue, paused, lim``) of either store."""
    from queuectl.models_late import QueueSetting, QueueSettings

    queues = {
        r["queue"]: QueueSetting(r["queue"], bool(r["paused"]), r["lim"])
        for r in rows
        if r["queue"] != ALL_QUEUES
    }
    held = any(r["queue"] == ALL_QUEUES and r["paused"] for r in rows)
    return QueueSettings(all_paused=held, queues=queues)
