"""Reference §19.1 store rules (dependencies between jobs), one suite on both stores.

A job with unmet dependencies is pending but never claimed; the transaction that
ends a dependency (a finished attempt, a recovery, a cancel) releases or cancels
its dependents, down the chain; ``retry`` brings the cancelled ones back; ``rm``,
``purge`` and retention keep what unfinished jobs depend on.
"""

from __future__ import annotations

from typing import Any

import pytest

from queuectl.exceptions import InvalidJob, InvalidTransition
from queuectl.models import JobState
from tests.conftest import FrozenClock
from tests.integration.test_backend_contract import FAIL, OK, claim, finish, job, state
from tests.integration.test_operations_contract import counts_match_rows

P, C, D, X = JobState.PENDING, JobState.COMPLETED, JobState.DEAD, JobState.CANCELLED


async def states(backend: Any, *ids: str) -> list[JobState]:
    return [await state(backend, i) for i in ids]


async def chain(backend: Any, clock: FrozenClock, **deploy: Any) -> None:
    """build → test → deploy, enqueued in one call."""
    now = clock()
    await backend.enqueue(
        [
            job("build", now, max_retries=0),
            job("test", now, after=("build",), max_retries=0),
            job("deploy", now, after=("test",), **deploy),
        ],
        now=now,
    )


async def run_next(backend: Any, clock: FrozenClock, result: Any = OK) -> str:
    """Claim the one runnable job and finish it with ``result``; its id."""
    [c] = await claim(backend, clock.advance(1), n=5)
    await finish(backend, c, result, clock.advance(1))
    return c.job.id


class TestWaiting:
    async def test_a_chain_runs_in_order_and_waiting_jobs_are_never_claimed(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        await chain(backend, clock)
        deploy = await backend.get_job("deploy")
        assert (deploy.after, deploy.after_mode, deploy.unmet) == (("test",), "completed", 1)
        assert [await run_next(backend, clock) for _ in range(3)] == ["build", "test", "deploy"]
        assert await claim(backend, clock.advance(1), n=5) == []
        assert await states(backend, "build", "test", "deploy") == [C, C, C]
        await counts_match_rows(backend)

    async def test_a_job_waits_for_every_dependency(self, backend: Any, clock: FrozenClock) -> None:
        now = clock()
        await backend.enqueue([job("a", now), job("b", now)], now=now)
        await backend.enqueue([job("j", now, after=("a", "b"))], now=now)
        [ca, cb] = await claim(backend, clock.advance(1), n=5)
        await finish(backend, ca, OK, clock.advance(1))
        assert (await backend.get_job("j")).unmet == 1
        assert await claim(backend, clock.advance(1), n=5) == []
        await finish(backend, cb, OK, clock.advance(1))
        [cj] = await claim(backend, clock.advance(1), n=5)
        assert cj.job.id == "j"

    async def test_a_completed_dependency_is_met_at_enqueue(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        now = clock()
        await backend.enqueue([job("a", now)], now=now)
        await run_next(backend, clock)
        [j] = await backend.enqueue([job("j", clock(), after=("a",))], now=clock())
        assert j.unmet == 0
        assert (await backend.get_job("j")).unmet == 0
        assert await run_next(backend, clock) == "j"

    async def test_a_retried_dependency_holds_its_dependents_until_it_completes(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        now = clock()
        await backend.enqueue([job("a", now, max_retries=1), job("j", now, after=("a",))], now=now)
        assert await run_next(backend, clock, FAIL) == "a"
        assert await state(backend, "a") is JobState.FAILED
        # The retry is due after its backoff; j still waits.
        [ca] = await claim(backend, clock.advance(3600), n=5)
        assert ca.job.id == "a"
        await finish(backend, ca, OK, clock.advance(1))
        assert await run_next(backend, clock) == "j"


class TestBadDependencies:
    async def test_an_unknown_dependency_is_an_error_and_nothing_is_enqueued(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        now = clock()
        with pytest.raises(InvalidJob, match=r"job 2: after names 'nope', which is not a job"):
            await backend.enqueue([job("a", now), job("b", now, after=("nope",))], now=now)
        assert await backend.get_job("a") is None
        await counts_match_rows(backend)

    async def test_a_dead_dependency_is_an_error_unless_after_mode_finished(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        now = clock()
        await backend.enqueue([job("a", now, max_retries=0)], now=now)
        await run_next(backend, clock, FAIL)
        with pytest.raises(InvalidJob, match=r"'a', which is dead"):
            await backend.enqueue([job("j", clock(), after=("a",))], now=clock())
        assert await backend.get_job("j") is None
        [j] = await backend.enqueue(
            [job("j", clock(), after=("a",), after_mode="finished")], now=clock()
        )
        assert j.unmet == 0
        assert await run_next(backend, clock) == "j"


class TestCascade:
    async def test_a_dead_dependency_cancels_the_chain_in_the_same_transaction(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        await chain(backend, clock)
        assert await run_next(backend, clock, FAIL) == "build"
        assert await states(backend, "build", "test", "deploy") == [D, X, X]
        test = await backend.get_job("test")
        deploy = await backend.get_job("deploy")
        assert test.cancelled_by == "build" and "build" in (test.last_error or "")
        assert deploy.cancelled_by == "test" and "test" in (deploy.last_error or "")
        assert (await backend.counts())[X] == 2
        await counts_match_rows(backend)

    async def test_after_mode_finished_runs_after_a_dead_dependency(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        await chain(backend, clock, after_mode="finished")
        await run_next(backend, clock, FAIL)
        # test is cancelled by build; deploy waits for any end of test, so it runs.
        assert await states(backend, "test", "deploy") == [X, P]
        assert await run_next(backend, clock) == "deploy"

    async def test_cancelling_a_waiting_dependency_cancels_its_dependents(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        await chain(backend, clock)
        await backend.cancel(["test"], now=clock.advance(1))
        assert await states(backend, "build", "test", "deploy") == [P, X, X]
        assert (await backend.get_job("deploy")).cancelled_by == "test"
        await counts_match_rows(backend)

    async def test_a_recovered_attempt_that_ends_dead_cancels_the_dependents(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        """A worker killed (kill -9) after its job's last attempt started: the release
        cannot be lost between the finish and it, because the recovery that ends
        the job settles the dependents in its own transaction."""
        await chain(backend, clock)
        [c] = await claim(backend, clock.advance(1), lease_ms=1000)
        assert c.job.id == "build"
        lost = await backend.recover(now=clock.advance(60))
        assert [x.job_id for x in lost] == ["build"]
        assert await states(backend, "build", "test", "deploy") == [D, X, X]
        await counts_match_rows(backend)

    async def test_a_recovered_attempt_that_is_retried_keeps_its_dependents_waiting(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        now = clock()
        await backend.enqueue([job("a", now, max_retries=2), job("j", now, after=("a",))], now=now)
        await claim(backend, clock.advance(1), lease_ms=1000)
        await backend.recover(now=clock.advance(60))
        assert await states(backend, "a", "j") == [JobState.FAILED, P]
        [ca] = await claim(backend, clock.advance(3600), n=5)
        await finish(backend, ca, OK, clock.advance(1))
        assert await run_next(backend, clock) == "j"


class TestRetry:
    async def test_retry_of_the_dependency_brings_the_chain_back(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        await chain(backend, clock)
        await run_next(backend, clock, FAIL)
        await backend.retry_jobs(["build"], now=clock.advance(1))
        assert await states(backend, "build", "test", "deploy") == [P, P, P]
        test = await backend.get_job("test")
        assert (test.unmet, test.cancelled_by) == (1, None)
        assert [await run_next(backend, clock) for _ in range(3)] == ["build", "test", "deploy"]
        await counts_match_rows(backend)

    async def test_retry_of_a_job_cancelled_by_a_dead_dependency_is_an_error(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        await chain(backend, clock)
        await run_next(backend, clock, FAIL)
        with pytest.raises(InvalidTransition, match=r"'test' waits on 'build', which is dead"):
            await backend.retry_jobs(["test"], now=clock.advance(1))
        assert await states(backend, "build", "test", "deploy") == [D, X, X]
        # Named together with its dependency, it is brought back.
        await backend.retry_jobs(["test", "build"], now=clock.advance(1))
        assert await states(backend, "build", "test", "deploy") == [P, P, P]

    async def test_retry_by_state_skips_jobs_held_by_a_dead_dependency(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        await chain(backend, clock)
        await run_next(backend, clock, FAIL)
        assert await backend.retry_state(X, queue=None, now=clock.advance(1)) == []
        assert await states(backend, "test", "deploy") == [X, X]
        assert await backend.retry_state(D, queue=None, now=clock.advance(1)) == ["build"]
        assert await states(backend, "build", "test", "deploy") == [P, P, P]


class TestKeep:
    async def test_rm_of_a_job_an_unfinished_job_depends_on_is_an_error(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        await chain(backend, clock)
        with pytest.raises(InvalidTransition, match=r"'build' is a dependency of 'test'"):
            await backend.remove_jobs(["build"])
        assert await backend.get_job("build") is not None
        # With its dependents, it goes.
        assert await backend.remove_jobs(["build", "test", "deploy"]) == [
            "build",
            "test",
            "deploy",
        ]

    async def test_purge_keeps_what_an_unfinished_job_depends_on(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        now = clock()
        await backend.enqueue([job("a", now), job("b", now)], now=now)
        await backend.enqueue([job("j", now, after=("a", "b"))], now=now)
        [ca, _] = await claim(backend, clock.advance(1), n=2)
        await finish(backend, ca, OK, clock.advance(1))
        before = clock.advance(3600)
        assert await backend.purge([C], before=before, dry_run=True) == 0
        assert await backend.purge([C], before=before) == 0
        assert await backend.get_job("a") is not None
