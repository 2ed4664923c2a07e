"""Rows of the PostgreSQL store as models, and models as the column arrays its SQL takes.

Batches go to PostgreSQL as one array per column (``unnest``), so a statement has a
fixed text (planned once per connection) however many rows it carries.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from queuectl.backends.rows import stored_job
from queuectl.config import from_stored
from queuectl.exceptions import BackendError, InvalidJob
from queuectl.models import (
    Finish,
    Job,
    NewJob,
    ProcessStart,
)
from queuectl.retry import RetryDecision, RetryPolicy, decide


def policy_from(config_json: str | None) -> RetryPolicy:
    config = from_stored(json.loads(config_json) if config_json else {})
    return RetryPolicy(backoff_base=config.backoff_base, backoff_max_s=config.backoff_max)


def inserted(job: NewJob, server_now: int, now: int) -> Job:
    """The job as ``insert_jobs`` stored it (the same rules, in Python)."""
    run_at, next_run_at = job.run_at, job.next_run_at
    if job.delay_ms is not None:
        run_at = next_run_at = server_now + job.delay_ms
    elif next_run_at <= now:
        next_run_at = server_now - (now - next_run_at)
    return stored_job(job, created_at=server_now, run_at=run_at, next_run_at=next_run_at)


def job_columns(jobs: Sequence[NewJob], now: int, clock: int | None) -> dict[str, Any]:
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


def decide_finish(finish: Finish, policy: RetryPolicy) -> tuple[RetryDecision, bool]:
    """The next state and whether the attempt is refunded, with ``next_run_at`` as a delay.

    Deciding at ``now = 0`` turns ``next_run_at`` into a delay in ms, which the
    statement adds to the server's clock.
    """
    r = finish.result
    return decide(
        ok=r.ok,
        interrupted=r.interrupted,
        attempts=finish.attempts,
        max_retries=finish.max_retries,
        policy=policy,
        now=0,
    )


def after(now: int, delay_ms: int | None) -> int | None:
    return None if delay_ms is None else now + delay_ms


def finish_columns(
    finishes: Sequence[Finish], decisions: Sequence[tuple[RetryDecision, bool]]
) -> dict[str, list[Any]]:
    results = [f.result for f in finishes]
    return {
        "f_ids": [f.job_id for f in finishes],
        "f_tokens": [f.token for f in finishes],
        "f_outcomes": [r.outcome.value for r in results],
        "f_exit_codes": [r.exit_code for r in results],
        "f_signals": [r.signal for r in results],
        "f_errors": [r.describe() for r in results],
        "f_outputs": [r.output_tail for r in results],
        "f_output_sizes": [r.output_size for r in results],
        "f_states": [d.state.value for d, _ in decisions],
        "f_delays": [d.next_run_at for d, _ in decisions],
        "f_refunds": [1 if refund else 0 for _, refund in decisions],
    }


def start_columns(
    starts: Sequence[ProcessStart], finishes: Sequence[Finish]
) -> dict[str, list[Any]]:
    """Starts as columns; a start whose attempt also finishes in this batch rides on the finish.

    Two CTEs of one statement must not update the same attempts row.
    """
    finishing = {(f.job_id, f.token) for f in finishes}
    alone = [s for s in starts if (s.job_id, s.token) not in finishing]
    by_finish = {(s.job_id, s.token): s for s in starts if (s.job_id, s.token) in finishing}
    riding = [by_finish.get((f.job_id, f.token)) for f in finishes]
    return {
        "s_ids": [s.job_id for s in alone],
        "s_tokens": [s.token for s in alone],
        "s_hosts": [s.host for s in alone],
        "s_pids": [s.pid for s in alone],
        "s_pgids": [s.pgid for s in alone],
        "s_proc_starts": [s.proc_start for s in alone],
        "s_log_paths": [s.log_path for s in alone],
        "s_slots": [s.slot for s in alone],
        "f_hosts": [s.host if s else None for s in riding],
        "f_pids": [s.pid if s else None for s in riding],
        "f_pgids": [s.pgid if s else None for s in riding],
        "f_proc_starts": [s.proc_start if s else None for s in riding],
        "f_log_paths": [s.log_path if s else None for s in riding],
        "f_slots": [s.slot if s else None for s in riding],
    }
