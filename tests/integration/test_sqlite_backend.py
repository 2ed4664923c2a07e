"""The SQLite store on a real file: atomicity, ordering, exactly-once claims and fencing."""

from __future__ import annotations

import multiprocessing
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from queuectl.backends.sqlite import SqliteBackend
from queuectl.exceptions import DuplicateJob, InvalidTransition, JobNotFound
from queuectl.models import (
    Claim,
    ExecutionResult,
    Finish,
    JobState,
    LostAttempt,
    Outcome,
    StopMode,
    WorkerInfo,
)
from tests.conftest import FrozenClock
from tests.helpers import db_counts, db_rows, new_job

LEASE_MS = 10_000


async def claim(
    backend: SqliteBackend,
    now: int,
    *,
    worker: str = "w1",
    n: int = 1,
    queues: list[str] | None = None,
    lease_ms: int = LEASE_MS,
) -> list[Claim]:
    result = await backend.exchange(
        worker_id=worker, claim=n, queues=queues, lease_ms=lease_ms, now=now
    )
    return result.claims


async def finish(
    backend: SqliteBackend, c: Claim, result: ExecutionResult, now: int, *, worker: str = "w1"
):
    done = await backend.exchange(
        worker_id=worker,
        finishes=[Finish(c.job.id, c.token, c.job.attempts, c.job.max_retries, result)],
        now=now,
    )
    [only] = done.finished
    return only


OK = ExecutionResult(exit_code=0)
FAIL = ExecutionResult(exit_code=1)


class TestEnqueue:
    async def test_enqueued_jobs_are_pending_and_readable(
        self, sqlite_backend: SqliteBackend, clock: FrozenClock
    ) -> None:
        now = clock()
        jobs = [
            new_job(
                "a",
                now=now,
                command="echo a",
                priority=3,
                queue="q",
                timeout_s=1.5,
                env={"K": "V"},
                cwd="/tmp",
                run_at=now + 5,
                max_retries=7,
            ),
            new_job("b", now=now),
        ]
        inserted = await sqlite_backend.enqueue(jobs, now=now)
        assert [j.id for j in inserted] == ["a", "b"]
        stored = await sqlite_backend.get_job("a")
        assert stored is not None
        assert stored == inserted[0]
        assert (stored.state, stored.attempts, stored.claims) == (JobState.PENDING, 0, 0)
        assert (stored.command, stored.priority, stored.queue, stored.timeout_s) == (
            "echo a",
            3,
            "q",
            1.5,
        )
        assert (stored.env, stored.cwd, stored.run_at, stored.max_retries) == (
            {"K": "V"},
            "/tmp",
            now + 5,
            7,
        )
        assert (stored.created_at, stored.updated_at) == (now, now)

    async def test_a_batch_with_a_duplicate_inserts_nothing_and_names_the_job(
        self, sqlite_backend: SqliteBackend, db_path: Path, clock: FrozenClock
    ) -> None:
        await sqlite_backend.enqueue([new_job("taken", command="echo original")], now=clock())
        before = db_rows(db_path, "SELECT * FROM jobs WHERE id = 'taken'")
        batch = [new_job("n1"), new_job("n2"), new_job("taken", command="echo impostor")]
        with pytest.raises(
            DuplicateJob, match=r"^job 3: a job with id 'taken' already exists$"
        ) as info:
            await sqlite_backend.enqueue(batch, now=clock.advance(5))
        assert (info.value.job_id, info.value.position) == ("taken", 3)
        assert await sqlite_backend.get_job("n1") is None
        assert await sqlite_backend.get_job("n2") is None
        assert [tuple(r) for r in db_rows(db_path, "SELECT * FROM jobs WHERE id = 'taken'")] == [
            tuple(r) for r in before
        ]
        assert db_counts(db_path)["pending"] == 1

    async def test_the_store_stays_usable_after_a_rejected_batch(
        self, sqlite_backend: SqliteBackend, clock: FrozenClock
    ) -> None:
        await sqlite_backend.enqueue([new_job("x")], now=clock())
        with pytest.raises(DuplicateJob):
            await sqlite_backend.enqueue([new_job("x")], now=clock())
        await sqlite_backend.enqueue([new_job("y")], now=clock())
        assert (await sqlite_backend.counts())[JobState.PENDING] == 2


class TestClaim:
    async def test_order_is_priority_then_age_among_due_jobs(
        self, sqlite_backend: SqliteBackend, clock: FrozenClock
    ) -> None:
        t = clock()
        await sqlite_backend.enqueue(
            [
                new_job("low-old", next_run_at=t - 3000),
                new_job("mid-due-later", priority=1, next_run_at=t - 1000),
                new_job("mid-due-earlier", priority=1, next_run_at=t - 2000),
                new_job("low-same-due-younger", next_run_at=t - 3000),
                new_job("future-top", priority=9, next_run_at=t + 60_000),
                new_job("neg", priority=-1, next_run_at=t - 9000),
                new_job("high-new", priority=5, next_run_at=t),
            ],
            now=t,
        )
        order = []
        while claims := await claim(sqlite_backend, t):
            order.append(claims[0].job.id)
        # SPEC §3: ties run oldest first (enqueue order), whatever their due times.
        assert order == [
            "high-new",
            "mid-due-later",
            "mid-due-earlier",
            "low-old",
            "low-same-due-younger",
            "neg",
        ]
        [late] = await claim(sqlite_backend, t + 60_000)
        assert late.job.id == "future-top"

    async def test_a_batch_claim_takes_the_best_jobs(
        self, sqlite_backend: SqliteBackend, clock: FrozenClock
    ) -> None:
        t = clock()
        await sqlite_backend.enqueue(
            [new_job(f"p{p}", priority=p, next_run_at=t) for p in (0, 4, 1, 3, 2)], now=t
        )
        claims = await claim(sqlite_backend, t, n=3)
        assert sorted(c.job.id for c in claims) == ["p2", "p3", "p4"]

    async def test_future_jobs_are_not_claimed_and_set_the_next_due_time(
        self, sqlite_backend: SqliteBackend, clock: FrozenClock
    ) -> None:
        t = clock()
        await sqlite_backend.enqueue(
            [new_job("later", next_run_at=t + 5000), new_job("latest", next_run_at=t + 9000)],
            now=t,
        )
        result = await sqlite_backend.exchange(worker_id="w", claim=2, now=t + 4999)
        assert result.claims == []
        assert result.next_due_at == t + 5000
        [c] = (await sqlite_backend.exchange(worker_id="w", claim=2, now=t + 5000)).claims
        assert c.job.id == "later"

    async def test_claim_marks_processing_counts_the_attempt_and_opens_history(
        self, sqlite_backend: SqliteBackend, clock: FrozenClock
    ) -> None:
        t = clock()
        await sqlite_backend.enqueue([new_job("j", next_run_at=t)], now=t)
        [c] = await claim(sqlite_backend, t + 10, worker="wA", lease_ms=7000)
        assert (c.token, c.lease_until) == (1, t + 10 + 7000)
        job = await sqlite_backend.get_job("j")
        assert job is not None
        assert (job.state, job.attempts, job.claims, job.worker_id, job.lease_until) == (
            JobState.PROCESSING,
            1,
            1,
            "wA",
            t + 7010,
        )
        [attempt] = await sqlite_backend.history("j")
        assert (attempt.attempt, attempt.worker_id, attempt.started_at, attempt.finished_at) == (
            1,
            "wA",
            t + 10,
            None,
        )

    async def test_queues_restrict_the_claim(
        self, sqlite_backend: SqliteBackend, clock: FrozenClock
    ) -> None:
        t = clock()
        await sqlite_backend.enqueue(
            [
                new_job("d", next_run_at=t),
                new_job("e1", queue="emails", next_run_at=t, priority=-5),
                new_job("r", queue="reports", next_run_at=t),
                new_job("e2", queue="emails", next_run_at=t + 100),
            ],
            now=t,
        )
        claims = await claim(sqlite_backend, t, n=10, queues=["emails"])
        assert [c.job.id for c in claims] == ["e1"]
        result = await sqlite_backend.exchange(worker_id="w", claim=1, queues=["emails"], now=t + 1)
        assert result.next_due_at == t + 100
        claims = await claim(sqlite_backend, t, n=10, queues=["reports", "default"])
        assert sorted(c.job.id for c in claims) == ["d", "r"]

    async def test_a_failed_job_is_claimable_again_once_due(
        self, sqlite_backend: SqliteBackend, clock: FrozenClock
    ) -> None:
        t = clock()
        await sqlite_backend.enqueue([new_job("j", next_run_at=t)], now=t)
        [c] = await claim(sqlite_backend, t)
        done = await finish(sqlite_backend, c, FAIL, t + 100)
        assert (done.state, done.next_run_at) == (JobState.FAILED, t + 100 + 2000)
        assert await claim(sqlite_backend, t + 2099) == []
        [again] = await claim(sqlite_backend, t + 2100)
        assert (again.token, again.job.attempts) == (2, 2)


def test_twenty_concurrent_claimers_claim_each_of_500_jobs_exactly_once(
    db_path: Path,
) -> None:
    """4 processes with 5 connections each, started together through a barrier."""
    import asyncio

    from tests.integration.claimers import claimer_process

    async def fill() -> None:
        backend = await SqliteBackend.open(str(db_path))
        try:
            jobs = [new_job(f"job-{i:03d}", priority=i % 3) for i in range(500)]
            await backend.enqueue(jobs, now=0)
        finally:
            await backend.aclose()

    asyncio.run(fill())
    processes, connections = 4, 5
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes)
    out = ctx.Queue()
    children = [
        ctx.Process(target=claimer_process, args=(str(db_path), i, connections, barrier, out))
        for i in range(processes)
    ]
    for child in children:
        child.start()
    try:
        results = [out.get(timeout=90) for _ in children]
    finally:
        for child in children:
            child.join(timeout=30)
            if child.is_alive():
                child.kill()
                child.join()
    errors = [err for _, _, err in results if err]
    assert not errors, errors
    records = [r for _, recs, _ in results for r in recs]
    per_job = Counter(job_id for job_id, _, _ in records)
    assert len(per_job) == 500
    assert set(per_job.values()) == {1}, [j for j, n in per_job.items() if n > 1]
    assert {token for _, token, _ in records} == {1}
    # The claims really were spread over several processes and connections.
    assert len({w[:2] for _, _, w in records}) >= 2
    assert len({w for _, _, w in records}) >= 5
    assert db_counts(db_path) == {
        "pending": 0,
        "processing": 0,
        "completed": 500,
        "failed": 0,
        "dead": 0,
        "cancelled": 0,
    }
    rows = db_rows(db_path, "SELECT count(*), max(attempt) FROM attempts")
    assert tuple(rows[0]) == (500, 1)


class TestFinish:
    async def test_success_completes_and_records_the_attempt(
        self, sqlite_backend: SqliteBackend, clock: FrozenClock
    ) -> None:
        t = clock()
        await sqlite_backend.register_worker(_worker("w1", t), now=t)
        await sqlite_backend.enqueue([new_job("j", next_run_at=t)], now=t)
        [c] = await claim(sqlite_backend, t)
        result = ExecutionResult(exit_code=0, output_tail=b"hi\n", output_size=3)
        done = await finish(sqlite_backend, c, result, t + 50)
        assert (done.held, done.state, done.next_run_at) == (True, JobState.COMPLETED, None)
        job = await sqlite_backend.get_job("j")
        assert job is not None
        assert (job.state, job.exit_code, job.last_error, job.worker_id, job.lease_until) == (
            JobState.COMPLETED,
            0,
            None,
            None,
            None,
        )
        [attempt] = await sqlite_backend.history("j")
        assert (attempt.finished_at, attempt.outcome, attempt.exit_code) == (
            t + 50,
            Outcome.COMPLETED,
            0,
        )
        out = await sqlite_backend.attempt_output("j", None)
        assert out is not None
        assert (out.output, out.output_size, out.finished) == (b"hi\n", 3, True)
        [w] = await sqlite_backend.list_workers()
        assert w.jobs_done == 1

    async def test_failure_uses_the_backoff_settings_stored_at_that_moment(
        self, sqlite_backend: SqliteBackend, clock: FrozenClock
    ) -> None:
        t = clock()
        await sqlite_backend.enqueue([new_job("j", next_run_at=t, max_retries=1)], now=t)
        [c] = await claim(sqlite_backend, t)
        await sqlite_backend.set_config({"backoff_base": "3"})
        done = await finish(sqlite_backend, c, FAIL, t + 10)
        assert (done.state, done.next_run_at) == (JobState.FAILED, t + 10 + 3000)
        job = await sqlite_backend.get_job("j")
        assert job is not None
        assert (job.state, job.exit_code, job.last_error, job.next_run_at) == (
            JobState.FAILED,
            1,
            "exit code 1",
            t + 3010,
        )
        [c2] = await claim(sqlite_backend, t + 3010)
        dead = await finish(sqlite_backend, c2, FAIL, t + 3020)
        assert (dead.state, dead.next_run_at) == (JobState.DEAD, None)
        job = await sqlite_backend.get_job("j")
        assert job is not None
        assert (job.state, job.attempts) == (JobState.DEAD, 2)

    async def test_interrupted_attempt_goes_back_to_pending_without_counting(
        self, sqlite_backend: SqliteBackend, clock: FrozenClock
    ) -> None:
        t = clock()
        await sqlite_backend.enqueue([new_job("j", next_run_at=t, max_retries=0)], now=t)
        [c] = await claim(sqlite_backend, t)
        result = ExecutionResult(signal=15, interrupted=True)
        done = await finish(sqlite_backend, c, result, t + 5)
        assert (done.state, done.next_run_at) == (JobState.PENDING, t + 5)
        job = await sqlite_backend.get_job("j")
        assert job is not None
        assert (job.state, job.attempts, job.claims) == (JobState.PENDING, 0, 1)
        [attempt] = await sqlite_backend.history("j")
        assert attempt.outcome is Outcome.INTERRUPTED
        [again] = await claim(sqlite_backend, t + 5)
        assert (again.token, again.job.attempts) == (2, 1)


def _worker(worker_id: str, now: int, count: int = 1) -> WorkerInfo:
    return WorkerInfo(
        id=worker_id, host="h", pid=1, started_at=now, heartbeat_at=now, count=count, jobs_done=0
    )


class TestFencing:
    async def _lose_to_b(self, backend: SqliteBackend, t: int) -> tuple[Claim, Claim]:
        """w1 claims j, its lease runs out, recover hands j back, w2 claims it."""
        await backend.enqueue([new_job("j", next_run_at=t, max_retries=3)], now=t)
        [old] = await claim(backend, t, worker="w1", lease_ms=1000)
        lost = await backend.recover(now=t + 1000)
        assert [x.job_id for x in lost] == ["j"]
        # The lost attempt counts: the retry waits out the backoff (2 ** 1 s).
        [new] = await claim(backend, t + 3000, worker="w2", lease_ms=1000)
        assert (old.token, new.token) == (1, 2)
        return old, new

    async def test_a_stale_finish_is_rejected_and_leaves_the_new_attempt_alone(
        self, sqlite_backend: SqliteBackend, db_path: Path, clock: FrozenClock
    ) -> None:
        t = clock()
        old, _ = await self._lose_to_b(sqlite_backend, t)
        job_before = await sqlite_backend.get_job("j")
        rows_before = [tuple(r) for r in db_rows(db_path, "SELECT * FROM attempts ORDER BY 2")]
        done = await finish(sqlite_backend, old, OK, t + 3500, worker="w1")
        assert done.held is False
        assert await sqlite_backend.get_job("j") == job_before
        assert job_before is not None
        assert (job_before.state, job_before.worker_id, job_before.claims) == (
            JobState.PROCESSING,
            "w2",
            2,
        )
        rows_after = [tuple(r) for r in db_rows(db_path, "SELECT * FROM attempts ORDER BY 2")]
        assert rows_after == rows_before

    async def test_the_right_token_from_the_wrong_worker_is_rejected(
        self, sqlite_backend: SqliteBackend, clock: FrozenClock
    ) -> None:
        t = clock()
        _, new = await self._lose_to_b(sqlite_backend, t)
        done = await finish(sqlite_backend, new, OK, t + 3500, worker="w1")
        assert done.held is False
        job = await sqlite_backend.get_job("j")
        assert job is not None
        assert job.state is JobState.PROCESSING
        # The rightful holder still finishes normally.
        done = await finish(sqlite_backend, new, OK, t + 3600, worker="w2")
        assert (done.held, done.state) == (True, JobState.COMPLETED)

    async def test_a_stale_heartbeat_reports_the_loss_and_extends_nothing(
        self, sqlite_backend: SqliteBackend, clock: FrozenClock
    ) -> None:
        t = clock()
        old, new = await self._lose_to_b(sqlite_backend, t)
        beat = await sqlite_backend.heartbeat(
            worker_id="w1", running=[("j", old.token)], lease_ms=60_000, now=t + 3100
        )
        assert beat.lost == frozenset({("j", 1)})
        job = await sqlite_backend.get_job("j")
        assert job is not None
        assert (job.worker_id, job.lease_until) == ("w2", new.lease_until)

    async def test_a_stale_start_record_does_not_touch_the_new_attempt(
        self, sqlite_backend: SqliteBackend, clock: FrozenClock
    ) -> None:
        from queuectl.models import ProcessStart

        t = clock()
        old, new = await self._lose_to_b(sqlite_backend, t)
        await sqlite_backend.exchange(
            worker_id="w2", starts=[ProcessStart("j", new.token, "h", 222, 222, None)], now=t
        )
        await sqlite_backend.exchange(
            worker_id="w1", starts=[ProcessStart("j", old.token, "h", 111, 111, None)], now=t
        )
        history = await sqlite_backend.history("j")
        assert [(a.attempt, a.pid) for a in history] == [(1, 111), (2, 222)]

    async def test_heartbeat_extends_held_leases_and_reads_stop_requests(
        self, sqlite_backend: SqliteBackend, clock: FrozenClock
    ) -> None:
        t = clock()
        await sqlite_backend.register_worker(_worker("w1", t), now=t)
        await sqlite_backend.enqueue([new_job("a", next_run_at=t)], now=t)
        [c] = await claim(sqlite_backend, t, lease_ms=1000)
        beat = await sqlite_backend.heartbeat(
            worker_id="w1", running=[("a", c.token)], lease_ms=1000, now=t + 900
        )
        assert (beat.lost, beat.stop, beat.registered) == (frozenset(), StopMode.NONE, True)
        job = await sqlite_backend.get_job("a")
        assert job is not None
        assert job.lease_until == t + 1900
        # Because the lease was extended, recovery at the old expiry finds nothing.
        assert await sqlite_backend.recover(now=t + 1000) == []
        assert await sqlite_backend.request_stop(StopMode.GRACEFUL) == ["w1"]
        beat = await sqlite_backend.heartbeat(
            worker_id="w1", running=[("a", c.token)], lease_ms=1000, now=t + 950
        )
        assert beat.stop is StopMode.GRACEFUL
        await sqlite_backend.request_stop(StopMode.NOW)
        await sqlite_backend.request_stop(StopMode.GRACEFUL)
        beat = await sqlite_backend.heartbeat(
            worker_id="w1", running=[], lease_ms=1000, now=t + 960
        )
        assert beat.stop is StopMode.NOW
        [w] = await sqlite_backend.list_workers()
        assert w.heartbeat_at == t + 960

    async def test_heartbeat_of_a_removed_worker_asks_it_to_register_again(
        self, sqlite_backend: SqliteBackend, clock: FrozenClock
    ) -> None:
        t = clock()
        beat = await sqlite_backend.heartbeat(worker_id="ghost", running=[], lease_ms=1, now=t)
        assert beat.registered is False


class TestRecover:
    async def test_expired_lease_counts_as_a_failed_attempt_and_follows_the_policy(
        self, sqlite_backend: SqliteBackend, clock: FrozenClock
    ) -> None:
        t = clock()
        await sqlite_backend.set_config({"backoff_base": "5"})
        await sqlite_backend.enqueue(
            [new_job("retry", next_run_at=t, max_retries=1), new_job("die", max_retries=0)],
            now=t,
        )
        claims = await claim(sqlite_backend, t, worker="gone", n=2, lease_ms=1000)
        assert len(claims) == 2
        assert await sqlite_backend.recover(now=t + 999) == []
        lost = await sqlite_backend.recover(now=t + 1000)
        assert sorted((x.job_id, x.token, x.worker_id) for x in lost) == [
            ("die", 1, "gone"),
            ("retry", 1, "gone"),
        ]
        retry = await sqlite_backend.get_job("retry")
        die = await sqlite_backend.get_job("die")
        assert retry is not None
        assert die is not None
        assert (retry.state, retry.attempts, retry.next_run_at) == (
            JobState.FAILED,
            1,
            t + 1000 + 5000,
        )
        assert (die.state, die.attempts) == (JobState.DEAD, 1)
        for job in (retry, die):
            assert job.last_error is not None
            assert "worker lost" in job.last_error
            assert (job.worker_id, job.lease_until) == (None, None)
            [attempt] = await sqlite_backend.history(job.id)
            assert attempt.outcome is Outcome.LOST
            assert attempt.error is not None
            assert "worker lost" in attempt.error
            assert attempt.finished_at == t + 1000

    async def test_a_dead_worker_loses_its_jobs_at_once_and_its_row(
        self, sqlite_backend: SqliteBackend, clock: FrozenClock
    ) -> None:
        t = clock()
        for w in ("dead", "alive"):
            await sqlite_backend.register_worker(_worker(w, t), now=t)
        await sqlite_backend.enqueue(
            [new_job("a", next_run_at=t), new_job("b", next_run_at=t)], now=t
        )
        await claim(sqlite_backend, t, worker="dead")
        await claim(sqlite_backend, t, worker="alive")
        lost = await sqlite_backend.recover(now=t + 1, dead_workers=["dead"])
        assert [x.job_id for x in lost] == ["a"]
        assert [w.id for w in await sqlite_backend.list_workers()] == ["alive"]
        b = await sqlite_backend.get_job("b")
        assert b is not None
        assert b.state is JobState.PROCESSING

    async def test_on_lost_runs_before_the_job_is_visible_again(
        self, sqlite_backend: SqliteBackend, db_path: Path, clock: FrozenClock
    ) -> None:
        t = clock()
        await sqlite_backend.enqueue([new_job("a", next_run_at=t)], now=t)
        await claim(sqlite_backend, t, lease_ms=10)
        seen: list[tuple[str, str]] = []

        def on_lost(item: LostAttempt) -> None:
            # Another connection still sees the job held: nobody can claim it yet.
            [row] = db_rows(db_path, "SELECT state FROM jobs WHERE id = ?", item.job_id)
            seen.append((item.job_id, row[0]))

        await sqlite_backend.recover(now=t + 10, on_lost=on_lost)
        assert seen == [("a", "processing")]
        [row] = db_rows(db_path, "SELECT state FROM jobs WHERE id = 'a'")
        assert row[0] == "failed"

    async def test_a_failing_on_lost_changes_nothing(
        self, sqlite_backend: SqliteBackend, clock: FrozenClock
    ) -> None:
        t = clock()
        await sqlite_backend.enqueue([new_job("a", next_run_at=t)], now=t)
        await claim(sqlite_backend, t, lease_ms=10)

        def on_lost(item: LostAttempt) -> None:
            raise RuntimeError("cannot kill")

        with pytest.raises(RuntimeError):
            await sqlite_backend.recover(now=t + 10, on_lost=on_lost)
        job = await sqlite_backend.get_job("a")
        assert job is not None
        assert job.state is JobState.PROCESSING


class TestRequeueDead:
    async def _dead(self, backend: SqliteBackend, t: int, *ids: str) -> None:
        await backend.enqueue([new_job(i, next_run_at=t, max_retries=0) for i in ids], now=t)
        for c in await claim(backend, t, n=len(ids)):
            assert (await finish(backend, c, FAIL, t)).state is JobState.DEAD

    async def test_named_dead_jobs_go_back_to_pending_with_zero_attempts(
        self, sqlite_backend: SqliteBackend, clock: FrozenClock
    ) -> None:
        t = clock()
        await self._dead(sqlite_backend, t, "d1", "d2")
        assert await sqlite_backend.requeue_dead(["d2"], now=t + 7) == ["d2"]
        d2 = await sqlite_backend.get_job("d2")
        assert d2 is not None
        assert (d2.state, d2.attempts, d2.next_run_at, d2.updated_at) == (
            JobState.PENDING,
            0,
            t + 7,
            t + 7,
        )
        d1 = await sqlite_backend.get_job("d1")
        assert d1 is not None
        assert d1.state is JobState.DEAD
        [c] = await claim(sqlite_backend, t + 7)
        assert (c.job.id, c.job.attempts, c.token) == ("d2", 1, 2)

    async def test_an_id_named_twice_is_retried_once(
        self, sqlite_backend: SqliteBackend, clock: FrozenClock
    ) -> None:
        t = clock()
        await self._dead(sqlite_backend, t, "d1", "d2")
        assert await sqlite_backend.requeue_dead(["d1", "d2", "d1"], now=t) == ["d1", "d2"]
        assert (await sqlite_backend.counts())[JobState.PENDING] == 2

    async def test_all(self, sqlite_backend: SqliteBackend, clock: FrozenClock) -> None:
        t = clock()
        await self._dead(sqlite_backend, t, "d1", "d2", "d3")
        await sqlite_backend.enqueue([new_job("p", next_run_at=t + 10**6)], now=t)
        assert sorted(await sqlite_backend.requeue_dead(None, now=t)) == ["d1", "d2", "d3"]
        assert (await sqlite_backend.counts())[JobState.DEAD] == 0
        assert (await sqlite_backend.counts())[JobState.PENDING] == 4
        assert await sqlite_backend.requeue_dead(None, now=t) == []

    @pytest.mark.parametrize(
        ("ids", "error", "message"),
        [
            (["d1", "missing", "d2"], JobNotFound, "no job with id 'missing'"),
            (["d1", "waiting"], InvalidTransition, "job 'waiting' is pending, not dead"),
        ],
    )
    async def test_all_or_nothing(
        self,
        sqlite_backend: SqliteBackend,
        clock: FrozenClock,
        ids: list[str],
        error: type[Exception],
        message: str,
    ) -> None:
        t = clock()
        await self._dead(sqlite_backend, t, "d1", "d2")
        await sqlite_backend.enqueue([new_job("waiting", next_run_at=t + 10**6)], now=t)
        with pytest.raises(error, match=message):
            await sqlite_backend.requeue_dead(ids, now=t)
        for job_id in ("d1", "d2"):
            job = await sqlite_backend.get_job(job_id)
            assert job is not None
            assert (job.state, job.attempts) == (JobState.DEAD, 1)


async def test_counts_always_match_a_real_group_by(
    sqlite_backend: SqliteBackend, db_path: Path, clock: FrozenClock
) -> None:
    t = clock()

    seen: set[str] = set()

    async def check() -> None:
        kept = {s.value: n for s, n in (await sqlite_backend.counts()).items()}
        assert kept == db_counts(db_path)
        seen.update(state for state, n in kept.items() if n)
        for queue in ("q1", "q2", "nothing-here"):
            kept = {s.value: n for s, n in (await sqlite_backend.counts([queue])).items()}
            rows = db_rows(
                db_path, "SELECT state, count(*) FROM jobs WHERE queue = ? GROUP BY state", queue
            )
            assert {k: v for k, v in kept.items() if v} == dict(map(tuple, rows))

    jobs = [
        new_job(f"j{i}", next_run_at=t, queue=f"q{i % 2 + 1}", max_retries=i % 3) for i in range(30)
    ]
    await sqlite_backend.enqueue(jobs, now=t)
    await check()
    for step in range(8):
        claims = await claim(sqlite_backend, t, n=5, worker=f"w{step}", lease_ms=50)
        await check()
        results = [OK, FAIL, ExecutionResult(interrupted=True, signal=9), FAIL, OK]
        await sqlite_backend.exchange(
            worker_id=f"w{step}",
            finishes=[
                Finish(c.job.id, c.token, c.job.attempts, c.job.max_retries, r)
                for c, r in zip(claims[:3], results, strict=False)
            ],
            now=t,
        )
        await check()
        t += 100  # the rest of the claims lose their lease
        await sqlite_backend.recover(now=t)
        await check()
        if step % 3 == 2:
            await sqlite_backend.requeue_dead(None, now=t)
            await check()
        t += 10_000  # retries fall due
    with pytest.raises(DuplicateJob):
        await sqlite_backend.enqueue([new_job("fresh"), new_job("j0")], now=t)
    await check()
    assert seen == {"pending", "processing", "completed", "failed", "dead"}


class TestReads:
    async def test_list_is_newest_first_with_filters_and_limit(
        self, sqlite_backend: SqliteBackend, clock: FrozenClock
    ) -> None:
        t = clock()
        await sqlite_backend.enqueue(
            [new_job(f"j{i}", next_run_at=t, queue="a" if i % 2 else "b") for i in range(6)],
            now=t,
        )
        await claim(sqlite_backend, t, n=1)  # j0 is processing
        ids = [j.id for j in await sqlite_backend.list_jobs()]
        assert ids == ["j5", "j4", "j3", "j2", "j1", "j0"]
        assert [j.id for j in await sqlite_backend.list_jobs(limit=2)] == ["j5", "j4"]
        assert len(await sqlite_backend.list_jobs(limit=0)) == 6
        assert [j.id for j in await sqlite_backend.list_jobs(queue="a")] == ["j5", "j3", "j1"]
        assert [j.id for j in await sqlite_backend.list_jobs(state=JobState.PROCESSING)] == ["j0"]
        assert [
            j.id for j in await sqlite_backend.list_jobs(state=JobState.PENDING, queue="b")
        ] == ["j4", "j2"]

    async def test_output_of_the_latest_or_a_given_attempt(
        self, sqlite_backend: SqliteBackend, clock: FrozenClock
    ) -> None:
        t = clock()
        await sqlite_backend.enqueue([new_job("j", next_run_at=t)], now=t)
        assert await sqlite_backend.attempt_output("j", None) is None
        [c] = await claim(sqlite_backend, t)
        await finish(
            sqlite_backend, c, ExecutionResult(exit_code=1, output_tail=b"one", output_size=3), t
        )
        [c] = await claim(sqlite_backend, t + 10_000)
        running = await sqlite_backend.attempt_output("j", None)
        assert running is not None
        assert (running.attempt, running.finished) == (2, False)
        await finish(
            sqlite_backend,
            c,
            ExecutionResult(exit_code=0, output_tail=b"\xff\xfetwo", output_size=900),
            t + 10_001,
        )
        latest = await sqlite_backend.attempt_output("j", None)
        first = await sqlite_backend.attempt_output("j", 1)
        assert latest is not None
        assert first is not None
        assert (latest.attempt, latest.output, latest.output_size) == (2, b"\xff\xfetwo", 900)
        assert (first.attempt, first.output) == (1, b"one")
        assert await sqlite_backend.attempt_output("j", 3) is None
        history = await sqlite_backend.history("j")
        assert [a.output_truncated for a in history] == [False, True]

    async def test_probe_sees_busy_and_due_jobs_per_queue(
        self, sqlite_backend: SqliteBackend, clock: FrozenClock
    ) -> None:
        t = clock()
        empty = await sqlite_backend.probe(queues=None, now=t)
        assert (empty.busy, empty.due) == (0, False)
        await sqlite_backend.enqueue(
            [new_job("a", next_run_at=t, queue="qa"), new_job("b", next_run_at=t + 99, queue="qb")],
            now=t,
        )
        probe = await sqlite_backend.probe(queues=None, now=t)
        assert (probe.busy, probe.due) == (0, True)
        probe = await sqlite_backend.probe(queues=["qb"], now=t)
        assert (probe.busy, probe.due) == (0, False)
        await claim(sqlite_backend, t, queues=["qa"])
        probe = await sqlite_backend.probe(queues=["qa"], now=t)
        assert (probe.busy, probe.due) == (1, False)
        probe = await sqlite_backend.probe(queues=["qb"], now=t + 99)
        assert (probe.busy, probe.due) == (0, True)

    async def test_config_round_trip(self, sqlite_backend: SqliteBackend) -> None:
        assert await sqlite_backend.get_config() == {}
        await sqlite_backend.set_config({"max_retries": "1", "backoff_base": "3"})
        await sqlite_backend.set_config({"max_retries": "4"})
        assert await sqlite_backend.get_config() == {"max_retries": "4", "backoff_base": "3"}

    async def test_a_second_connection_sees_committed_writes(
        self, sqlite_backend: SqliteBackend, db_path: Path, clock: FrozenClock
    ) -> None:
        await sqlite_backend.enqueue([new_job("j")], now=clock())
        other = await SqliteBackend.open(str(db_path))
        try:
            assert await other.get_job("j") is not None
        finally:
            await other.aclose()


def test_the_file_is_in_wal_mode_with_the_queuectl_header(db_path: Path) -> None:
    import asyncio

    asyncio.run(_open_close(db_path))
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA application_id").fetchone()[0] == 0x5143544C
    finally:
        conn.close()


async def _open_close(db_path: Path) -> None:
    backend = await SqliteBackend.open(str(db_path))
    await backend.aclose()
