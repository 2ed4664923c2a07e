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
    Outcome,
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
    assert (ok["tally"], bad["tally"]) == ("completed", "failed")
    results = bookkeeping.finish_results(finishes, decisions, {"bad": "failed"}, now=50_000)
    assert [(r.held, r.next_run_at) for r in results] == [(False, None), (True, 52_000)]
    # A cancel request in force wrote "cancelled" instead: no retry time then.
    cancelled = bookkeeping.finish_results(finishes, decisions, {"bad": "cancelled"}, now=1)
    assert [(r.held, r.state, r.next_run_at) for r in cancelled][1] == (
        True,
        JobState.CANCELLED,
        None,
    )
    assert (ok["cancel_state"], bad["cancel_state"]) == ("completed", "cancelled")


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
            "cancel_state": "cancelled",
            "tally": "lost",
        },
        {
            "id": "b",
            "token": 2,
            "state": "dead",
            "delay_ms": None,
            "error": "worker lost: unknown stopped heartbeating",
            "cancel_state": "cancelled",
            "tally": "lost",
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
    asked = bookkeeping.heartbeat_answer(
        [("a", 1), ("b", 2)], {("a", 1)}, 0, cancel=[("a", 1), ("b", 2)]
    )
    # A lost attempt is killed as lost; only a held one is killed as cancelled.
    assert (asked.cancel, asked.lost) == (frozenset({("a", 1)}), frozenset({("b", 2)}))


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


@pytest.mark.parametrize(
    ("outcome", "state", "counted"),
    [
        (Outcome.COMPLETED, JobState.COMPLETED, "completed"),
        (Outcome.FAILED, JobState.FAILED, "failed"),
        (Outcome.FAILED, JobState.DEAD, "dead"),
        (Outcome.TIMED_OUT, JobState.DEAD, "dead"),
        (Outcome.SPAWN_FAILED, JobState.FAILED, "failed"),
        (Outcome.LOST, JobState.DEAD, "lost"),
        (Outcome.LOST, JobState.FAILED, "lost"),
        (Outcome.INTERRUPTED, JobState.PENDING, "interrupted"),
    ],
)
def test_each_attempts_end_counts_under_one_outcome(
    outcome: Outcome, state: JobState, counted: str
) -> None:
    assert bookkeeping.tally(outcome, state) == counted
    assert counted in bookkeeping.TALLIES


def test_a_duration_falls_in_the_smallest_bucket_that_holds_it() -> None:
    assert bookkeeping.BUCKETS_MS[0] == 10 and bookkeeping.DURATION_BOUNDS_MS[-1] == 3_600_000
    assert [bookkeeping.bucket_ms(ms) for ms in (0, 10, 11, 999, 1_000, 3_600_000)] == [
        10,
        10,
        25,
        1_000,
        1_000,
        3_600_000,
    ]
    assert bookkeeping.bucket_ms(3_600_001) == bookkeeping.OVER_MS


def test_tallies_sum_one_transactions_increments_per_row() -> None:
    tallies = bookkeeping.Tallies()
    assert not tallies
    ended = [
        ("a", "completed", 5, 60_001),
        ("a", "completed", 7, 119_999),
        ("b", "dead", -3, 120_000),
    ]
    for queue, tally, ms, now in ended:
        tallies.add(queue, tally, ms, outcome=tally.replace("dead", "failed"), now=now)
    assert sorted(tallies.count_rows(), key=str) == sorted(
        [{"queue": "a", "tally": "completed", "n": 2}, {"queue": "b", "tally": "dead", "n": 1}],
        key=str,
    )
    # A negative duration (clocks of two hosts) counts as 0.
    assert sorted(tallies.duration_rows(), key=str) == sorted(
        [
            {"queue": "a", "le_ms": 10, "n": 2, "sum_ms": 12},
            {"queue": "b", "le_ms": 10, "n": 1, "sum_ms": 0},
        ],
        key=str,
    )
    # The chart's minutes: the attempt's own outcome in the minute it ended.
    assert sorted(tallies.minute_rows(), key=str) == sorted(
        [
            {"minute": 60_000, "outcome": "completed", "n": 2},
            {"minute": 120_000, "outcome": "failed", "n": 1},
        ],
        key=str,
    )
    # The same cells as SQLite's one counter table takes them (kind, a, b, n, sum_ms).
    assert sorted(tallies.cells(), key=str) == sorted(
        [
            ("finished", "a", "completed", 2, 0),
            ("finished", "b", "dead", 1, 0),
            ("duration", "a", 10, 2, 12),
            ("duration", "b", 10, 1, 0),
            ("minute", 60_000, "completed", 2, 0),
            ("minute", 120_000, "failed", 1, 0),
        ],
        key=str,
    )
