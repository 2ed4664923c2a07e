"""The retry policy: a pure function from one attempt's outcome to the job's next state.

Reference §5.4: after a failed attempt the job is ``failed`` and runs again
``min(backoff_base ** attempts, backoff_max)`` seconds later while
``attempts <= max_retries``; past that it is ``dead``.

A decision carries a *delay*, never a time: the SQLite store adds it to the
caller's clock, the PostgreSQL store to the server's, and ``next_run_at`` says
which clock it is added to at the one place a time is needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from queuectl.models import JobState


@dataclass(frozen=True, slots=True)
class RetryDecision:
    state: JobState
    #: Milliseconds until the job may run again; ``None`` when it will not (completed, dead).
    delay_ms: int | None
    #: The attempt does not count against ``max_retries`` (a forced stop cut it short).
    refund: bool = False

    def next_run_at(self, now: int) -> int | None:
        """When the job may run again on the clock that ``now`` is read from."""
        return None if self.delay_ms is None else now + self.delay_ms


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    backoff_base: float = 2.0
    backoff_max_s: float = 3600.0

    def delay_s(self, attempts: int) -> float:
        """``min(backoff_base ** attempts, backoff_max)`` without float overflow."""
        if self.backoff_base <= 1:
            return min(1.0, self.backoff_max_s)
        # Compare in log space: 2 ** 5000 overflows a float long before it matters.
        if attempts * math.log(self.backoff_base) >= math.log(max(self.backoff_max_s, 1e-9)):
            return self.backoff_max_s
        return float(self.backoff_base**attempts)

    def after_failure(self, *, attempts: int, max_retries: int) -> RetryDecision:
        """Decide what follows a failed attempt; ``attempts`` already counts it."""
        if attempts > max_retries:
            return RetryDecision(JobState.DEAD, None)
        return RetryDecision(JobState.FAILED, round(self.delay_s(attempts) * 1000))


def decide(
    *,
    ok: bool,
    interrupted: bool,
    attempts: int,
    max_retries: int,
    policy: RetryPolicy,
    cancelled: bool = False,
) -> RetryDecision:
    """The next state after an attempt, and whether the attempt is refunded.

    An attempt cut short by a forced stop goes back to ``pending`` at once and does
    not count against ``max_retries`` (reference §5.7); one killed by ``cancel`` ends the
    job ``cancelled``; success completes the job; any other end follows
    ``after_failure``.
    """
    if ok:
        return RetryDecision(JobState.COMPLETED, None)
    if cancelled:
        return RetryDecision(JobState.CANCELLED, None)
    if interrupted:
        return RetryDecision(JobState.PENDING, 0, refund=True)
    return policy.after_failure(attempts=attempts, max_retries=max_retries)


def if_cancel_requested(state: JobState) -> JobState:
    """The state an attempt's end gives its job while a cancel request is in force.

    The request stays on the job's row until the attempt is over, whoever ends it
    (its worker, a forced stop, a recovery after the worker was lost): anything but
    success then ends the job ``cancelled``, never retried. A command that exited 0
    before the kill reached it has done its work: the job is ``completed``.

    Both stores apply this in the statement that ends the attempt (the request is
    read there, under the same lock), with the state computed here.
    """
    return JobState.COMPLETED if state is JobState.COMPLETED else JobState.CANCELLED
