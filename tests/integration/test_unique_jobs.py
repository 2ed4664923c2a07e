"""Unique jobs (reference §4.2): the store enforces ``unique_key`` among waiting and running
jobs with a partial unique index; ``enqueue_new`` skips instead of refusing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from queuectl.exceptions import DuplicateJob
from queuectl.models import ExecutionResult, JobState
from tests.conftest import FrozenClock
from tests.integration.test_backend_contract import OK, claim, finish, job, reopen


async def test_a_held_key_refuses_the_whole_batch_naming_the_holder(
    backend: Any, clock: FrozenClock
) -> None:
    now = clock()
    await backend.enqueue([job("a", now, unique_key="k")], now=now)
    with pytest.raises(DuplicateJob) as caught:
        await backend.enqueue([job("b", now), job("c", now, unique_key="k")], now=now)
    assert (caught.value.position, caught.value.key, caught.value.holder) == (2, "k", "a")
    assert "held by job 'a' (pending)" in str(caught.value)
    assert await backend.get_job("b") is None


async def test_the_key_is_held_while_failed_or_processing_and_freed_when_finished(
    backend: Any, clock: FrozenClock
) -> None:
    now = clock()
    await backend.enqueue([job("a", now, unique_key="k", max_retries=1)], now=now)
    [c] = await claim(backend, now)
    with pytest.raises(DuplicateJob):
        await backend.enqueue([job("b", now, unique_key="k")], now=now)
    await finish(backend, c, ExecutionResult(exit_code=1), now)
    with pytest.raises(DuplicateJob):
        await backend.enqueue([job("b", now, unique_key="k")], now=now)
    [c] = await claim(backend, clock.advance(3600))
    await finish(backend, c, OK, clock())
    await backend.enqueue([job("b", clock(), unique_key="k")], now=clock())
    assert (await backend.get_job("b")).unique_key == "k"
    assert (await backend.get_job("a")).unique_key == "k"


async def test_concurrent_enqueues_of_one_key_let_exactly_one_in(
    backend: Any, clock: FrozenClock
) -> None:
    now = clock()
    stores = [backend] + [await reopen(backend) for _ in range(3)]

    async def attempt(i: int) -> bool:
        try:
            await stores[i % len(stores)].enqueue([job(f"j{i}", now, unique_key="once")], now=now)
        except DuplicateJob:
            return False
        return True

    try:
        won = await asyncio.gather(*(attempt(i) for i in range(12)))
    finally:
        for store in stores[1:]:
            await store.aclose()
    assert sum(won) == 1


async def test_enqueue_new_skips_taken_ids_and_held_keys(backend: Any, clock: FrozenClock) -> None:
    now = clock()
    await backend.enqueue([job("a", now, unique_key="k")], now=now)
    done = await backend.enqueue_new(
        [job("a", now), job("b", now, unique_key="k"), job("c", now, unique_key="m")], now=now
    )
    assert [j.id for j in done.jobs] == ["c"]
    assert done.skipped == [(1, "a"), (2, "a")]
    assert (await backend.get_job("c")).unique_key == "m"
    assert await backend.get_job("b") is None
    counts = await backend.counts()
    assert counts[JobState.PENDING] == 2  # a and c, counted once each
