from __future__ import annotations

import pytest

from queuectl.models import JobState
from queuectl.retry import RetryPolicy, decide


def test_seed_policy_retries_once_after_three_seconds_then_dies() -> None:
    policy = RetryPolicy(backoff_base=3, backoff_max_s=3600)
    first = policy.after_failure(attempts=1, max_retries=1)
    assert first.state is JobState.FAILED
    assert (first.delay_ms, first.next_run_at(10_000)) == (3_000, 13_000)
    second = policy.after_failure(attempts=2, max_retries=1)
    assert second.state is JobState.DEAD
    assert (second.delay_ms, second.next_run_at(20_000)) == (None, None)


@pytest.mark.parametrize(("attempts", "expected"), [(1, 2.0), (2, 4.0), (5, 32.0), (12, 3600.0)])
def test_delay_is_capped_by_backoff_max(attempts: int, expected: float) -> None:
    assert RetryPolicy(backoff_base=2, backoff_max_s=3600).delay_s(attempts) == expected


def test_huge_attempt_counts_do_not_overflow() -> None:
    assert RetryPolicy(backoff_base=10, backoff_max_s=60).delay_s(100_000) == 60


def test_interrupted_attempt_is_refunded_and_pending_now() -> None:
    decision = decide(ok=False, interrupted=True, attempts=1, max_retries=0, policy=RetryPolicy())
    assert (decision.state, decision.next_run_at(5), decision.refund) == (JobState.PENDING, 5, True)


def test_defaults_are_base_two_capped_at_an_hour() -> None:
    policy = RetryPolicy()
    assert (policy.backoff_base, policy.backoff_max_s) == (2, 3600)
    assert [policy.delay_s(n) for n in (1, 2, 3)] == [2.0, 4.0, 8.0]


@pytest.mark.parametrize("max_retries", [0, 1, 3, 7])
def test_a_job_runs_max_retries_plus_one_times(max_retries: int) -> None:
    """Reference §5.4: failed while attempts <= max_retries, dead once attempts > max_retries."""
    policy = RetryPolicy(backoff_base=2, backoff_max_s=3600)
    states = [
        policy.after_failure(attempts=n, max_retries=max_retries).state
        for n in range(1, max_retries + 2)
    ]
    assert states == [JobState.FAILED] * max_retries + [JobState.DEAD]


def test_next_run_at_is_now_plus_the_delay_in_milliseconds() -> None:
    policy = RetryPolicy(backoff_base=2, backoff_max_s=3600)
    decision = policy.after_failure(attempts=3, max_retries=5)
    assert decision.delay_ms == 8_000
    assert decision.next_run_at(1_000_000) == 1_000_000 + 8_000


def test_fractional_base_keeps_millisecond_precision() -> None:
    policy = RetryPolicy(backoff_base=1.5, backoff_max_s=3600)
    assert policy.delay_s(2) == 2.25
    assert policy.after_failure(attempts=2, max_retries=3).delay_ms == 2_250


def test_base_one_retries_every_second() -> None:
    policy = RetryPolicy(backoff_base=1, backoff_max_s=3600)
    assert [policy.delay_s(n) for n in (1, 5, 50)] == [1.0, 1.0, 1.0]


def test_base_one_still_honours_a_smaller_cap() -> None:
    assert RetryPolicy(backoff_base=1, backoff_max_s=0.5).delay_s(3) == 0.5


def test_zero_cap_retries_at_once() -> None:
    policy = RetryPolicy(backoff_base=2, backoff_max_s=0)
    decision = policy.after_failure(attempts=1, max_retries=1)
    assert (decision.state, decision.next_run_at(42)) == (JobState.FAILED, 42)


def test_cap_applies_exactly_at_the_boundary() -> None:
    policy = RetryPolicy(backoff_base=2, backoff_max_s=8)
    assert policy.delay_s(3) == 8
    assert policy.delay_s(4) == 8
    assert policy.delay_s(2) == 4


def test_success_completes_without_refund() -> None:
    decision = decide(ok=True, interrupted=False, attempts=1, max_retries=0, policy=RetryPolicy())
    assert (decision.state, decision.next_run_at(5), decision.refund) == (
        JobState.COMPLETED,
        None,
        False,
    )


def test_success_on_the_last_allowed_attempt_completes() -> None:
    decision = decide(ok=True, interrupted=False, attempts=4, max_retries=3, policy=RetryPolicy())
    assert decision.state is JobState.COMPLETED


def test_failure_follows_the_policy_and_its_time_is_the_given_clock_plus_the_delay() -> None:
    policy = RetryPolicy(backoff_base=3, backoff_max_s=3600)
    decision = decide(ok=False, interrupted=False, attempts=2, max_retries=2, policy=policy)
    assert (decision.state, decision.next_run_at(7_000), decision.refund) == (
        JobState.FAILED,
        16_000,
        False,
    )
    dead = decide(ok=False, interrupted=False, attempts=3, max_retries=2, policy=policy)
    assert (dead.state, dead.next_run_at(7_000), dead.refund) == (JobState.DEAD, None, False)


def test_interrupted_attempt_is_not_dead_even_past_max_retries() -> None:
    decision = decide(ok=False, interrupted=True, attempts=9, max_retries=0, policy=RetryPolicy())
    assert decision.state is JobState.PENDING
    assert decision.refund
