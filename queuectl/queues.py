"""Operating named queues: list them, pause and resume them, cap how many of their jobs run.

The decisions live here, once, above both stores: which names are valid, what
``resume`` of a queue that does not exist means, what ``--all`` does to a queue
paused by name. The stores only keep the settings (``QueueControl``) and obey
them in their claim statement.

``Queue`` (``queue.py``) exposes these as methods; the CLI and the web dashboard
call those.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from queuectl.backends import Backend
from queuectl.clock import Clock
from queuectl.exceptions import QueueCtlError
from queuectl.jobspec import validate_queue
from queuectl.models import ALL_QUEUES, Job, JobState

if TYPE_CHECKING:
    from queuectl.models import QueueSettings, WorkerInfo
    from queuectl.why import Why


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """One row of ``queue list``: a queue exists while it has jobs or settings."""

    name: str
    #: Paused by name (``queue pause NAME``).
    paused_by_name: bool
    #: Held by ``queue pause --all``.
    paused_by_all: bool
    limit: int | None
    counts: dict[JobState, int]
    #: When its longest-waiting due job (pending, or failed and due for its retry)
    #: became due (epoch ms), or ``None``.
    oldest_due_at: int | None

    @property
    def paused(self) -> bool:
        return self.paused_by_name or self.paused_by_all


@dataclass(frozen=True, slots=True)
class Resumed:
    """What ``resume`` did: the queues it resumed, and those ``pause --all`` still holds."""

    resumed: list[str]
    still_held: list[str]
    #: Named queues that were not paused (nothing to do).
    not_paused: list[str]


def queue_names(names: Sequence[str]) -> list[str]:
    """Validate names as ``enqueue`` does; one bad name is an error naming it."""
    checked: list[str] = []
    for name in names:
        try:
            checked.append(validate_queue(name))
        except ValueError as exc:
            raise QueueCtlError(f"queue name {name!r} {exc}") from None
    return list(dict.fromkeys(checked))


async def list_queues(backend: Backend, *, now: int) -> list[QueueInfo]:
    """Every queue with jobs or settings, by name; reads counters and one seek per queue."""
    settings = await backend.queue_settings()
    counts = await backend.queue_counts()
    # A queue exists while it has jobs or settings: the counters keep a queue that
    # had jobs, at zero.
    names = sorted({q for q, c in counts.items() if any(c.values())} | set(settings.queues))
    infos: list[QueueInfo] = []
    for name in names:
        setting = settings.queues.get(name)
        found = counts.get(name, dict.fromkeys(JobState, 0))
        waiting = found[JobState.PENDING] + found[JobState.FAILED]
        oldest = await backend.oldest_due(name, now=now) if waiting else None
        infos.append(
            QueueInfo(
                name=name,
                paused_by_name=setting is not None and setting.paused,
                paused_by_all=settings.all_paused,
                limit=None if setting is None else setting.limit,
                counts=found,
                oldest_due_at=oldest,
            )
        )
    return infos


async def pause(backend: Backend, names: Sequence[str], *, all_queues: bool) -> None:
    """Pause the named queues (they need not exist yet), or every queue with ``all_queues``."""
    targets = [ALL_QUEUES] if all_queues else queue_names(names)
    if not targets:
        raise QueueCtlError("name at least one queue, or use --all")
    # In name order: the claims lock limited queues' rows in that order too.
    await backend.set_paused(sorted(targets), paused=True)


async def resume(backend: Backend, names: Sequence[str], *, all_queues: bool) -> Resumed:
    """Resume the named queues, or everything (``--all`` and every queue's own pause).

    A name that is no queue at all (no jobs, no settings) is an error naming it and
    nothing is changed: a typo must not look like a resumed queue. A queue that is
    not paused is left as it is. Under ``pause --all`` a named queue loses its own
    pause but stays held until ``resume --all``.
    """
    if all_queues:
        settings = await backend.queue_settings()
        paused = sorted(q for q, s in settings.queues.items() if s.paused)
        await backend.resume_all()
        return Resumed(resumed=paused, still_held=[], not_paused=[])
    targets = queue_names(names)
    if not targets:
        raise QueueCtlError("name at least one queue, or use --all")
    settings = await backend.queue_settings()
    counts = await backend.queue_counts()
    for name in targets:
        if name not in settings.queues and not any(counts.get(name, {}).values()):
            raise QueueCtlError(f"no queue named {name!r} (it has no jobs and no settings)")
    paused = [q for q in targets if settings.queues.get(q) and settings.queues[q].paused]
    await backend.set_paused(sorted(paused), paused=False)
    held = targets if settings.all_paused else []
    return Resumed(
        resumed=paused, still_held=held, not_paused=[q for q in targets if q not in paused]
    )


async def set_limit(backend: Backend, name: str, n: int) -> int | None:
    """Cap ``name`` at ``n`` processing jobs; ``0`` removes the cap. Returns the new cap."""
    [queue] = queue_names([name])
    if n < 0:
        raise QueueCtlError(f"a limit must be 0 (none) or more, not {n}")
    cap = n or None
    await backend.set_limit(queue, cap)
    return cap


class QueueSettingsOperations:
    """``Queue``'s methods for operating queues and explaining jobs (mixed into it), for
    the CLI and the web dashboard alike. ``Queue`` provides ``backend``, ``clock`` and
    ``get`` and ``live_workers``."""

    backend: Backend
    clock: Clock

    async def get(self, job_id: str) -> Job:
        raise NotImplementedError

    async def live_workers(self) -> list[WorkerInfo]:
        raise NotImplementedError

    async def queues(self) -> list[QueueInfo]:
        """``queue list``: every queue with jobs or settings, by name."""
        return await list_queues(self.backend, now=self.clock())

    async def queue_settings(self) -> QueueSettings:
        """What is paused and limited (``status`` shows it)."""
        return await self.backend.queue_settings()

    async def pause_queues(self, names: Sequence[str] = (), *, all_queues: bool = False) -> None:
        """No worker claims a new job of these queues (``all_queues``: of any queue, also
        of queues that appear later) until they are resumed; running jobs finish."""
        await pause(self.backend, names, all_queues=all_queues)

    async def resume_queues(
        self, names: Sequence[str] = (), *, all_queues: bool = False
    ) -> Resumed:
        """Lift pauses (``all_queues``: every pause, ``--all`` included) and wake workers."""
        done = await resume(self.backend, names, all_queues=all_queues)
        await self.backend.notify(b"j")
        return done

    async def limit_queue(self, name: str, limit: int) -> int | None:
        """At most ``limit`` jobs of ``name`` processing at once, everywhere; 0 removes it.

        Lowering it kills nothing: new claims wait until fewer run.
        """
        cap = await set_limit(self.backend, name, limit)
        await self.backend.notify(b"j")
        return cap

    async def why(self, job_id: str) -> Why:
        """Why the job is where it is, and what would move it (reference §18's codes)."""
        from queuectl.why import explain

        job = await self.get(job_id)
        workers = await self.live_workers()
        return await explain(self.backend, job, workers=workers, now=self.clock())
