"""The shared poller and the keyset pages it feeds."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import pytest

import queuectl.queue as queue_module
from queuectl.exceptions import QueueCtlError
from queuectl.models import JobState
from queuectl.queue import Queue
from queuectl.web.live import Hub
from tests.helpers import WorkerProcess


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


async def _until(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_a_live_job_page_reads_the_store_when_the_poller_sees_a_change(
    queue: Queue, db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A follow hung on the shared poller: no store reads of its own on a timer (the
    terminal's follow reads twice every 0.1 s), and it still ends as soon as the
    poller sees the attempt finish, long before its own 30 s backstop."""
    go = tmp_path / "go"
    command = f"echo first; while [ ! -e {go} ]; do sleep 0.05; done; echo second"
    await queue.enqueue({"id": "slow", "command": command})
    reads = 0
    real = queue.backend.attempt_output

    async def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal reads
        reads += 1
        return await real(*args, **kwargs)

    monkeypatch.setattr(queue.backend, "attempt_output", counting)
    hub = Hub(queue, poll_s=0.1)
    with WorkerProcess(db, "--count", "1"):

        async def running() -> bool:
            return (await queue.get("slow")).state is JobState.PROCESSING

        await _until(running)
        async with hub.subscribe():
            chunks: list[bytes] = []
            follow = queue.follow("slow", poll_s=30.0, changed=hub.changes())
            chunks.append(await asyncio.wait_for(anext(follow), 10))
            reads_at_start = reads
            await asyncio.sleep(1.0)
            # One second of a live page: its follow read the spool file, not the store
            # (only a change the poller saw, e.g. a heartbeat, may cost one read).
            assert reads - reads_at_start <= 2, reads - reads_at_start
            go.touch()
            started = asyncio.get_running_loop().time()
            async for chunk in follow:
                chunks.append(chunk)
            assert asyncio.get_running_loop().time() - started < 10
        assert b"".join(chunks) == b"first\nsecond\n"


async def test_follow_reads_the_store_at_its_poll_interval(queue: Queue) -> None:
    await queue.enqueue({"id": "waits", "command": "true", "delay": 3600})
    reads = 0
    real = queue.backend.attempt_output

    async def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal reads
        reads += 1
        return await real(*args, **kwargs)

    queue.backend.attempt_output = counting  # type: ignore[method-assign]
    notices: list[str] = []
    follow = queue.follow("waits", notice=notices.append, poll_s=0.5)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(anext(follow), 1.2)
    # A job that has not started: read at once, then every 0.5 s (not every 0.1 s).
    assert 2 <= reads <= 4, reads
    assert notices == ["job waits is pending; waiting for it to start"]
    with pytest.raises(QueueCtlError, match="poll interval must be positive"):
        await anext(queue.follow("waits", poll_s=0))


def _pollers() -> list[asyncio.Task[object]]:
    return [
        t for t in asyncio.all_tasks() if t.get_name() == "queuectl-web-poller" and not t.done()
    ]


@pytest.mark.sqlite_only
async def test_a_page_opened_while_the_last_one_closes_leaves_one_poller(queue: Queue) -> None:
    """However a new page's stream interleaves with the last one's end, one poller runs
    while any page is open and none after (a leaked poller read the store for ever)."""
    hub = Hub(queue, poll_s=0.02)
    for steps in range(8):
        last = hub.subscribe()
        await last.__aenter__()
        await asyncio.sleep(0.03)
        closing = asyncio.create_task(last.__aexit__(None, None, None))
        for _ in range(steps):
            await asyncio.sleep(0)
        new = hub.subscribe()
        await new.__aenter__()
        await closing
        await asyncio.sleep(0.05)
        assert len(_pollers()) == 1, steps
        await new.__aexit__(None, None, None)
        await asyncio.sleep(0)
        assert _pollers() == [], steps


async def test_a_page_opened_after_every_page_closed_hears_the_snapshot_at_once(
    queue: Queue,
) -> None:
    """The page's script takes its first event as where it starts from; without one it
    would miss the first change (the poller only speaks when the snapshot changes)."""
    hub = Hub(queue, poll_s=0.05)
    async with hub.subscribe() as inbox:
        await asyncio.wait_for(inbox.get(), 5)
    assert not hub.running
    async with hub.subscribe() as inbox:
        first = json.loads(await asyncio.wait_for(inbox.get(), 5))
    assert first["jobs"]["pending"] == 0 and first["generation"] >= 1


async def test_a_schedules_page_has_the_poller_watch_schedules(queue: Queue) -> None:
    await queue.schedules.add("nightly", "0 3 * * *", {"command": "true"}, tz="UTC")
    hub = Hub(queue, poll_s=0.05)
    async with hub.subscribe() as plain:
        await asyncio.wait_for(plain.get(), 5)
        first = hub.generation
        await queue.schedules.pause("nightly")
        await asyncio.sleep(0.5)
        assert hub.generation == first  # nobody watches schedules: not read, no change
        async with hub.subscribe("schedules") as watching:
            # Watching starts: the schedules join what is compared (one new generation).
            while hub.generation == first:
                await asyncio.wait_for(watching.get(), 5)
            seen = hub.generation
            await asyncio.sleep(0.3)
            assert hub.generation == seen  # stable while nothing changes
            while not watching.empty():
                watching.get_nowait()
            await queue.schedules.resume("nightly")
            await asyncio.wait_for(watching.get(), 5)
            assert hub.generation > seen


async def test_a_queue_paused_or_limited_anywhere_is_a_new_generation(queue: Queue) -> None:
    """The overview and the queues page show pauses and limits: the poller compares them."""
    await queue.enqueue({"id": "m1", "command": "true", "queue": "mail"})
    hub = Hub(queue, poll_s=0.05)
    async with hub.subscribe() as inbox:
        await asyncio.wait_for(inbox.get(), 5)
        for change in (
            queue.pause_queues(["mail"]),
            queue.limit_queue("mail", 2),
            queue.pause_queues(all_queues=True),
            queue.resume_queues(all_queues=True),
        ):
            seen = hub.generation
            await change
            while hub.generation == seen:
                await asyncio.wait_for(inbox.get(), 5)
        assert hub.snapshot is not None and hub.snapshot.paused() == []
        await queue.pause_queues(["mail", "later"])
        while hub.snapshot.paused() != ["later", "mail"]:
            await asyncio.wait_for(inbox.get(), 5)
