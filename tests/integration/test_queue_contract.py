"""Queue settings (pause, limit) as both stores keep them (reference §17).

Same fixtures and helpers as ``test_backend_contract``: every test runs on SQLite
and on PostgreSQL, with time pinned by ``FrozenClock``.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from queuectl.models import ALL_QUEUES, JobState
from tests.conftest import FrozenClock
from tests.integration.test_backend_contract import FAIL, OK, claim, finish, job, reopen


async def ids(backend: Any, now: int, **kw: Any) -> list[str]:
    return sorted(c.job.id for c in await claim(backend, now, **kw))


class TestPause:
    async def test_a_paused_queue_gives_no_job_until_resumed(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        now = clock()
        await backend.enqueue(
            [job("m1", now, queue="mail", priority=5), job("r1", now, queue="reports")], now=now
        )
        await backend.set_paused(["mail"], paused=True)
        assert (await backend.queue_settings()).paused("mail")
        result = await backend.exchange(worker_id="w", claim=5, now=now)
        assert [c.job.id for c in result.claims] == ["r1"]
        # Nothing the worker may take is waiting: no wake-up timer for the paused job.
        assert result.next_due_at is None
        assert (await backend.probe(queues=None, now=now)).due is False
        assert await ids(backend, now, n=5, queues=["mail"]) == []
        await backend.set_paused(["mail"], paused=False)
        assert await ids(backend, now, n=5) == ["m1"]
        # A queue exists while it has jobs or settings: the resumed one has no row left.
        assert (await backend.queue_settings()).queues == {}

    async def test_pause_all_holds_every_queue_also_new_ones_until_resume_all(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        now = clock()
        await backend.enqueue([job("a", now, queue="a")], now=now)
        await backend.set_paused(["b"], paused=True)
        await backend.set_paused([ALL_QUEUES], paused=True)
        await backend.enqueue([job("new", now, queue="brand-new")], now=now)
        assert await ids(backend, now, n=5) == []
        probe = await backend.probe(queues=None, now=now)
        assert (probe.busy, probe.due) == (0, False)
        # Resuming one queue by name leaves it held by --all.
        await backend.set_paused(["a"], paused=False)
        assert await ids(backend, now, n=5) == []
        settings = await backend.queue_settings()
        assert settings.all_paused and settings.paused("a") and settings.paused("b")
        await backend.resume_all()
        settings = await backend.queue_settings()
        assert not settings.all_paused and not settings.paused("b")
        assert settings.queues == {}
        assert await ids(backend, now, n=5) == ["a", "new"]

    async def test_burst_does_not_wait_for_a_paused_queues_jobs(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        now = clock()
        await backend.enqueue([job("r", now, queue="retrying"), job("p", now)], now=now)
        [c] = await claim(backend, now, queues=["retrying"])
        from queuectl.models import ExecutionResult

        await finish(backend, c, ExecutionResult(exit_code=1), now)
        assert (await backend.probe(queues=None, now=now)).busy == 1
        await backend.set_paused(["retrying", "default"], paused=True)
        probe = await backend.probe(queues=None, now=now)
        assert (probe.busy, probe.due) == (0, False)


class TestLimit:
    async def test_a_limit_caps_a_batch_and_other_queues_still_run(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        now = clock()
        await backend.enqueue(
            [job(f"e{i}", now, queue="emails", priority=9) for i in range(5)]
            + [job("o", now, queue="other")],
            now=now,
        )
        await backend.set_limit("emails", 2)
        assert (await backend.queue_settings()).limit("emails") == 2
        assert await ids(backend, now, n=6) == ["e0", "e1", "o"]
        # Full: another connection (another worker process) gets nothing of it.
        other = await reopen(backend)
        try:
            result = await other.exchange(worker_id="w2", claim=3, now=now)
            assert result.claims == []
            assert result.next_due_at is None
        finally:
            await other.aclose()

    async def test_a_finish_frees_a_slot_for_the_claim_in_the_same_exchange(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        now = clock()
        await backend.enqueue([job(f"e{i}", now, queue="emails") for i in range(3)], now=now)
        await backend.set_limit("emails", 1)
        [first] = await claim(backend, now)
        from queuectl.models import Finish

        result = await backend.exchange(
            worker_id="w1",
            finishes=[Finish(first.job.id, first.token, 1, first.job.max_retries, OK)],
            claim=1,
            now=now,
        )
        assert [c.job.id for c in result.claims] == ["e1"]

    async def test_lowering_kills_nothing_and_zero_removes_the_limit(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        now = clock()
        await backend.enqueue([job(f"e{i}", now) for i in range(4)], now=now)
        running = await claim(backend, now, n=2)
        await backend.set_limit("default", 1)
        assert (await backend.counts())[JobState.PROCESSING] == 2
        assert await ids(backend, now, n=2) == []
        await finish(backend, running[0], OK, now)
        assert await ids(backend, now, n=2) == []  # still one running: at the limit
        await finish(backend, running[1], OK, now)
        assert await ids(backend, now, n=2) == ["e2"]
        await backend.set_limit("default", None)
        assert (await backend.queue_settings()).queues == {}
        assert await ids(backend, now, n=2) == ["e3"]

    async def test_a_paused_queue_keeps_its_limit_and_the_limit_outlives_resume(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        await backend.set_limit("q", 3)
        await backend.set_paused(["q"], paused=True)
        await backend.set_limit("q", None)
        assert (await backend.queue_settings()).paused("q")
        await backend.set_limit("q", 2)
        await backend.set_paused(["q"], paused=False)
        setting = (await backend.queue_settings()).queues["q"]
        assert (setting.paused, setting.limit) == (False, 2)
        await backend.set_paused(["q"], paused=True)
        await backend.resume_all()
        assert (await backend.queue_settings()).queues["q"].limit == 2

    async def test_concurrent_claimers_on_many_connections_never_exceed_the_limit(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        now = clock()
        total, cap = 120, 3
        await backend.enqueue(
            [job(f"j{i:03d}", now, queue="capped") for i in range(total)], now=now
        )
        await backend.set_limit("capped", cap)
        stores = [backend] + [await reopen(backend) for _ in range(4)]
        running: set[str] = set()
        most = 0
        done = 0

        async def claimer(index: int) -> None:
            nonlocal most, done
            store = stores[index % len(stores)]
            rng = random.Random(index)
            idle = 0
            while done < total and idle < 400:
                got = await claim(store, now, worker=f"w{index}", n=rng.randint(1, 3))
                if not got:
                    idle += 1
                    await asyncio.sleep(0.001)
                    continue
                running.update(c.job.id for c in got)
                most = max(most, len(running))
                await asyncio.sleep(rng.random() / 200)
                for c in got:
                    running.discard(c.job.id)
                    assert (await finish(store, c, OK, now, worker=f"w{index}")).held
                    done += 1

        try:
            await asyncio.gather(*(claimer(i) for i in range(10)))
        finally:
            for store in stores[1:]:
                await store.aclose()
        assert done == total
        assert most <= cap


class TestClaimOrder:
    async def test_one_pending_queue_merges_with_due_retries_of_others_in_claim_order(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        # Only queue "a" has pending jobs (SQLite then seeks it directly, no walk over
        # queues); due retries of queue "b" still interleave by priority, then age.
        now = clock()
        await backend.enqueue([job("r3", now, queue="b", priority=3)], now=now)
        [retry] = await claim(backend, now)
        assert (await finish(backend, retry, FAIL, now)).state is JobState.FAILED
        now = clock.advance(3600)
        await backend.enqueue(
            [
                job("a0", now, queue="a"),
                job("a5", now, queue="a", priority=5),
                job("a0-later", now, queue="a"),
                job("a9-delayed", now, queue="a", priority=9, run_at=now + 60_000),
            ],
            now=now,
        )
        order = [c.job.id for c in await claim(backend, now, n=3, queues=["a"])]
        assert order == ["a5", "a0", "a0-later"]
        await backend.enqueue([job("a1", now + 1, queue="a", priority=1)], now=now + 1)
        await backend.enqueue([job("a0-last", now + 2, queue="a")], now=now + 2)
        order = [c.job.id for c in await claim(backend, now + 3, n=2)]
        assert order == ["r3", "a1"]
        assert [c.job.id for c in await claim(backend, now + 3, n=5)] == ["a0-last"]


class TestQueueReads:
    async def test_counts_per_queue_and_the_oldest_due_job(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        now = clock()
        await backend.enqueue(
            [
                job("a1", now, queue="a", next_run_at=now - 5000),
                job("a2", now, queue="a"),
                job("a3", now, queue="a", run_at=now + 60_000),
                job("b1", now, queue="b"),
            ],
            now=now,
        )
        await claim(backend, now, queues=["b"])
        counts = await backend.queue_counts()
        assert sorted(counts) == ["a", "b"]
        assert counts["a"][JobState.PENDING] == 3
        assert counts["b"][JobState.PROCESSING] == 1
        assert await backend.oldest_due("a", now=now) == now - 5000
        assert await backend.oldest_due("b", now=now) is None

    async def test_due_ahead_sees_jobs_claimed_first(
        self, backend: Any, clock: FrozenClock
    ) -> None:
        now = clock()
        await backend.enqueue(
            [
                job("old", now),
                job("me", now),
                job("low", now, priority=-1),
                job("high-paused", now, queue="p", priority=9),
            ],
            now=now,
        )
        await backend.set_paused(["p"], paused=True)
        assert await backend.due_ahead("me", queues=None, now=now) is True
        assert await backend.due_ahead("old", queues=None, now=now) is False
        assert await backend.due_ahead("me", queues=["elsewhere"], now=now) is False
        await claim(backend, now)  # takes "old"
        assert await backend.due_ahead("me", queues=None, now=now) is False
        assert await backend.due_ahead("low", queues=None, now=now) is True
