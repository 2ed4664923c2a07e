"""Reference §16 store rules (cancel, retry, rm, purge, update), one suite on both stores.

Each test runs on SQLite and on PostgreSQL (the ``backend`` fixture) with the
store's clock pinned by ``FrozenClock``. The races between these operations and
the workers' own transitions live in ``test_backend_contract.py``.
"""

from __future__ import annotations

from typing import Any

import pytest

from queuectl.exceptions import InvalidTransition, JobNotFound
from queuectl.models import ExecutionResult, JobChanges, JobState, Outcome
from tests.conftest import FrozenClock
from tests.helpers import db_counts
from tests.integration.test_backend_contract import FAIL, OK, claim, finish, job, state

CANCELLED_RUN = ExecutionResult(signal=15, cancelled=True)


async def states(backend: Any, *ids: str) -> list[JobState]:
    return [await state(backend, i) for i in ids]


async def counts_match_rows(backend: Any) -> None:
    """The kept counts agree with a real count of the rows."""
    kept = {s.value: n for s, n in (await backend.counts()).items()}
    target = backend.url if hasattr(backend, "url") else backend.target
    assert kept == db_counts(target)


async def three_waiting_and_one_running(backend: Any, clock: FrozenClock) -> Any:
    """``p`` pending, ``f`` failed, ``r`` running (its claim is returned), ``d`` dead,
    ``c`` completed."""
    now = clock()
    await backend.enqueue([job("f", now), job("d", now, max_retries=0), job("c", now)], now=now)
    [cf, cd, cc] = await claim(backend, now, n=3)
    await finish(backend, cf, FAIL, now)
    await finish(backend, cd, FAIL, now)
    await finish(backend, cc, OK, now)
    await backend.enqueue([job("r", now)], now=now)
    [cr] = await claim(backend, now)
    await backend.enqueue([job("p", now)], now=now)
    assert await states(backend, "p", "f", "r", "d", "c") == [
        JobState.PENDING,
        JobState.FAILED,
        JobState.PROCESSING,
        JobState.DEAD,
        JobState.COMPLETED,
    ]
    return cr


class TestCancel:
    async def test_waiting_jobs_are_cancelled_at_once_and_never_claimed(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        await three_waiting_and_one_running(backend, clock)
        result = await backend.cancel(["p", "f"], now=clock.advance(1))
        assert (result.cancelled, result.requested, result.already) == (["p", "f"], [], [])
        assert await states(backend, "p", "f") == [JobState.CANCELLED] * 2
        f = await backend.get_job("f")
        assert (f.next_run_at, f.updated_at, f.attempts) == (None, clock(), 1)
        assert await claim(backend, clock.advance(3600), n=5) == []
        assert (await backend.counts())[JobState.CANCELLED] == 2
        await counts_match_rows(backend)

    async def test_a_running_job_gets_a_request_its_worker_reads_and_obeys(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        cr = await three_waiting_and_one_running(backend, clock)
        result = await backend.cancel(["r"], now=clock.advance(1))
        assert (result.cancelled, result.requested) == ([], ["r"])
        r = await backend.get_job("r")
        assert (r.state, r.cancel_requested_at) == (JobState.PROCESSING, clock())
        beat = await backend.heartbeat(
            worker_id="w1", running=[("r", cr.token)], lease_ms=10_000, now=clock()
        )
        assert (beat.cancel, beat.lost) == (frozenset({("r", cr.token)}), frozenset())
        done = await finish(backend, cr, CANCELLED_RUN, clock.advance(0.5))
        assert (done.held, done.state, done.next_run_at) == (True, JobState.CANCELLED, None)
        r = await backend.get_job("r")
        assert (r.state, r.next_run_at, r.last_error) == (
            JobState.CANCELLED,
            None,
            "cancelled while running",
        )
        [attempt] = await backend.history("r")
        assert (attempt.outcome, attempt.signal) == (Outcome.CANCELLED, 15)
        claimed = await claim(backend, clock.advance(3600), n=5)
        assert sorted(c.job.id for c in claimed) == ["f", "p"]
        await counts_match_rows(backend)

    async def test_the_request_stays_in_force_whoever_ends_the_attempt(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        now = clock()
        await backend.enqueue([job(i, now) for i in ("fails", "exits0", "lost")], now=now)
        by_id = {c.job.id: c for c in await claim(backend, now, n=3, lease_ms=1000)}
        await backend.cancel(list(by_id), now=now)
        # The command failed on its own before the kill reached it: not retried.
        failed = await finish(backend, by_id["fails"], FAIL, clock.advance(0.1))
        assert (failed.state, failed.next_run_at) == (JobState.CANCELLED, None)
        # It had exited 0: its work is done, the job is completed.
        assert (await finish(backend, by_id["exits0"], OK, clock())).state is JobState.COMPLETED
        # Its worker was lost: recovery cancels instead of retrying.
        [lost] = await backend.recover(now=clock.advance(1))
        assert lost.job_id == "lost"
        assert await states(backend, "fails", "exits0", "lost") == [
            JobState.CANCELLED,
            JobState.COMPLETED,
            JobState.CANCELLED,
        ]
        assert (await backend.get_job("fails")).attempts == 1
        # A late result of the lost attempt cannot undo the cancel (the token fences it).
        late = await finish(backend, by_id["lost"], OK, clock())
        assert late.held is False
        assert await state(backend, "lost") == JobState.CANCELLED
        await counts_match_rows(backend)

    async def test_a_list_is_all_or_nothing_and_finished_jobs_are_refused(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        await three_waiting_and_one_running(backend, clock)
        with pytest.raises(JobNotFound, match="'nope'"):
            await backend.cancel(["p", "r", "nope"], now=clock())
        with pytest.raises(InvalidTransition, match="'c' is completed"):
            await backend.cancel(["p", "c"], now=clock())
        with pytest.raises(InvalidTransition, match="'d' is dead"):
            await backend.cancel(["f", "d"], now=clock())
        assert await states(backend, "p", "f", "r") == [
            JobState.PENDING,
            JobState.FAILED,
            JobState.PROCESSING,
        ]
        assert (await backend.get_job("r")).cancel_requested_at is None
        await backend.cancel(["p"], now=clock())
        again = await backend.cancel(["p", "p", "f"], now=clock())
        assert (again.cancelled, again.already) == (["f"], ["p"])


class TestRetryRemove:
    async def test_retry_brings_back_dead_cancelled_and_failed_jobs(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        cr = await three_waiting_and_one_running(backend, clock)
        await backend.cancel(["r"], now=clock())
        await finish(backend, cr, CANCELLED_RUN, clock())
        later = clock.advance(5)
        with pytest.raises(InvalidTransition, match="'p' is pending"):
            await backend.retry_jobs(["d", "p"], now=later)
        with pytest.raises(InvalidTransition, match="'c' is completed"):
            await backend.retry_jobs(["d", "c"], now=later)
        assert await state(backend, "d") == JobState.DEAD
        plan = await backend.retry_jobs(["d", "r", "f", "d"], now=later)
        assert (plan.reset, plan.keep) == (["d", "r"], ["f"])
        for job_id, attempts in (("d", 0), ("r", 0), ("f", 1)):
            found = await backend.get_job(job_id)
            assert (found.state, found.attempts, found.next_run_at) == (
                JobState.PENDING,
                attempts,
                later,
            ), job_id
            assert found.cancel_requested_at is None
        # A job retried after a cancel runs normally: the old request is gone.
        claimed = {c.job.id: c for c in await claim(backend, later, n=5)}
        assert {"d", "r", "f", "p"} <= set(claimed)
        assert (await finish(backend, claimed["r"], FAIL, later)).state is JobState.FAILED
        await counts_match_rows(backend)

    async def test_retry_by_state_and_queue(self, backend: Any, clock: FrozenClock) -> None:
        now = clock()
        await backend.enqueue(
            [job("a", now, queue="q1"), job("b", now, queue="q2"), job("c", now, queue="q1")],
            now=now,
        )
        await backend.cancel(["a", "b", "c"], now=now)
        with pytest.raises(InvalidTransition, match="dead or cancelled"):
            await backend.retry_state(JobState.FAILED, queue=None, now=now)
        moved = await backend.retry_state(JobState.CANCELLED, queue="q1", now=clock.advance(1))
        assert moved == ["a", "c"]
        assert await states(backend, "a", "b", "c") == [
            JobState.PENDING,
            JobState.CANCELLED,
            JobState.PENDING,
        ]
        assert await backend.retry_state(JobState.CANCELLED, queue=None, now=clock()) == ["b"]
        await counts_match_rows(backend)

    async def test_rm_deletes_jobs_with_their_history_but_not_running_ones(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        await three_waiting_and_one_running(backend, clock)
        with pytest.raises(InvalidTransition, match="'r' is running: cancel it first"):
            await backend.remove_jobs(["p", "r"])
        with pytest.raises(JobNotFound, match="'nope'"):
            await backend.remove_jobs(["p", "nope"])
        assert await state(backend, "p") == JobState.PENDING
        assert await backend.remove_jobs(["c", "d", "p", "c"]) == ["c", "d", "p"]
        for gone in ("c", "d", "p"):
            assert await backend.get_job(gone) is None
            assert await backend.history(gone) == []
        assert await backend.job_states(["c", "f", "r"]) == {
            "f": JobState.FAILED,
            "r": JobState.PROCESSING,
        }
        await counts_match_rows(backend)


class TestPurgeUpdate:
    async def test_purge_by_state_age_and_queue(self, backend: Any, clock: FrozenClock) -> None:
        t0 = clock()
        await backend.enqueue(
            [job(f"old{i}", t0, queue="a" if i % 2 else "b") for i in range(6)], now=t0
        )
        claims = await claim(backend, t0, n=6)
        for c in claims[:4]:
            await finish(backend, c, OK, t0)
        await backend.cancel([claims[4].job.id], now=t0)
        await finish(backend, claims[4], CANCELLED_RUN, t0)
        await finish(backend, claims[5], ExecutionResult(exit_code=1), t0)  # failed: kept
        t1 = clock.advance(3600)
        await backend.enqueue([job("new", t1, queue="n")], now=t1)
        [cn] = await claim(backend, t1, queues=["n"])
        await finish(backend, cn, OK, t1)
        states_ = [JobState.COMPLETED, JobState.CANCELLED]
        assert await backend.purge(states_, before=t1, dry_run=True) == 5
        assert await backend.purge(states_, before=t1, queue="a", dry_run=True) == 2
        assert await backend.purge([JobState.DEAD], before=t1 + 1, dry_run=True) == 0
        assert await backend.purge([JobState.CANCELLED], before=t1, dry_run=True) == 1
        assert await backend.purge(states_, before=t1, queue="a") == 2
        assert await backend.purge(states_, before=t1) == 3
        assert await backend.purge(states_, before=t1) == 0
        left = {j.id: j.state for j in await backend.list_jobs(limit=0)}
        assert left == {"new": JobState.COMPLETED, claims[5].job.id: JobState.FAILED}
        for c in claims[:5]:
            assert await backend.history(c.job.id) == []
        assert await backend.purge(states_, before=t1 + 1) == 1
        await counts_match_rows(backend)

    async def test_purge_goes_in_batches_and_a_limit_stops_it(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        now = clock()
        await backend.enqueue([job(f"j{i}", now) for i in range(1200)], now=now)
        result = await backend.cancel([f"j{i}" for i in range(1200)], now=now)
        assert len(result.cancelled) == 1200
        deleted = await backend.purge([JobState.CANCELLED], before=now + 1, limit=500)
        assert deleted == 500
        assert await backend.purge([JobState.CANCELLED], before=now + 1) == 700
        await counts_match_rows(backend)

    async def test_update_changes_a_waiting_job_only(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        await three_waiting_and_one_running(backend, clock)
        later = clock() + 60_000
        changes = JobChanges(
            priority=7, queue="other", max_retries=9, timeout_s=5.0, run_at=later, next_run_at=later
        )
        p = await backend.update_job("p", changes, now=clock())
        assert (p.priority, p.queue, p.max_retries, p.timeout_s, p.run_at, p.next_run_at) == (
            7,
            "other",
            9,
            5.0,
            later,
            later,
        )
        assert (await backend.counts(["other"]))[JobState.PENDING] == 1
        f = await backend.update_job("f", JobChanges(priority=3), now=clock())
        assert (f.priority, f.state, f.next_run_at) == (3, JobState.FAILED, clock() + 2000)
        for refused in ("r", "c", "d"):
            with pytest.raises(InvalidTransition, match=f"'{refused}' is"):
                await backend.update_job(refused, JobChanges(priority=1), now=clock())
        with pytest.raises(JobNotFound):
            await backend.update_job("nope", JobChanges(priority=1), now=clock())
        await counts_match_rows(backend)
