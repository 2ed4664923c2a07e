"""The rules of cancel, retry, rm, update and purge (``backends.operations``), pure."""

from __future__ import annotations

import pytest

from queuectl.backends import operations
from queuectl.exceptions import BackendError, InvalidTransition, JobNotFound
from queuectl.models import JobState

S = JobState
STATES = {
    "p": S.PENDING,
    "r": S.PROCESSING,
    "c": S.COMPLETED,
    "f": S.FAILED,
    "d": S.DEAD,
    "x": S.CANCELLED,
}


def test_cancel_sorts_the_named_jobs_by_what_happens_to_them() -> None:
    plan = operations.plan_cancel(["r", "p", "x", "f", "p"], STATES)
    assert (plan.cancelled, plan.requested, plan.already) == (["p", "f"], ["r"], ["x"])


@pytest.mark.parametrize(("bad", "error"), [("c", InvalidTransition), ("d", InvalidTransition),
                                            ("nope", JobNotFound)])  # fmt: skip
def test_one_refused_job_refuses_the_list(bad: str, error: type[Exception]) -> None:
    with pytest.raises(error, match=f"'{bad}'.*nothing was changed"):
        operations.plan_cancel(["p", bad], STATES)


def test_retry_resets_dead_and_cancelled_and_keeps_failed_attempts() -> None:
    plan = operations.plan_retry(["d", "f", "x"], STATES)
    assert (plan.reset, plan.keep, plan.ids) == (["d", "x"], ["f"], ["d", "x", "f"])
    for refused in ("p", "r", "c"):
        with pytest.raises(InvalidTransition, match=f"'{refused}' is"):
            operations.plan_retry(["d", refused], STATES)


def test_rm_refuses_a_running_job_and_update_a_finished_one() -> None:
    assert operations.plan_remove(["c", "d", "c"], STATES) == ["c", "d"]
    with pytest.raises(InvalidTransition, match="cancel it first"):
        operations.plan_remove(["c", "r"], STATES)
    operations.check_update("p", S.PENDING)
    with pytest.raises(InvalidTransition, match="only pending and failed"):
        operations.check_update("x", S.CANCELLED)


def test_purge_takes_finished_states_only() -> None:
    assert operations.check_purge_states(()) == (S.COMPLETED, S.CANCELLED)
    assert operations.check_purge_states([S.DEAD, S.DEAD]) == (S.DEAD,)
    with pytest.raises(InvalidTransition, match="not pending"):
        operations.check_purge_states([S.PENDING])


async def test_postgres_runs_an_operation_again_after_a_deadlock() -> None:
    asyncpg = pytest.importorskip("asyncpg")
    from queuectl.backends.postgres_ops import _again_on_deadlock

    calls = []

    async def op() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise BackendError("deadlock") from asyncpg.DeadlockDetectedError("deadlock")
        return "done"

    assert await _again_on_deadlock(op) == "done"

    async def other() -> str:
        raise BackendError("gone") from OSError("gone")

    with pytest.raises(BackendError, match="gone"):
        await _again_on_deadlock(other)
