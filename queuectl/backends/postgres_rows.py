"""Rows of the PostgreSQL store as models, and models as the column arrays its SQL takes.

Batches go to PostgreSQL as one array per column (``unnest``), so a statement has a
fixed text (planned once per connection) however many rows it carries.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from queuectl.backends.bookkeeping import (
    FINISH_FIELDS,
    START_FIELDS,
    finish_records,
    start_records,
)
from queuectl.backends.rows import stored_job
from queuectl.exceptions import BackendError, InvalidJob
from queuectl.models import Finish, Job, NewJob, ProcessStart
from queuectl.retry import RetryDecision


def columns(
    records: Sequence[Mapping[str, Any]], fields: Sequence[str], prefix: str
) -> dict[str, list[Any]]:
    """Records as one array per field, named ``prefix + field`` as the SQL's placeholders."""
    return {prefix + name: [r[name] for r in records] for name in fields}


def inserted(job: NewJob, server_now: int, now: int, unmet: int = 0) -> Job:
    """The job as ``insert_jobs`` stored it (the same rules, in Python)."""
    run_at, next_run_at = job.run_at, job.next_run_at
    if job.delay_ms is not None:
        run_at = next_run_at = server_now + job.delay_ms
    elif next_run_at <= now:
        next_run_at = server_now - (now - next_run_at)
    return stored_job(
        job, created_at=server_now, run_at=run_at, next_run_at=next_run_at, unmet=unmet
    )


def job_columns(
    jobs: Sequence[NewJob], now: int, clock: int | None, unmet: Sequence[int] | None = None
) -> dict[str, Any]:
    """``unmet``: how many dependencies each job waits for (none when not given)."""
    return {
        "clock": clock,
        "now": now,
        "ids": [j.id for j in jobs],
        "commands": [j.command for j in jobs],
        "queues": [j.queue for j in jobs],
        "priorities": [j.priority for j in jobs],
        "max_retries": [j.max_retries for j in jobs],
        "timeouts": [j.timeout_s for j in jobs],
        "envs": [json.dumps(j.env) if j.env else None for j in jobs],
        "cwds": [j.cwd for j in jobs],
        "run_ats": [j.run_at for j in jobs],
        "next_run_ats": [j.next_run_at for j in jobs],
        "delays": [j.delay_ms for j in jobs],
        "unique_keys": [j.unique_key for j in jobs],
        "after_ids": [json.dumps(list(j.after)) if j.after else None for j in jobs],
        "after_modes": [j.after_mode for j in jobs],
        "unmets": list(unmet) if unmet is not None else [0] * len(jobs),
    }


def unstorable(jobs: Sequence[NewJob], exc: Exception) -> InvalidJob | BackendError:
    """Text PostgreSQL cannot hold (a lone surrogate) names its job instead of failing late."""
    for position, job in enumerate(jobs, 1):
        texts = [job.id, job.command, job.queue, job.cwd or "", *job.env, *job.env.values()]
        for text in texts:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                return InvalidJob(f"job {position}: text that is not valid Unicode: {text!r}")
    return BackendError(f"cannot store the jobs: {exc}")


def finish_columns(
    finishes: Sequence[Finish], decisions: Sequence[RetryDecision]
) -> dict[str, list[Any]]:
    return columns(finish_records(finishes, decisions), FINISH_FIELDS, "f_")


#: What rides on a finish whose attempt started in an earlier batch: nothing.
_NO_START = dict.fromkeys(START_FIELDS)


def start_columns(
    starts: Sequence[ProcessStart], finishes: Sequence[Finish]
) -> dict[str, list[Any]]:
    """Starts as columns; a start whose attempt also finishes in this batch rides on the finish.

    Two CTEs of one statement must not update the same attempts row.
    """
    finishing = {(f.job_id, f.token) for f in finishes}
    records = {(r["id"], r["token"]): r for r in start_records(starts)}
    alone = [r for key, r in records.items() if key not in finishing]
    riding = [records.get((f.job_id, f.token), _NO_START) for f in finishes]
    # The finish's own id and token say which attempt a riding start belongs to.
    return {**columns(alone, START_FIELDS, "s_"), **columns(riding, START_FIELDS[2:], "f_")}
