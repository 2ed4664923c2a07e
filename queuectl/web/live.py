"""One poller for every open page: the store is read once a second, whoever watches.

Each page holds an event stream (``/events``). The ``Hub`` reads a small snapshot
(counts per queue and state, live workers, what is paused and limited) while at
least one stream is open, and when it changes it bumps a generation number and
tells every stream. Pages then fetch their live fragment again; fragments are
cached per generation, so twenty pages on the same view cost one render and one
set of store reads per change, not twenty.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from queuectl.exceptions import QueueCtlError
from queuectl.models import JobState, QueueSettings, WorkerInfo
from queuectl.queue import Queue

log = logging.getLogger(__name__)

#: Seconds between two reads of the snapshot while a page is open.
POLL_S = 1.0
#: Seconds between two store reads of a live job page's follow when the poller saw no
#: change: a backstop for a change the snapshot cannot show (a retried job that was
#: claimed again between two polls). Changes wake the follow at once.
FOLLOW_POLL_S = 2.0
#: The event that tells a page's stream to end (the server is stopping).
CLOSE = "close"
#: What a page may ask the poller to watch besides counts and workers (read only
#: while such a page is open): the schedules page watches the schedules.
WATCHES = frozenset({"schedules"})
#: Rendered fragments kept for the current generation.
_CACHE_SIZE = 64


@dataclass(frozen=True, slots=True)
class Snapshot:
    counts: dict[JobState, int]
    queues: dict[str, dict[JobState, int]]
    workers: list[WorkerInfo]
    #: What is paused and limited: the overview and the queues page show it.
    settings: QueueSettings

    @property
    def coroutines(self) -> int:
        return sum(w.count for w in self.workers)

    def key(self) -> object:
        """What a page can show of it; a change of any of this is a new generation."""
        return (
            tuple(sorted((q, tuple(c.values())) for q, c in self.queues.items())),
            tuple((w.id, w.heartbeat_at, w.jobs_done, w.count) for w in self.workers),
            self.settings.all_paused,
            tuple(sorted((q, s.paused, s.limit) for q, s in self.settings.queues.items())),
        )

    def paused(self) -> list[str]:
        """The queues held now, by name: with ``pause --all``, every queue it knows."""
        names = set(self.queues) | set(self.settings.queues)
        return sorted(q for q in names if self.settings.paused(q))


async def read_snapshot(queue: Queue) -> Snapshot:
    queues = await queue.queue_counts()
    counts = {s: sum(c[s] for c in queues.values()) for s in JobState}
    return Snapshot(counts, queues, await queue.live_workers(), await queue.queue_settings())


class Hub:
    def __init__(self, queue: Queue, *, poll_s: float = POLL_S) -> None:
        self.queue = queue
        self.poll_s = poll_s
        self.generation = 0
        self.snapshot: Snapshot | None = None
        self.error: str | None = None
        #: Store reads made by the poller (the benchmark and tests count them).
        self.reads = 0
        self._key: object = None
        self._subscribers: set[asyncio.Queue[str]] = set()
        #: Open streams per extra watch (``WATCHES``).
        self._watching: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._cache: OrderedDict[tuple[int, str], asyncio.Future[bytes]] = OrderedDict()
        #: Set when the server stops: every open stream ends, so none holds it up.
        self.closing = asyncio.Event()

    def close(self) -> None:
        self.closing.set()
        self._publish(CLOSE)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @contextlib.asynccontextmanager
    async def subscribe(self, watch: str | None = None) -> AsyncIterator[asyncio.Queue[str]]:
        """A stream's inbox of events; the poller runs while any inbox exists.

        ``watch`` (one of ``WATCHES``) adds what that page shows to what the poller
        reads and compares, while the stream is open.
        """
        inbox: asyncio.Queue[str] = asyncio.Queue(maxsize=1)
        self._subscribers.add(inbox)
        if watch is not None:
            self._watching[watch] = self._watching.get(watch, 0) + 1
        if not self.running:
            # A new poller speaks at its first read, changed or not: a page takes its
            # first event as where it starts from.
            self._key = None
            self._task = asyncio.create_task(self._poll(), name="queuectl-web-poller")
        elif self.snapshot is not None or self.error is not None:
            inbox.put_nowait(self.message())
        try:
            yield inbox
        finally:
            self._subscribers.discard(inbox)
            if watch is not None:
                self._watching[watch] -= 1
            if not self._subscribers:
                await self._stop_poller()

    async def _stop_poller(self) -> None:
        """Stop the poller; forgotten first, so a page that opens while it stops starts
        a new one (and this one's end cannot forget that new one: it would run for ever)."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def changes(self) -> Callable[[], bool]:
        """A test that says yes once each time the poller has seen the store move.

        ``Queue.follow`` takes it as ``changed``: a live job page re-reads its attempt
        when the shared poller saw a change, not on a timer of its own.
        """
        seen = self.generation

        def changed() -> bool:
            nonlocal seen
            if self.generation == seen:
                return False
            seen = self.generation
            return True

        return changed

    def message(self) -> str:
        """The event a page gets: the generation and the numbers it shows in place."""
        snap = self.snapshot
        body: dict[str, object] = {"generation": self.generation, "error": self.error}
        if snap is not None:
            body["jobs"] = {s.value: snap.counts[s] for s in JobState}
            body["workers"] = snap.coroutines
        return json.dumps(body)

    async def _poll(self) -> None:
        while True:
            snap: Snapshot | None
            extra: object = None
            try:
                snap = await read_snapshot(self.queue)
                self.reads += 1
                extra = await self._extra()
                error = None
            except QueueCtlError as exc:
                snap, error = self.snapshot, str(exc)
            except Exception as exc:  # the poller must outlive any one bad read
                log.warning("web poller: %s: %s", type(exc).__name__, exc)
                snap, error = self.snapshot, "the store could not be read"
            key = (snap.key() if snap is not None else None, extra, error)
            if key != self._key:
                self._key = key
                self.snapshot = snap
                self.error = error
                self.generation += 1
                self._publish(self.message())
            await asyncio.sleep(self.poll_s)

    async def _extra(self) -> object:
        """What the open pages watch beyond the snapshot; nothing is read unwatched."""
        if not self._watching.get("schedules"):
            return None
        self.reads += 1
        return tuple(
            (s.name, s.paused, s.next_fire_at, s.last_fire_at, s.skipped, s.updated_at)
            for s in await self.queue.schedules.list()
        )

    def _publish(self, event: str) -> None:
        for inbox in self._subscribers:
            if inbox.full():
                inbox.get_nowait()  # a slow page only needs the newest event
            inbox.put_nowait(event)

    def forget(self) -> None:
        """Drop the rendered fragments: a change was made here (an action), and the
        page that made it fetches its fragment at once, before the poller sees it."""
        self._cache.clear()

    async def cached(self, key: str, produce: Callable[[], Awaitable[bytes]]) -> bytes:
        """``produce()`` once per generation and key while the poller runs.

        Concurrent callers of one key share one call. Without a running poller
        nothing tells when data changes, so nothing is cached.
        """
        if not self.running or self.error is not None:
            return await produce()
        slot = (self.generation, key)
        future = self._cache.get(slot)
        if future is None:
            future = asyncio.ensure_future(produce())
            self._cache[slot] = future
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
            future.add_done_callback(lambda f: self._forget_failed(slot, f))
        return await asyncio.shield(future)

    def _forget_failed(self, slot: tuple[int, str], future: asyncio.Future[bytes]) -> None:
        if future.cancelled() or future.exception() is not None:
            self._cache.pop(slot, None)
