"""The store rules both dialects share, without a database.

The contract suite checks what the stores make of these rules; this file checks
what only shows here: when the stored policy is read, what runs before what, and
the exact records the SQL of both dialects is given.
"""

from __future__ import annotations

import pytest

from queuectl.backends import bookkeeping
from queuectl.backends.postgres_rows import columns, start_columns
from queuectl.exceptions import InvalidTransition, JobNotFound
from queuectl.models import (
    ExecutionResult,
    Finish,
    JobState,
    LostAttempt,
    NewJob,
    ProcessStart,
    StopMode,
)
from queuectl.retry import RetryPolicy


def _finish(job_id: str, result: ExecutionResult, attempts: int = 1) -> Finish:
    return Finish(job_id, token=attempts, attempts=attempts, max_retries=2, result=result)


def _lost(job_id: str, attempts: int, worker: str | None = "w1") -> LostAttempt:
    return LostAttempt(
        job_id=job_id,
        token=attempts,
        attempts=attempts,
        max_retries=1,
        worker_id=worker,
        host=None,
        pgid=None,
        proc_start=None,
    )


def test_successes_and_forced_stops_never_read_the_stored_policy() -> None:
    def unread() -> RetryPolicy:
        raise AssertionError("the config was read")

    finishes = [
        _finish("a", ExecutionResult(exit_code=0)),
        _finish("b", ExecutionResult(interrupted=True)),
    ]
    decisions = bookkeeping.decide_finishes(finishes, unread)
    assert [(d.state, d.delay_ms, d.refund) for d in decisions] == [
        (JobState.COMPLETED, None, False),
        (JobState.PENDING, 0, True),
    ]


def test_a_failure_reads_the_policy_once_for_the_whole_batch() -> None:
    reads: list[int] = []

    def load() -> RetryPolicy:
        reads.append(1)
        return RetryPolicy(backoff_base=3, backoff_max_s=3600)

    finishes = [_finish(j, ExecutionResult(exit_code=1), attempts=2) for j in "xyz"]
    decisions = bookkeeping.decide_finishes(finishes, load)
    assert len(reads) == 1
    assert {(d.state, d.delay_ms) for d in decisions} == {(JobState.FAILED, 9_000)}


def test_finish_records_carry_the_delay_and_results_the_time_on_the_callers_clock() -> None:
    finishes = [
        _finish("ok", ExecutionResult(exit_code=0, output_tail=b"hi", output_size=2)),
        _finish("bad", ExecutionResult(exit_code=3)),
    ]
    decisions = bookkeeping.decide_finishes(finishes, RetryPolicy)
    ok, bad = bookkeeping.finish_records(finishes, decisions)
    assert set(ok) == set(bookkeeping.FINISH_FIELDS)
    assert (ok["state"], ok["delay_ms"], ok["error"], ok["output"]) == (
        "completed",
        None,
        None,
        b"hi",
    )
    assert (bad["outcome"], bad["state"], bad["delay_ms"], bad["error"]) == (
        "failed",
        "failed",
        2_000,
        "exit code 3",
    )
    results = bookkeeping.finish_results(finishes, decisions, {"bad"}, now=50_000)
    assert [(r.held, r.next_run_at) for r in results] == [(False, None), (True, 52_000)]


def test_a_lost_attempt_runs_on_lost_first_and_says_which_worker_stopped() -> None:
    seen: list[str] = []
    lost = [_lost("a", attempts=1), _lost("b", attempts=2, worker=None)]
    records = bookkeeping.recovery_records(
        lost, RetryPolicy(backoff_base=2), lambda item: seen.append(item.job_id)
    )
    assert seen == ["a", "b"]
    assert records == [
        {
            "id": "a",
            "token": 1,
            "state": "failed",
            "delay_ms": 2_000,
            "error": "worker lost: w1 stopped heartbeating",
        },
        {
            "id": "b",
            "token": 2,
            "state": "dead",
            "delay_ms": None,
            "error": "worker lost: unknown stopped heartbeating",
        },
    ]


def test_postgres_columns_are_the_same_records_one_array_per_field() -> None:
    lost = [_lost("a", attempts=1), _lost("b", attempts=2)]
    records = bookkeeping.recovery_records(lost, RetryPolicy(), None)
    cols = columns(records, bookkeeping.RECOVERY_FIELDS, "r_")
    assert cols["r_id"] == ["a", "b"]
    assert cols["r_state"] == ["failed", "dead"]
    assert columns([], bookkeeping.RECOVERY_FIELDS, "r_")["r_error"] == []


def test_a_start_finishing_in_the_same_batch_rides_on_its_finish() -> None:
    early = ProcessStart("a", 1, "h", 10, 10, None, slot=0)
    late = ProcessStart("b", 1, "h", 11, 11, None, slot=1)
    cols = start_columns([early, late], [_finish("b", ExecutionResult(exit_code=0))])
    assert (cols["s_id"], cols["s_pid"]) == (["a"], [10])
    assert (cols["f_pid"], cols["f_slot"]) == ([11], [1])
    alone = start_columns([], [_finish("c", ExecutionResult(exit_code=0))])
    assert alone["f_host"] == [None]


def test_heartbeat_names_the_lost_attempts_and_a_removed_worker_row() -> None:
    answer = bookkeeping.heartbeat_answer([("a", 1), ("b", 2)], {("a", 1)}, int(StopMode.NOW))
    assert (answer.lost, answer.stop, answer.registered) == (
        frozenset({("b", 2)}),
        StopMode.NOW,
        True,
    )
    gone = bookkeeping.heartbeat_answer([], set(), None)
    assert (gone.stop, gone.registered) == (StopMode.NONE, False)


def test_a_duplicate_is_named_by_its_first_position() -> None:
    jobs = [NewJob(id=i, command="true", max_retries=0) for i in ("new", "old", "older")]
    error = bookkeeping.duplicate_job(jobs, {"old", "older"}.__contains__)
    assert (error.job_id, error.position) == ("old", 2)
    assert str(error) == "job 2: a job with id 'old' already exists"


def test_requeue_errors_say_missing_or_not_dead() -> None:
    missing = bookkeeping.not_requeued("x", None)
    assert isinstance(missing, JobNotFound)
    assert str(missing) == "no job with id 'x'"
    busy = bookkeeping.not_requeued("y", "processing")
    assert isinstance(busy, InvalidTransition)
    assert str(busy) == "job 'y' is processing, not dead; only dead jobs can be retried"


@pytest.mark.parametrize(
    ("state", "queue", "name"),
    [
        (None, None, "list_all"),
        (JobState.DEAD, None, "list_by_state"),
        (None, "q", "list_by_queue"),
        (JobState.DEAD, "q", "list_by_state_queue"),
    ],
)
def test_each_list_filter_has_its_own_query(
    state: JobState | None, queue: str | None, name: str
) -> None:
    assert bookkeeping.list_query(state, queue, 0) == (
        name,
        {"state": state.value if state else None, "queue": queue, "limit": None},
    )


def test_completion_reads_a_key_range_and_bounds_a_state_filter() -> None:
    assert bookkeeping.prefix_query("ab", None, 5) == (
        "ids_by_prefix",
        {"lo": "ab", "hi": "ab\U0010ffff", "limit": 5},
    )
    name, values = bookkeeping.prefix_query("ab", JobState.DEAD, 5)
    assert name == "ids_by_prefix_state"
    assert (values["state"], values["scan"]) == ("dead", bookkeeping.COMPLETION_SCAN)


def test_counts_name_every_state() -> None:
    counts = bookkeeping.counts_by_state(
        [{"state": "dead", "n": 2}, {"state": "failed", "n": None}]
    )
    assert counts == {s: (2 if s is JobState.DEAD else 0) for s in JobState}
