"""``why JOB_ID``: what holds a job where it is, and the command that would move it.

Every reason is decided here, once, from a handful of indexed reads (the job by
its id, the queue settings, the per-queue counters, the live workers, the running
jobs, and one walk of the claim index that stops at the first due job ahead), so
it costs the same with ten jobs or ten million. The codes are reference §18's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from queuectl.backends import Backend
from queuectl.clock import to_iso
from queuectl.models import Job, JobState, QueueSettings, WorkerInfo


@dataclass(frozen=True, slots=True)
class Reason:
    code: str
    message: str
    #: The jobs the reason is about, for scripts (``why --json``'s ``jobs``): the
    #: unfinished dependencies of ``waiting_for``, the dependency of
    #: ``cancelled_by_dependency``; empty for the other codes.
    jobs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Why:
    job: Job
    reasons: list[Reason]


#: Finished states (``cancelled`` arrives with cancel, §16.1; its value is accepted here).
_FINISHED = {"completed", "dead", "cancelled"}


async def explain(backend: Backend, job: Job, *, workers: Sequence[WorkerInfo], now: int) -> Why:
    """The reasons for ``job`` (``workers``: the live ones), most decisive first."""
    state = job.state.value
    if state in _FINISHED:
        return Why(job, [_finished(job)])
    if job.state is JobState.PROCESSING:
        return Why(job, [await _running(backend, job, now)])
    reasons = _timing(job, now)
    reasons += await _dependencies(backend, job)
    settings = await backend.queue_settings()
    reasons += await _held(backend, job, settings)
    serving = [w for w in workers if not w.queues or job.queue in w.queues]
    if not workers:
        reasons.append(Reason("no_worker", "no worker is running: `queuectl worker start`"))
    elif not serving:
        served = ", ".join(sorted({q for w in workers for q in w.queues}))
        reasons.append(
            Reason(
                "no_worker_for_queue",
                f"no running worker serves queue {job.queue} (they serve: {served}): "
                f"`queuectl worker start --queue {job.queue}`",
            )
        )
    if not reasons:
        behind = await _behind(backend, job, serving, now)
        if behind is not None:
            reasons.append(behind)
    if not reasons:
        reasons.append(Reason("ready", "nothing holds it: the next free worker slot takes it"))
    return Why(job, reasons)


def _finished(job: Job) -> Reason:
    state = job.state.value
    if state == "completed":
        text = f"it completed (exit code 0) after {job.attempts} attempt(s)"
    elif state == "dead":
        text = (
            f"it is dead after {job.attempts} attempt(s): {job.last_error or 'failed'}; "
            f"`queuectl dlq retry {job.id}` runs it again"
        )
    elif job.cancelled_by is not None:
        return Reason(
            "cancelled_by_dependency",
            f"it was cancelled because its dependency {job.cancelled_by} did not complete;"
            f" `queuectl retry {job.cancelled_by}` brings both back",
            (job.cancelled_by,),
        )
    else:
        text = f"it was cancelled; `queuectl retry {job.id}` brings it back"
    return Reason("finished", text)


async def _running(backend: Backend, job: Job, now: int) -> Reason:
    history = await backend.history(job.id)
    current = history[-1] if history else None
    where = "a worker"
    since = ""
    if current is not None:
        where = f"worker {current.worker_id or '?'}"
        if current.host:
            where += f" on {current.host}"
        if current.pid:
            where += f" (pid {current.pid})"
        since = f" since {to_iso(current.started_at)} ({_span(now - current.started_at)})"
    return Reason(
        "running",
        f"attempt {job.attempts}/{job.max_retries + 1} runs on {where}{since}",
    )


def _timing(job: Job, now: int) -> list[Reason]:
    due = job.next_run_at
    if due is None or due <= now:
        return []
    when = f"{to_iso(due)}, in {_span(due - now)}"
    if job.state is JobState.FAILED:
        error = f": {job.last_error}" if job.last_error else ""
        return [
            Reason(
                "retry_backoff",
                f"attempt {job.attempts} failed{error}; the retry waits until {when}",
            )
        ]
    return [
        Reason(
            "due_later",
            f"it does not start before {when} (its run_at or delay): "
            f"`queuectl update {job.id} --now` starts it now",
        )
    ]


async def _dependencies(backend: Backend, job: Job) -> list[Reason]:
    """``waiting_for`` (reference §19.1): the dependencies it still waits on, and what
    would move each."""
    if not job.waiting:
        return []
    links = await backend.dependencies(job.id)
    open_ = [link for link in links.after if not link.met]
    if not open_:
        return []
    ids = ", ".join(link.id for link in open_)
    states = "; ".join(
        f"{link.id} is {link.state.value if link.state else 'removed'}" for link in open_
    )
    end = "completed" if job.after_mode == "completed" else "finished"
    first = open_[0].id
    return [
        Reason(
            "waiting_for",
            f"it waits until {ids} {'has' if len(open_) == 1 else 'have'} {end} ({states}):"
            f" `queuectl why {first}` says what holds {first}",
            tuple(link.id for link in open_),
        )
    ]


async def _held(backend: Backend, job: Job, settings: QueueSettings) -> list[Reason]:
    reasons: list[Reason] = []
    if settings.all_paused:
        reasons.append(Reason("all_paused", "every queue is paused: `queuectl queue resume --all`"))
    setting = settings.queues.get(job.queue)
    if setting is not None and setting.paused:
        reasons.append(
            Reason(
                "queue_paused",
                f"queue {job.queue} is paused: `queuectl queue resume {job.queue}`",
            )
        )
    if setting is not None and setting.limit is not None:
        running = (await backend.counts([job.queue]))[JobState.PROCESSING]
        if running >= setting.limit:
            reasons.append(
                Reason(
                    "queue_limit",
                    f"queue {job.queue} runs {running} job(s), its limit is {setting.limit}: "
                    f"`queuectl queue limit {job.queue} N` raises it",
                )
            )
    return reasons


async def _behind(
    backend: Backend, job: Job, serving: Sequence[WorkerInfo], now: int
) -> Reason | None:
    """``behind``: every slot that serves the queue is busy, and due jobs come first."""
    if not serving:
        return None
    slots = sum(w.count for w in serving)
    ids = {w.id for w in serving}
    busy = sum(1 for r in await backend.running_jobs(limit=slots + 1) if r.worker_id in ids)
    if busy < slots:
        return None
    queues: list[str] | None = sorted({q for w in serving for q in w.queues})
    if any(not w.queues for w in serving):
        queues = None
    if not await backend.due_ahead(job.id, queues=queues, now=now):
        return None
    return Reason(
        "behind",
        f"all {slots} worker slot(s) serving queue {job.queue} are busy, and due jobs of a "
        "higher priority (or as high and older) come first: "
        "`queuectl worker start` adds slots",
    )


def _span(ms: int) -> str:
    """``45s``, ``4m58s``, ``2h10m``, ``3d04h``: a wait as a person says it."""
    s = max(ms, 0) // 1000
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"
