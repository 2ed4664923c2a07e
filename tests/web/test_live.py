"""The shared poller and the keyset pages it feeds."""

from __future__ import annotations

import asyncio

import pytest

import queuectl.queue as queue_module
from queuectl.models import JobState
from queuectl.queue import Queue
from queuectl.web.live import Hub


async def test_twenty_pages_share_one_poller(queue: Queue) -> None:
    hub = Hub(queue, poll_s=0.1)
    async with contextlib_stack(hub, 20) as inboxes:
        first = await asyncio.wait_for(inboxes[0].get(), 5)
        assert '"generation": 1' in first
        await asyncio.sleep(1.0)
        reads = hub.reads
        # About ten polls in a second, whatever the number of pages (not 20 times 10).
        assert 5 <= reads <= 13, reads
        await queue.enqueue({"id": "new", "command": "true"})
        await asyncio.gather(*(asyncio.wait_for(until_pending(i), 5) for i in inboxes))
    assert not hub.running


async def test_fragments_are_rendered_once_per_generation(queue: Queue) -> None:
    hub = Hub(queue, poll_s=0.1)
    calls = 0

    async def produce() -> bytes:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return b"fragment"

    async with contextlib_stack(hub, 1) as inboxes:
        await inboxes[0].get()
        bodies = await asyncio.gather(*(hub.cached("/jobs?", produce) for _ in range(20)))
        assert bodies == [b"fragment"] * 20 and calls == 1
        await queue.enqueue({"id": "changed", "command": "true"})
        await asyncio.wait_for(inboxes[0].get(), 5)
        await hub.cached("/jobs?", produce)
        assert calls == 2


async def until_pending(inbox: asyncio.Queue[str]) -> None:
    """Every page hears of the new job (older events may come first)."""
    while '"pending": 1' not in await inbox.get():
        pass


def contextlib_stack(hub: Hub, n: int):  # type: ignore[no-untyped-def]
    import contextlib

    @contextlib.asynccontextmanager
    async def stack():  # type: ignore[no-untyped-def]
        async with contextlib.AsyncExitStack() as exits:
            yield [await exits.enter_async_context(hub.subscribe()) for _ in range(n)]

    return stack()


async def test_keyset_pages_walk_every_job_once(queue: Queue) -> None:
    await queue.enqueue(*({"id": f"j{i:03d}", "command": f"echo {i}"} for i in range(120)))
    seen: list[str] = []
    before = None
    while True:
        page = await queue.jobs_page(before=before, limit=50)
        seen.extend(j.id for j in page.jobs)
        if page.next_before is None:
            break
        before = page.next_before
    assert seen == [f"j{i:03d}" for i in reversed(range(120))]
    dead_page = await queue.jobs_page(state=JobState.DEAD)
    assert dead_page.jobs == [] and dead_page.next_before is None


async def test_a_search_looks_at_a_bounded_window(
    queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queue_module, "WEB_SCAN", 10)
    await queue.enqueue(
        *({"id": f"k{i:03d}", "command": "sleep 1" if i % 7 else "make test"} for i in range(40))
    )
    first = await queue.jobs_page(text="make")
    assert first.scanned == 10 and first.next_before is not None
    found: list[str] = []
    before = None
    while True:
        page = await queue.jobs_page(text="make", before=before)
        found.extend(j.id for j in page.jobs)
        if page.next_before is None:
            break
        before = page.next_before
    assert found == [f"k{i:03d}" for i in reversed(range(40)) if i % 7 == 0]
    by_id = await queue.jobs_page(text="k03")
    assert [j.id for j in by_id.jobs] == [f"k{i:03d}" for i in range(39, 29, -1)]
    huge = await queue.jobs_page(before=10**40)
    assert len(huge.jobs) == 40


async def test_finished_per_minute_fills_the_hour(queue: Queue) -> None:
    minutes = await queue.finished_per_minute(60)
    assert len(minutes) == 60
    assert all(counts == {} for _, counts in minutes)
    assert minutes[1][0] - minutes[0][0] == 60_000
