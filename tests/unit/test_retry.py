from __future__ import annotations

import pytest

from queuectl.models import JobState
from queuectl.retry import RetryPolicy, decide


def test_seed_policy_retries_once_after_three_seconds_then_dies() -> None:
    policy = RetryPolicy(backoff_base=3, backoff_max_s=3600)
    first = policy.after_failure(attempts=1, max_retries=1, now=10_000)
    assert first.state is JobState.FAILED
    assert first.next_run_at == 13_000
    second = policy.after_failure(attempts=2, max_retries=1, now=20_000)
    assert second.state is JobState.DEAD
    assert second.next_run_at is None


@pytest.mark.parametrize(("attempts", "expected"), [(1, 2.0), (2, 4.0), (5, 32.0), (12, 3600.0)])
def test_delay_is_capped_by_backoff_max(attempts: int, expected: float) -> None:
    assert RetryPolicy(backoff_base=2, backoff_max_s=3600).delay_s(attempts) == expected


def test_huge_attempt_counts_do_not_overflow() -> None:
    assert RetryPolicy(backoff_base=10, backoff_max_s=60).delay_s(100_000) == 60


def test_interrupted_attempt_is_refunded_and_pending_now() -> None:
    decision, refund = decide(
        ok=False, interrupted=True, attempts=1, max_retries=0, policy=RetryPolicy(), now=5
    )
    assert (decision.state, decision.next_run_at, refund) == (JobState.PENDING, 5, True)
