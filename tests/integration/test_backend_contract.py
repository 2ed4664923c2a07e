"""One contract, two stores: every test here runs on SQLite and on PostgreSQL.

The ``backend`` fixture opens a fresh store of each kind (a file, or a schema of
its own) whose ``now`` arguments are its clock, so time is pinned with
``FrozenClock`` on both. What only one store does lives in ``test_postgres_*``.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import pytest

from queuectl.backends.sqlite import SqliteBackend
from queuectl.exceptions import DuplicateJob, InvalidTransition, JobNotFound, SchemaTooNew
from queuectl.models import (
    Claim,
    ExecutionResult,
    Finish,
    JobState,
    LostAttempt,
    NewJob,
    Outcome,
    ProcessStart,
    StopMode,
    WorkerInfo,
)
from tests.conftest import FrozenClock

LEASE_MS = 10_000
OK = ExecutionResult(exit_code=0)
FAIL = ExecutionResult(exit_code=1)


def job(job_id: str, now: int, **fields: Any) -> NewJob:
    fields.setdefault("command", f"echo {job_id}")
    fields.setdefault("max_retries", 3)
    next_run_at = fields.pop("next_run_at", None)
    if next_run_at is None:
        next_run_at = max(fields.get("run_at") or now, now)
    return NewJob(id=job_id, next_run_at=next_run_at, **fields)


async def claim(
    backend: Any, now: int, *, worker: str = "w1", n: int = 1, lease_ms: int = LEASE_MS, **kw: Any
) -> list[Claim]:
    result = await backend.exchange(worker_id=worker, claim=n, lease_ms=lease_ms, now=now, **kw)
    return list(result.claims)


async def finish(
    backend: Any, c: Claim, result: ExecutionResult, now: int, *, worker: str = "w1"
) -> Any:
    done = await backend.exchange(
        worker_id=worker,
        finishes=[Finish(c.job.id, c.token, c.job.attempts, c.job.max_retries, result)],
        now=now,
    )
    [only] = done.finished
    return only


async def state(backend: Any, job_id: str) -> JobState:
    found = await backend.get_job(job_id)
    assert found is not None
    return JobState(found.state)


async def reopen(backend: Any, **kw: Any) -> Any:
    """Another connection to the same store (another process, as far as the store can tell)."""
    if isinstance(backend, SqliteBackend):
        return await SqliteBackend.open(backend.target, **kw)
    from queuectl.backends.postgres import PostgresBackend

    return await PostgresBackend.open(backend.url, caller_clock=True, **kw)


def worker_info(worker_id: str, now: int, host: str = "h1", pid: int = 1) -> WorkerInfo:
    return WorkerInfo(worker_id, host, pid, now, now, count=2, jobs_done=0)


class TestEnqueue:
    async def test_jobs_come_back_as_they_went_in(self, backend: Any, clock: FrozenClock) -> None:
        now = clock()
        inserted = await backend.enqueue(
            [
                job(
                    "a",
                    now,
                    priority=-3,
                    queue="q",
                    timeout_s=1.5,
                    env={"K": "V é"},
                    cwd="/tmp",
                    run_at=now + 5000,
                    max_retries=7,
                ),
                job("b", now),
            ],
            now=now,
        )
        a = await backend.get_job("a")
        assert inserted == [a, await backend.get_job("b")]
        assert (a.state, a.attempts, a.claims, a.priority, a.queue, a.timeout_s) == (
            JobState.PENDING,
            0,
            0,
            -3,
            "q",
            1.5,
        )
        assert a.command == "echo a"
        assert (a.env, a.cwd, a.run_at, a.next_run_at, a.max_retries) == (
            {"K": "V é"},
            "/tmp",
            now + 5000,
            now + 5000,
            7,
        )
        assert (a.created_at, a.updated_at) == (now, now)
        assert await backend.get_job("missing") is None
        assert [j.id for j in await backend.list_jobs()] == ["b", "a"]

    async def test_a_duplicate_id_rejects_the_whole_batch(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        now = clock()
        await backend.enqueue([job("x", now, command="first")], now=now)
        with pytest.raises(
            DuplicateJob, match=r"^job 2: a job with id 'x' already exists$"
        ) as raised:
            await backend.enqueue([job("y", now), job("x", now), job("z", now)], now=now)
        assert (raised.value.job_id, raised.value.position) == ("x", 2)
        assert [j.id for j in await backend.list_jobs(limit=0)] == ["x"]
        assert (await backend.get_job("x")).command == "first"
        assert (await backend.counts())[JobState.PENDING] == 1
        # The store stays usable after a rejected batch.
        await backend.enqueue([job("y", now)], now=now)
        assert (await backend.counts())[JobState.PENDING] == 2

    async def test_list_filters_and_limits(self, backend: Any, clock: FrozenClock) -> None:
        now = clock()
        await backend.enqueue(
            [job(f"j{i}", now, queue="odd" if i % 2 else "even") for i in range(6)], now=now
        )
        assert [j.id for j in await backend.list_jobs(limit=2)] == ["j5", "j4"]
        assert [j.id for j in await backend.list_jobs(queue="odd", limit=0)] == ["j5", "j3", "j1"]
        [c] = await claim(backend, now)
        listed = await backend.list_jobs(state=JobState.PROCESSING, queue="even")
        assert [j.id for j in listed] == [c.job.id] == ["j0"]
        assert await backend.list_jobs(state=JobState.PROCESSING, queue="odd") == []


class TestClaims:
    async def test_order_is_priority_then_age_among_due_jobs(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        now = clock()
        await backend.enqueue(
            [
                job("old-low", now - 50, next_run_at=now - 50),
                job("high-older", now, priority=5, next_run_at=now - 10),
                job("high-newer", now, priority=5, next_run_at=now - 20),
                job("new-low", now, next_run_at=now - 60),
                job("future-top", now, priority=99, run_at=now + 1000),
                job("negative", now, priority=-1, next_run_at=now - 999),
            ],
            now=now,
        )
        order = [c.job.id for _ in range(6) for c in await claim(backend, now)]
        # Ties run oldest first (reference §5.3), however long each has been due.
        assert order == ["high-older", "high-newer", "old-low", "new-low", "negative"]
        clock.advance(1)
        assert [c.job.id for c in await claim(backend, clock())] == ["future-top"]

    async def test_a_batch_claim_fills_idle_slots_in_order_and_opens_attempts(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        now = clock()
        await backend.enqueue([job(f"j{i}", now, priority=i % 3) for i in range(7)], now=now)
        claims = await claim(backend, now, n=5, lease_ms=3000)
        assert [c.job.id for c in claims] == ["j2", "j5", "j1", "j4", "j0"]
        for c in claims:
            assert (c.job.state, c.job.attempts, c.token, c.job.worker_id) == (
                JobState.PROCESSING,
                1,
                1,
                "w1",
            )
            assert c.lease_until == now + 3000
            [attempt] = await backend.history(c.job.id)
            assert (attempt.attempt, attempt.worker_id, attempt.started_at) == (1, "w1", now)
            assert attempt.finished_at is None
        result = await backend.exchange(worker_id="w2", claim=5, now=now)
        assert [c.job.id for c in result.claims] == ["j3", "j6"]
        assert result.next_due_at is None

    async def test_queues_limit_what_is_claimed(self, backend: Any, clock: FrozenClock) -> None:
        now = clock()
        await backend.enqueue(
            [job("m", now, queue="mail"), job("r", now, queue="reports", priority=9)], now=now
        )
        got = await claim(backend, now, n=5, queues=["mail", "nothing"])
        assert [c.job.id for c in got] == ["m"]
        assert (await backend.counts(["reports"]))[JobState.PENDING] == 1

    async def test_next_due_at_names_the_earliest_waiting_job(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        now = clock()
        await backend.enqueue(
            [
                job("soon", now, run_at=now + 3000),
                job("later", now, run_at=now + 9000),
                job("other", now, queue="other", run_at=now + 1000),
            ],
            now=now,
        )
        result = await backend.exchange(worker_id="w", claim=2, queues=["default"], now=now)
        assert (result.claims, result.next_due_at) == ([], now + 3000)

    async def test_many_concurrent_claimers_take_each_job_exactly_once(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        now = clock()
        total = 600
        await backend.enqueue([job(f"j{i:04d}", now) for i in range(total)], now=now)
        stores = [backend] + [await reopen(backend) for _ in range(5)]
        taken: list[str] = []

        async def claimer(index: int) -> None:
            store = stores[index % len(stores)]
            rng = random.Random(index)
            while True:
                got = await claim(store, now, worker=f"w{index}", n=rng.randint(1, 4))
                if not got:
                    return
                taken.extend(c.job.id for c in got)
                for c in got:
                    assert (await finish(store, c, OK, now, worker=f"w{index}")).held

        try:
            async with asyncio.timeout(30):
                await asyncio.gather(*(claimer(i) for i in range(20)))
        finally:
            for store in stores[1:]:
                await store.aclose()
        counts = Counter(taken)
        assert len(counts) == total
        assert max(counts.values()) == 1
        done = await backend.counts()
        assert done[JobState.COMPLETED] == total
        assert sum(done.values()) == total


class TestFinishes:
    async def test_success_completes_and_keeps_output(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        now = clock()
        await backend.enqueue([job("a", now)], now=now)
        [c] = await claim(backend, now)
        result = ExecutionResult(exit_code=0, output_tail=b"tail\x00bin", output_size=500)
        done = await finish(backend, c, result, clock.advance(2))
        assert (done.held, done.state, done.next_run_at) == (True, JobState.COMPLETED, None)
        a = await backend.get_job("a")
        assert (a.state, a.exit_code, a.last_error, a.worker_id) == (
            JobState.COMPLETED,
            0,
            None,
            None,
        )
        [attempt] = await backend.history("a")
        assert (attempt.outcome, attempt.finished_at, attempt.output_truncated) == (
            Outcome.COMPLETED,
            clock(),
            True,
        )
        out = await backend.attempt_output("a", None)
        assert (out.attempt, out.output, out.output_size, out.finished) == (
            1,
            b"tail\x00bin",
            500,
            True,
        )
        assert await backend.attempt_output("a", 2) is None

    async def test_failure_follows_the_backoff_stored_at_that_moment_then_dies(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        await backend.set_config({"backoff_base": "3", "backoff_max": "100"})
        now = clock()
        await backend.enqueue([job("f", now, max_retries=2)], now=now)
        [c] = await claim(backend, now)
        done = await finish(backend, c, FAIL, now)
        assert (done.state, done.next_run_at) == (JobState.FAILED, now + 3000)
        f = await backend.get_job("f")
        assert (f.state, f.next_run_at, f.last_error, f.exit_code) == (
            JobState.FAILED,
            now + 3000,
            "exit code 1",
            1,
        )
        assert await claim(backend, clock.advance(2.999)) == []
        [c2] = await claim(backend, clock.advance(0.001))
        assert (c2.token, c2.job.attempts) == (2, 2)
        # Changed by another terminal while the attempt ran: the retry uses it.
        other = await reopen(backend)
        await other.set_config({"backoff_base": "10"})
        await other.aclose()
        done = await finish(backend, c2, FAIL, clock())
        assert (done.state, done.next_run_at) == (JobState.FAILED, clock() + 100_000)
        [c3] = await claim(backend, clock.advance(100))
        done = await finish(backend, c3, FAIL, clock())
        assert (done.state, done.next_run_at) == (JobState.DEAD, None)
        assert [a.outcome for a in await backend.history("f")] == [Outcome.FAILED] * 3

    async def test_output_of_the_latest_or_a_given_attempt(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        now = clock()
        await backend.enqueue([job("j", now)], now=now)
        assert await backend.attempt_output("j", None) is None
        [c] = await claim(backend, now)
        failed = ExecutionResult(exit_code=1, output_tail=b"one", output_size=3)
        await finish(backend, c, failed, now)
        [c] = await claim(backend, clock.advance(10))
        running = await backend.attempt_output("j", None)
        assert (running.attempt, running.finished) == (2, False)
        last = ExecutionResult(exit_code=0, output_tail=b"\xff\xfetwo", output_size=900)
        await finish(backend, c, last, clock.advance(1))
        latest = await backend.attempt_output("j", None)
        first = await backend.attempt_output("j", 1)
        assert (latest.attempt, latest.output, latest.output_size) == (2, b"\xff\xfetwo", 900)
        assert (first.attempt, first.output, first.finished) == (1, b"one", True)
        assert await backend.attempt_output("j", 3) is None
        assert [a.output_truncated for a in await backend.history("j")] == [False, True]

    async def test_a_forced_stop_refunds_the_attempt_and_requeues_now(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        now = clock()
        await backend.enqueue([job("i", now, max_retries=0)], now=now)
        [c] = await claim(backend, now)
        done = await finish(backend, c, ExecutionResult(signal=15, interrupted=True), now)
        assert (done.state, done.next_run_at) == (JobState.PENDING, now)
        i = await backend.get_job("i")
        assert (i.state, i.attempts, i.claims) == (JobState.PENDING, 0, 1)
        assert [a.outcome for a in await backend.history("i")] == [Outcome.INTERRUPTED]
        [again] = await claim(backend, now)
        assert (again.token, again.job.attempts) == (2, 1)

    async def test_starts_are_recorded_also_in_the_same_batch_as_the_finish(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        now = clock()
        await backend.enqueue([job("a", now), job("b", now)], now=now)
        a, b = await claim(backend, now, n=2)
        start_a = ProcessStart("a", a.token, "hostA", 101, 101, "boot:1", "/spool/a")
        start_b = ProcessStart("b", b.token, "hostB", 202, 202, "boot:2", "/spool/b")
        await backend.exchange(worker_id="w1", starts=[start_a], now=now)
        await backend.exchange(
            worker_id="w1",
            starts=[start_b],
            finishes=[Finish("b", b.token, 1, 3, OK)],
            now=now,
        )
        [ha] = await backend.history("a")
        [hb] = await backend.history("b")
        assert (ha.host, ha.pid, hb.host, hb.pid, hb.outcome) == (
            "hostA",
            101,
            "hostB",
            202,
            Outcome.COMPLETED,
        )
        running = await backend.attempt_output("a", None)
        assert (running.log_path, running.host, running.finished) == ("/spool/a", "hostA", False)

    async def test_jobs_done_counts_the_workers_finishes(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        now = clock()
        await backend.register_worker(worker_info("w1", now), now=now)
        await backend.enqueue([job("a", now), job("b", now)], now=now)
        a, b = await claim(backend, now, n=2)
        await backend.exchange(
            worker_id="w1",
            finishes=[Finish("a", a.token, 1, 3, OK), Finish("b", b.token, 1, 3, FAIL)],
            now=now,
        )
        [w] = await backend.list_workers()
        assert w.jobs_done == 2


class TestFencing:
    async def test_only_the_holder_of_the_current_token_can_finish(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        now = clock()
        await backend.enqueue([job("a", now)], now=now)
        [c] = await claim(backend, now, lease_ms=1000)
        wrong_worker = await finish(backend, c, OK, now, worker="intruder")
        stale = Claim(c.job, c.token - 1, c.lease_until)
        wrong_token = await finish(backend, stale, OK, now)
        assert (wrong_worker.held, wrong_token.held) == (False, False)
        assert await state(backend, "a") == JobState.PROCESSING
        # The lease runs out and another worker takes the job over: the first
        # worker's late result must not touch the newer attempt.
        recovered = await backend.recover(now=clock.advance(1))
        assert [r.job_id for r in recovered] == ["a"]
        [c2] = await claim(backend, clock.advance(2), worker="w2")
        assert c2.token == c.token + 1
        taken_over = await backend.get_job("a")
        late = await finish(backend, c, OK, clock())
        assert late.held is False
        assert await backend.get_job("a") == taken_over
        # A stale heartbeat learns of the loss and extends nothing.
        beat = await backend.heartbeat(
            worker_id="w1", running=[("a", c.token)], lease_ms=60_000, now=clock()
        )
        assert beat.lost == frozenset({("a", c.token)})
        current = await backend.get_job("a")
        assert (current.state, current.worker_id, current.claims, current.lease_until) == (
            JobState.PROCESSING,
            "w2",
            2,
            c2.lease_until,
        )
        # A late start record of the old attempt lands on the old attempt only.
        await backend.exchange(
            worker_id="w2", starts=[ProcessStart("a", c2.token, "h", 222, 222, None)], now=clock()
        )
        await backend.exchange(
            worker_id="w1", starts=[ProcessStart("a", c.token, "h", 111, 111, None)], now=clock()
        )
        history = await backend.history("a")
        assert [(h.attempt, h.outcome, h.pid) for h in history] == [
            (1, Outcome.LOST, 111),
            (2, None, 222),
        ]
        assert (await finish(backend, c2, OK, clock(), worker="w2")).held


class TestLeases:
    async def test_heartbeats_keep_a_lease_and_report_lost_ones(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        now = clock()
        await backend.register_worker(worker_info("w1", now), now=now)
        await backend.enqueue([job("a", now)], now=now)
        [c] = await claim(backend, now, lease_ms=1000)
        for _ in range(3):
            beat = await backend.heartbeat(
                worker_id="w1",
                running=[("a", c.token), ("gone", 7)],
                lease_ms=1000,
                now=clock.advance(0.8),
            )
            assert beat.lost == frozenset({("gone", 7)})
            assert (beat.stop, beat.registered) == (StopMode.NONE, True)
            assert await backend.recover(now=clock()) == []
        [w] = await backend.list_workers()
        assert w.heartbeat_at == clock()
        assert await backend.recover(now=clock.advance(0.999)) == []
        [lost] = await backend.recover(now=clock.advance(0.001))
        assert lost.job_id == "a"

    async def test_expired_leases_fail_the_attempt_and_follow_the_retry_policy(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        now = clock()
        await backend.enqueue([job("r", now, max_retries=1), job("d", now, max_retries=0)], now=now)
        claims = await claim(backend, now, n=2, lease_ms=5000)
        await backend.exchange(
            worker_id="w1",
            starts=[ProcessStart(c.job.id, c.token, "h", 10, 10, "b:1") for c in claims],
            now=now,
        )
        assert await backend.recover(now=clock.advance(4.999)) == []
        seen: list[str] = []
        lost = await backend.recover(
            now=clock.advance(0.001), on_lost=lambda item: seen.append(item.job_id)
        )
        assert sorted(seen) == sorted(item.job_id for item in lost) == ["d", "r"]
        assert {(i.host, i.pgid, i.proc_start, i.worker_id, i.started_at) for i in lost} == {
            ("h", 10, "b:1", "w1", now)
        }
        r = await backend.get_job("r")
        assert (r.state, r.next_run_at, r.worker_id) == (JobState.FAILED, clock() + 2000, None)
        assert "worker lost" in r.last_error
        assert await state(backend, "d") == JobState.DEAD
        [attempt] = await backend.history("r")
        assert (attempt.outcome, attempt.finished_at) == (Outcome.LOST, clock())
        assert await backend.recover(now=clock.advance(60)) == []

    async def test_a_dead_worker_is_recovered_at_once_and_removed(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        now = clock()
        for w in ("dead", "alive"):
            await backend.register_worker(worker_info(w, now), now=now)
        await backend.enqueue([job("a", now), job("b", now)], now=now)
        await claim(backend, now, worker="dead")
        await claim(backend, now, worker="alive")
        lost = await backend.recover(now=now, dead_workers=["dead"])
        assert [(item.job_id, item.worker_id) for item in lost] == [("a", "dead")]
        assert [w.id for w in await backend.list_workers()] == ["alive"]
        assert await state(backend, "b") == JobState.PROCESSING
        beat = await backend.heartbeat(worker_id="dead", running=[], lease_ms=1000, now=now)
        assert beat.registered is False


class TestStrays:
    async def test_strays_on_a_host_are_handed_over_once(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        now = clock()
        await backend.enqueue([job(f"j{i}", now) for i in range(3)], now=now)
        c0, c1, c2 = await claim(backend, now, n=3, lease_ms=1000)
        starts = [
            ProcessStart("j0", c0.token, "far", 100, 100, "b:100"),
            ProcessStart("j1", c1.token, "far", 101, 101, "b:101"),
            ProcessStart("j2", c2.token, "near", 102, 102, "b:102"),
        ]
        await backend.exchange(worker_id="w1", starts=starts, now=now)
        # j0 finishes normally (its processes are its own business); j1 and j2 are
        # recovered here, where "far"'s processes cannot be reached.
        await finish(backend, c0, OK, now)
        seen: list[LostAttempt] = []
        assert await backend.release_strays(host="far", now=now, on_stray=seen.append) == []
        await backend.recover(now=clock.advance(1))
        [stray] = await backend.release_strays(host="far", now=clock(), on_stray=seen.append)
        assert seen == [stray]
        assert (stray.job_id, stray.token, stray.pgid, stray.proc_start, stray.host) == (
            "j1",
            1,
            101,
            "b:101",
            "far",
        )
        assert await backend.release_strays(host="far", now=clock(), on_stray=seen.append) == []
        assert len(seen) == 1

    async def test_a_running_attempt_is_not_a_stray(self, backend: Any, clock: FrozenClock) -> None:
        now = clock()
        await backend.enqueue([job("a", now)], now=now)
        [c] = await claim(backend, now, lease_ms=1000)
        start = ProcessStart("a", c.token, "h", 100, 100, "b:100")
        await backend.exchange(worker_id="w1", starts=[start], now=now)
        assert await backend.release_strays(host="h", now=now, on_stray=print) == []
        # Once its lease ran out (the worker is gone), its processes are strays.
        [stray] = await backend.release_strays(
            host="h", now=clock.advance(1), on_stray=lambda _: None
        )
        assert stray.job_id == "a"


class TestDeadLetters:
    async def test_retry_is_all_or_nothing(self, backend: Any, clock: FrozenClock) -> None:
        now = clock()
        await backend.enqueue(
            [job("d1", now, max_retries=0), job("d2", now, max_retries=0)], now=now
        )
        await backend.enqueue([job("p", now)], now=now)
        for c in await claim(backend, now, n=2):
            await finish(backend, c, FAIL, now)
        with pytest.raises(InvalidTransition, match="'p' is pending"):
            await backend.requeue_dead(["d1", "p"], now=now)
        with pytest.raises(JobNotFound, match="'nope'"):
            await backend.requeue_dead(["d1", "nope"], now=now)
        assert await state(backend, "d1") == JobState.DEAD
        later = clock.advance(5)
        assert await backend.requeue_dead(["d2"], now=later) == ["d2"]
        d2 = await backend.get_job("d2")
        assert (d2.state, d2.attempts, d2.next_run_at) == (JobState.PENDING, 0, later)
        [again] = await claim(backend, later)
        assert (again.job.id, again.job.attempts, again.token) == ("d2", 1, 2)
        assert await backend.requeue_dead(["d1", "d1"], now=later) == ["d1"]
        assert await backend.requeue_dead(None, now=later) == []
        assert (await backend.counts())[JobState.DEAD] == 0


class TestCountsAndProbe:
    async def test_counts_follow_every_transition(self, backend: Any, clock: FrozenClock) -> None:
        now = clock()
        await backend.enqueue(
            [job(f"a{i}", now, queue="a", max_retries=0) for i in range(5)]
            + [job(f"b{i}", now, queue="b") for i in range(3)],
            now=now,
        )
        claims = await claim(backend, now, n=4, queues=["a"], lease_ms=1000)
        await finish(backend, claims[0], OK, now)
        await finish(backend, claims[1], FAIL, now)
        await backend.recover(now=clock.advance(1))
        await backend.requeue_dead(None, now=clock())
        await claim(backend, clock(), n=1, queues=["b"])
        expected = Counter(j.state for j in await backend.list_jobs(limit=0))
        counts = await backend.counts()
        assert counts == {s: expected.get(s, 0) for s in JobState}
        assert counts == {
            JobState.PENDING: 6,
            JobState.PROCESSING: 1,
            JobState.COMPLETED: 1,
            JobState.FAILED: 0,
            JobState.DEAD: 0,
            JobState.CANCELLED: 0,
        }
        assert (await backend.counts(["b"]))[JobState.PROCESSING] == 1
        assert sum((await backend.counts(["nothing"])).values()) == 0

    async def test_probe_sees_busy_due_and_new_jobs(self, backend: Any, clock: FrozenClock) -> None:
        now = clock()
        empty = await backend.probe(queues=None, now=now)
        assert (empty.busy, empty.due) == (0, False)
        other = await reopen(backend)
        try:
            await other.enqueue([job("a", now), job("later", now, run_at=now + 5000)], now=now)
            after = await backend.probe(queues=None, now=now)
            assert (after.busy, after.due) == (0, True)
            assert after.version != empty.version
            assert (await backend.probe(queues=["x"], now=now)).due is False
            await claim(backend, now)
            busy = await backend.probe(queues=None, now=now)
            assert (busy.busy, busy.due) == (1, False)
            assert (await backend.probe(queues=None, now=clock.advance(5))).due is True
        finally:
            await other.aclose()


class TestWorkers:
    async def test_register_list_stop_and_deregister(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        now = clock()
        await backend.register_worker(
            WorkerInfo("w1", "h1", 11, now, now, count=3, jobs_done=0, queues=("a", "b")), now=now
        )
        await backend.register_worker(worker_info("w2", clock.advance(1), host="h2"), now=clock())
        listed = await backend.list_workers()
        assert [(w.id, w.host, w.pid, w.count, w.queues) for w in listed] == [
            ("w1", "h1", 11, 3, ("a", "b")),
            ("w2", "h2", 1, 2, ()),
        ]
        assert sorted(await backend.request_stop(StopMode.GRACEFUL)) == ["w1", "w2"]
        await backend.request_stop(StopMode.NOW)
        await backend.request_stop(StopMode.GRACEFUL)
        beat = await backend.heartbeat(worker_id="w1", running=[], lease_ms=1000, now=clock())
        assert beat.stop is StopMode.NOW
        await backend.deregister_worker("w1")
        assert [w.id for w in await backend.list_workers()] == ["w2"]

    async def test_config_round_trip(self, backend: Any) -> None:
        assert await backend.get_config() == {}
        await backend.set_config({"max_retries": "2", "lease": "4"})
        await backend.set_config({"max_retries": "5"})
        assert await backend.get_config() == {"max_retries": "5", "lease": "4"}


class TestMigrations:
    async def test_opening_twice_and_concurrently_is_harmless(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        now = clock()
        await backend.enqueue([job("kept", now)], now=now)
        others = await asyncio.gather(*(reopen(backend) for _ in range(4)))
        for other in others:
            assert (await other.get_job("kept")) is not None
            await other.aclose()


async def _newer_schema(backend: Any) -> None:
    if isinstance(backend, SqliteBackend):
        await backend._call(lambda c: c.execute("PRAGMA user_version = 999"))
    else:
        async with backend._conn() as conn:
            await conn.execute("INSERT INTO schema_version (version) VALUES (999)")


async def test_a_schema_newer_than_the_code_is_refused(backend: Any) -> None:
    await _newer_schema(backend)
    with pytest.raises(SchemaTooNew, match="999"):
        await reopen(backend)


CANCELLED_RUN = ExecutionResult(signal=15, cancelled=True)
RACERS = 24


async def _quietly(call: Any) -> Any:
    """Run one side of a race; a refusal (the other side won) is a result, not a failure."""
    try:
        return await call
    except (InvalidTransition, JobNotFound) as exc:
        return exc


async def _race(first: Any, second: Any) -> tuple[Any, Any]:
    """Start both at once on their own connections; each may go first."""
    a, b = await asyncio.gather(_quietly(first), _quietly(second))
    return a, b


async def _invariants(backend: Any, clock: FrozenClock, ids: list[str], worker: str) -> None:
    """Whatever the interleaving: one state per job, counts that match the rows, no
    command left running for a job its worker no longer holds, no cancelled job claimable."""
    from tests.helpers import db_counts

    target = backend.url if hasattr(backend, "url") else backend.target
    kept = {s.value: n for s, n in (await backend.counts()).items()}
    assert kept == db_counts(target)
    jobs = {i: await backend.get_job(i) for i in ids}
    running = [(i, j.claims) for i, j in jobs.items() if j is not None and j.claims]
    beat = await backend.heartbeat(worker_id=worker, running=running, lease_ms=60_000, now=clock())
    for job_id, token in running:
        held = jobs[job_id].state is JobState.PROCESSING and jobs[job_id].worker_id == worker
        assert ((job_id, token) in beat.lost) is not held, (job_id, jobs[job_id])
    for job_id, found in jobs.items():
        if found is not None and found.state is not JobState.PROCESSING:
            history = await backend.history(job_id)
            assert all(a.finished_at is not None for a in history), (job_id, history)
    cancelled = {i for i, j in jobs.items() if j is not None and j.state is JobState.CANCELLED}
    claimed = await claim(backend, clock.advance(7200), worker="later", n=RACERS * 2)
    assert not cancelled & {c.job.id for c in claimed}


class TestCancelRaces:
    """Cancel against a job's own end, a retry, a recovery and an rm (reference §16.1)."""

    async def _running(self, backend: Any, clock: FrozenClock, prefix: str) -> list[Claim]:
        now = clock()
        ids = [f"{prefix}{i}" for i in range(RACERS)]
        await backend.enqueue([job(i, now, max_retries=5) for i in ids], now=now)
        claims = await claim(backend, now, n=RACERS, lease_ms=60_000)
        assert len(claims) == RACERS
        return claims

    async def test_cancel_racing_the_jobs_own_end(self, backend: Any, clock: FrozenClock) -> None:
        other = await reopen(backend)
        try:
            claims = await self._running(backend, clock, "e")
            for i, c in enumerate(claims):
                result = OK if i % 2 else FAIL
                await _race(
                    other.cancel([c.job.id], now=clock()), finish(backend, c, result, clock())
                )
            for i, c in enumerate(claims):
                found = await backend.get_job(c.job.id)
                # A failure is never retried once a cancel was asked; a success stands.
                want = JobState.COMPLETED if i % 2 else JobState.CANCELLED
                assert found.state is want, (c.job.id, found)
                assert found.attempts == 1
            await _invariants(backend, clock, [c.job.id for c in claims], "w1")
        finally:
            await other.aclose()

    async def test_cancel_racing_a_recovery_never_retries(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        other = await reopen(backend)
        try:
            claims = await self._running(backend, clock, "r")
            clock.advance(61)  # every lease has run out
            for c in claims:
                await _race(
                    other.cancel([c.job.id], now=clock()),
                    backend.recover(now=clock(), dead_workers=[]),
                )
            await backend.recover(now=clock())
            for c in claims:
                found = await backend.get_job(c.job.id)
                assert (found.state, found.attempts) == (JobState.CANCELLED, 1), found
                [attempt] = await backend.history(c.job.id)
                assert attempt.outcome is Outcome.LOST
                # The lost worker's late result changes nothing.
                assert (await finish(backend, c, OK, clock())).held is False
            await _invariants(backend, clock, [c.job.id for c in claims], "w1")
        finally:
            await other.aclose()

    async def test_cancel_racing_a_retry_and_an_rm(self, backend: Any, clock: FrozenClock) -> None:
        other = await reopen(backend)
        try:
            claims = await self._running(backend, clock, "x")
            for i, c in enumerate(claims):
                # Some cancelled, some failed (awaiting a retry): cancel takes both.
                await finish(backend, c, CANCELLED_RUN if i % 3 else FAIL, clock())
            ids = [c.job.id for c in claims]
            outcomes: list[tuple[Any, Any]] = []
            for i, job_id in enumerate(ids):
                if i % 2:
                    outcomes.append(
                        await _race(
                            other.cancel([job_id], now=clock()),
                            backend.retry_jobs([job_id], now=clock()),
                        )
                    )
                else:
                    outcomes.append(
                        await _race(
                            other.cancel([job_id], now=clock()), backend.remove_jobs([job_id])
                        )
                    )
            for i, job_id in enumerate(ids):
                found = await backend.get_job(job_id)
                if i % 2:
                    # Both ran, in some order: cancelled last, or brought back last.
                    assert found.state in (JobState.CANCELLED, JobState.PENDING), found
                    assert found.cancel_requested_at is None
                else:
                    assert found is None  # rm always wins: nothing runs it
                    assert await backend.history(job_id) == []
            await _invariants(backend, clock, ids, "w1")
        finally:
            await other.aclose()

    async def test_cancel_and_rm_of_a_running_job_leave_one_state(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        other = await reopen(backend)
        try:
            claims = await self._running(backend, clock, "m")
            for c in claims:
                cancel, rm = await _race(
                    other.cancel([c.job.id], now=clock()), backend.remove_jobs([c.job.id])
                )
                assert isinstance(rm, InvalidTransition)  # running: cancel it first
                assert cancel.requested == [c.job.id]
            beat = await backend.heartbeat(
                worker_id="w1",
                running=[(c.job.id, c.token) for c in claims],
                lease_ms=60_000,
                now=clock(),
            )
            assert beat.cancel == {(c.job.id, c.token) for c in claims}
            assert beat.lost == frozenset()
            for c in claims:
                assert (await finish(backend, c, CANCELLED_RUN, clock())).state is (
                    JobState.CANCELLED
                )
            assert await backend.remove_jobs([c.job.id for c in claims]) == [
                c.job.id for c in claims
            ]
            await _invariants(backend, clock, [c.job.id for c in claims], "w1")
        finally:
            await other.aclose()


class TestFinishedCounters:
    """``queuectl_jobs_finished_total`` and ``queuectl_job_duration_seconds`` come from
    counters the store keeps in the transaction that finishes an attempt."""

    async def _finish_one_of_each(self, backend: Any, clock: FrozenClock) -> None:
        now = clock()
        await backend.enqueue(
            [
                job("ok", now, queue="mail"),
                job("retry", now, max_retries=1),
                job("dead", now, max_retries=0),
                job("stop", now),
                job("lost", now, max_retries=0),
            ],
            now=now,
        )
        claims = {c.job.id: c for c in await claim(backend, now, n=4, lease_ms=600_000)}
        [lost] = await claim(backend, now, worker="w2", lease_ms=5_000)
        assert set(claims) == {"ok", "retry", "dead", "stop"} and lost.job.id == "lost"
        assert (await finish(backend, claims["ok"], OK, clock.advance(0.007))).held
        assert (await finish(backend, claims["retry"], FAIL, clock.advance(0.293))).held
        assert (await finish(backend, claims["dead"], FAIL, clock.advance(1.7))).held
        # Lost at 5 s: the lease ran out, the reaper counts the attempt as lost.
        [gone] = await backend.recover(now=clock.advance(3.001))
        assert gone.job_id == "lost"
        stopped = ExecutionResult(interrupted=True)
        assert (await finish(backend, claims["stop"], stopped, clock.advance(65))).held
        # A finish whose fence no longer holds changes nothing, counters included.
        assert not (await finish(backend, claims["ok"], OK, clock())).held

    async def test_each_finished_attempt_counts_once_by_how_it_ended(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        empty = await backend.finished_totals()
        assert (empty.counts, empty.buckets, empty.sum_ms) == ({}, {}, {})
        await self._finish_one_of_each(backend, clock)
        totals = await backend.finished_totals()
        assert totals.counts == {
            "mail": {"completed": 1},
            "default": {"failed": 1, "dead": 1, "lost": 1, "interrupted": 1},
        }
        # 7 ms, 300 ms, 2 s, 5.001 s and 70.001 s, each in the smallest bucket that holds it.
        assert totals.buckets == {
            "mail": {10: 1},
            "default": {500: 1, 2_500: 1, 10_000: 1, 300_000: 1},
        }
        assert totals.sum_ms == {"mail": 7, "default": 300 + 2_000 + 5_001 + 70_001}

    async def test_the_counters_never_go_down(self, backend: Any, clock: FrozenClock) -> None:
        await self._finish_one_of_each(backend, clock)
        before = await backend.finished_totals()
        # Every job and attempt removed (as purge and rm do), the store reopened.
        await _delete_all_jobs(backend)
        await _compact_counters(backend)
        other = await reopen(backend)
        try:
            after = await other.finished_totals()
            assert (after.counts, after.buckets, after.sum_ms) == (
                before.counts,
                before.buckets,
                before.sum_ms,
            )
            now = clock.advance(1)
            await other.enqueue([job("again", now, queue="mail")], now=now)
            [c] = await claim(other, now)
            await finish(other, c, OK, clock.advance(0.02))
            assert (await other.finished_totals()).counts["mail"] == {"completed": 2}
            assert (await other.finished_totals()).buckets["mail"] == {10: 1, 25: 1}
        finally:
            await other.aclose()

    async def test_attempts_per_minute_feed_the_chart_and_old_minutes_are_dropped(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        start = clock()  # a whole minute
        await self._finish_one_of_each(backend, clock)
        found = sorted(await backend.finished_by_minute(start - 60_000))
        # The attempt's own outcome, in the minute it ended (the stop came at +70 s).
        assert found == [
            (start, Outcome.COMPLETED, 1),
            (start, Outcome.FAILED, 2),
            (start, Outcome.LOST, 1),
            (start + 60_000, Outcome.INTERRUPTED, 1),
        ]
        assert await backend.finished_by_minute(start + 60_000) == [
            (start + 60_000, Outcome.INTERRUPTED, 1)
        ]
        if isinstance(backend, SqliteBackend):
            # The reaper's sweep forgets minutes older than two hours.
            await backend.recover(now=clock.advance(2 * 3600 + 61))
        else:
            # Folding the delta rows drops minutes older than two hours (server clock).
            async with backend._conn() as conn:
                await conn.execute("UPDATE finished_minutes SET minute = 60000")
            await _compact_counters(backend)
        assert await backend.finished_by_minute(0) == []


async def _delete_all_jobs(backend: Any) -> None:
    if isinstance(backend, SqliteBackend):
        await backend._call(lambda c: c.executescript("DELETE FROM attempts; DELETE FROM jobs;"))
    else:
        async with backend._conn() as conn:
            await conn.execute("DELETE FROM attempts; DELETE FROM jobs")


async def _compact_counters(backend: Any) -> None:
    """PostgreSQL's reaper folds the counters' delta rows; the sums stay the same."""
    if isinstance(backend, SqliteBackend):
        return
    from queuectl.backends.bookkeeping import MINUTES_KEPT_MS
    from queuectl.backends.postgres import SQL

    compact = SQL["compact_counters"]
    async with backend._conn() as conn:
        await conn.execute(compact.text, *compact.args({"kept_ms": MINUTES_KEPT_MS}))
        rows = await conn.fetchval("SELECT count(*) FROM finished_counts")
    assert rows == 5  # one row per (queue, outcome)


class TestUnclaim:
    """A job claimed ahead and never started goes back as if it had never been claimed."""

    async def test_a_never_started_claim_goes_back_without_a_trace_and_in_order(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        from tests.helpers import db_counts

        now = clock()
        await backend.enqueue([job("a", now), job("b", now), job("c", now)], now=now)
        before = await backend.get_job("a")
        a, b = await claim(backend, now, n=2)
        assert [a.job.id, b.job.id] == ["a", "b"]
        later = clock.advance(5)
        assert await backend.unclaim(worker_id="w1", claims=[(a.job.id, a.token)], now=later) == [
            ("a", a.token)
        ]
        back = await backend.get_job("a")
        assert (back.state, back.attempts, back.claims, back.worker_id, back.lease_until) == (
            JobState.PENDING,
            before.attempts,
            before.claims,
            None,
            None,
        )
        assert back.next_run_at == later
        assert await backend.history("a") == []
        kept = {s.value: n for s, n in (await backend.counts()).items()}
        assert kept == db_counts(backend.url if hasattr(backend, "url") else backend.target)
        assert kept["pending"] == 2 and kept["processing"] == 1
        # It keeps its place: the next claim takes it before "c", and its token is 1 again.
        [again] = await claim(backend, later, worker="w2")
        assert (again.job.id, again.token, again.job.attempts) == ("a", 1, 1)
        assert (await finish(backend, again, OK, later, worker="w2")).held
        assert [(h.attempt, h.outcome) for h in await backend.history("a")] == [
            (1, Outcome.COMPLETED)
        ]

    async def test_only_the_holder_of_the_current_claim_can_unclaim(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        now = clock()
        await backend.enqueue([job("a", now)], now=now)
        [c] = await claim(backend, now)
        assert await backend.unclaim(worker_id="intruder", claims=[("a", c.token)], now=now) == []
        assert await backend.unclaim(worker_id="w1", claims=[("a", c.token + 1)], now=now) == []
        held = await backend.get_job("a")
        assert (held.state, held.worker_id, held.claims) == (JobState.PROCESSING, "w1", 1)
        # Lost to another worker: the first one's hand-back must not touch the new claim.
        await backend.recover(now=clock.advance(LEASE_MS + 1))
        [c2] = await claim(backend, clock.advance(3_600_000), worker="w2")
        assert c2.token == 2
        assert await backend.unclaim(worker_id="w1", claims=[("a", c.token)], now=clock()) == []
        current = await backend.get_job("a")
        assert (current.state, current.worker_id, current.claims) == (JobState.PROCESSING, "w2", 2)
        assert [h.attempt for h in await backend.history("a")] == [1, 2]

    async def test_a_started_finished_or_cancelled_claim_is_not_handed_back(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        now = clock()
        await backend.enqueue([job("s", now), job("f", now), job("x", now)], now=now)
        s, f, x = await claim(backend, now, n=3)
        await backend.exchange(
            worker_id="w1", starts=[ProcessStart("s", s.token, "h", 11, 11, None)], now=now
        )
        await finish(backend, f, OK, now)
        await backend.cancel(["x"], now=now)
        back = await backend.unclaim(
            worker_id="w1", claims=[("s", s.token), ("f", f.token), ("x", x.token)], now=now
        )
        assert back == []
        assert [await state(backend, i) for i in ("s", "f", "x")] == [
            JobState.PROCESSING,
            JobState.COMPLETED,
            JobState.PROCESSING,
        ]
        assert [len(await backend.history(i)) for i in ("s", "f", "x")] == [1, 1, 1]

    async def test_a_due_retry_handed_back_is_due_at_once(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        now = clock()
        await backend.enqueue([job("r", now, max_retries=3)], now=now)
        [first] = await claim(backend, now)
        failed = await finish(backend, first, FAIL, now)
        assert failed.state is JobState.FAILED
        due = clock.advance(failed.next_run_at - now + 1)
        [retry] = await claim(backend, due)
        assert (retry.token, retry.job.attempts) == (2, 2)
        assert await backend.unclaim(worker_id="w1", claims=[("r", 2)], now=due) == [("r", 2)]
        r = await backend.get_job("r")
        assert (r.state, r.attempts, r.claims, r.next_run_at) == (JobState.PENDING, 1, 1, due)
        assert [h.outcome for h in await backend.history("r")] == [Outcome.FAILED]
        [again] = await claim(backend, due)
        assert (again.token, again.job.attempts) == (2, 2)
