"""SQLite rows to model objects; no I/O."""

from __future__ import annotations

import json
import sqlite3

from queuectl.models import Job, JobState, NewJob, StopMode, WorkerInfo


def job_from_row(row: sqlite3.Row) -> Job:
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
    )


def worker_from_row(row: sqlite3.Row) -> WorkerInfo:
    return WorkerInfo(
        id=row["id"],
        host=row["host"],
        pid=row["pid"],
        started_at=row["started_at"],
        heartbeat_at=row["heartbeat_at"],
        count=row["count"],
        jobs_done=row["jobs_done"],
        queues=tuple(json.loads(row["queues"])) if row["queues"] else (),
        proc_start=row["proc_start"],
        stop_requested=StopMode(row["stop_requested"]),
    )


def inserted_job(job: NewJob, now: int) -> Job:
    return Job(
        id=job.id,
        command=job.command,
        state=JobState.PENDING,
        attempts=0,
        max_retries=job.max_retries,
        priority=job.priority,
        queue=job.queue,
        timeout_s=job.timeout_s,
        run_at=job.run_at,
        next_run_at=job.next_run_at,
        created_at=now,
        updated_at=now,
        last_error=None,
        exit_code=None,
        env=job.env,
        cwd=job.cwd,
    )
