"""The HTML pages: overview, jobs, one job, dead-letter queue, queues, workers, schedules,
streams.

Each page has one live fragment (``_*.html``) that ``static/app.js`` fetches again
when the poller's generation moves; the page and its fragment come from the same
context function, so they never disagree.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import functools
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from queuectl.exceptions import JobNotFound, QueueCtlError
from queuectl.models import JobState
from queuectl.queue import cut_notice
from queuectl.web import chart, words
from queuectl.web.app import BadRequest, web_of
from queuectl.web.live import CLOSE, FOLLOW_POLL_S, WATCHES, read_snapshot

#: Jobs per page of the jobs and dead-letter lists.
PAGE_SIZE = 50
#: Seconds between two keep-alive comments on an idle event stream.
KEEPALIVE_S = 15.0
_MAX_TEXT = 200


def parse_state(value: str | None) -> JobState | None:
    if not value:
        return None
    try:
        return JobState(value.lower())
    except ValueError:
        raise BadRequest(
            f"unknown state {value!r}; choose one of {', '.join(words.STATES)}"
        ) from None


def parse_cursor(value: str | None) -> int | None:
    """The keyset cursor of a page (``before``); any size is fine, it is clamped."""
    if not value:
        return None
    try:
        number = int(value)
    except ValueError:
        raise BadRequest(f"before must be a whole number, not {value!r}") from None
    return max(number, 0)


def parse_filters(request: Request) -> dict[str, Any]:
    params = request.query_params
    text = (params.get("q") or "").strip()
    if len(text) > _MAX_TEXT:
        raise BadRequest(f"the search text is too long (at most {_MAX_TEXT} characters)")
    return {
        "state": parse_state(params.get("state")),
        "queue": params.get("queue") or None,
        "text": text or None,
        "before": parse_cursor(params.get("before")),
    }


async def overview(request: Request) -> Response:
    web = web_of(request)

    async def context() -> dict[str, Any]:
        snap = await read_snapshot(web.queue)
        per_minute = await web.queue.finished_per_minute(60)
        bars = chart.split(per_minute)
        return {
            "counts": {s.value: snap.counts[s] for s in JobState},
            "queues": {q: {s.value: n for s, n in c.items()} for q, c in snap.queues.items()},
            "paused_queues": snap.paused(),
            "all_paused": snap.settings.all_paused,
            "paused_by_name": {q for q, s in snap.settings.queues.items() if s.paused},
            "workers": [words.worker_row(w, web.queue.clock()) for w in snap.workers],
            "workers_line": words.workers_line(snap.workers),
            "chart": chart.svg(per_minute),
            "hour_completed": sum(c for _, c, _ in bars),
            "hour_failed": sum(f for _, _, f in bars),
        }

    return await web.page(request, "overview.html", "_overview.html", context, title="Overview")


async def _job_list(request: Request, *, dead: bool) -> dict[str, Any]:
    web = web_of(request)
    filters = parse_filters(request)
    if dead:
        filters["state"] = JobState.DEAD
    page = await web.queue.jobs_page(limit=PAGE_SIZE, **filters)
    now = web.queue.clock()
    exact = None
    if filters["text"] and not any(j.id == filters["text"] for j in page.jobs):
        with contextlib.suppress(JobNotFound):
            exact = (await web.queue.get(filters["text"])).id
    return {
        "jobs": [words.job_row(j, now) for j in page.jobs],
        "next_before": page.next_before,
        "scanned": page.scanned,
        "filtered": bool(filters["queue"] or filters["text"]),
        "state": filters["state"].value if filters["state"] else "",
        "queue": filters["queue"] or "",
        "q": filters["text"] or "",
        "before": filters["before"],
        "exact": exact,
        "queue_names": list(await web.queue.queue_counts()),
        "columns": words.JOB_COLUMNS,
        "self_url": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
    }


async def jobs(request: Request) -> Response:
    web = web_of(request)
    parse_filters(request)  # a bad filter is a 400 before anything is read

    async def context() -> dict[str, Any]:
        return await _job_list(request, dead=False)

    return await web.page(request, "jobs.html", "_jobs.html", context, title="Jobs")


async def dlq(request: Request) -> Response:
    web = web_of(request)
    parse_filters(request)

    async def context() -> dict[str, Any]:
        return await _job_list(request, dead=True)

    return await web.page(request, "dlq.html", "_dlq.html", context, title="Dead letters")


async def job(request: Request) -> Response:
    web = web_of(request)
    job_id = request.path_params["job_id"]
    await web.queue.get(job_id)  # 404 before anything else

    async def context() -> dict[str, Any]:
        record, history = await web.queue.show(job_id)
        now = web.queue.clock()
        outputs = []
        for a in history:
            if a.finished_at is None:
                continue
            out = await web.queue.output(job_id, a.attempt)
            cut = cut_notice(out) if out.output_size > len(out.output) else None
            outputs.append((a.attempt, out.output.decode("utf-8", "replace"), cut))
        running = next((a.attempt for a in history if a.finished_at is None), None)
        # ``why`` for a job that waits: what holds it, as ``queuectl why`` says it.
        held = record.state in (JobState.PENDING, JobState.FAILED)
        reasons = (await web.queue.why(job_id)).reasons if held else []
        return {
            "job": words.job_row(record, now),
            "fields": words.job_fields(record, now),
            "links": words.link_fields(record, await web.queue.links(job_id)),
            "attempts": [words.attempt_row(a, now) for a in history],
            "columns": words.ATTEMPT_COLUMNS,
            "outputs": list(reversed(outputs)),
            "running": running,
            "dead": record.state is JobState.DEAD,
            "why": reasons,
        }

    return await web.page(request, "job.html", "_job.html", context, title=f"Job {job_id}")


async def queues(request: Request) -> Response:
    """``queue list``, with pause, resume and limit per queue and pause/resume all."""
    web = web_of(request)

    async def context() -> dict[str, Any]:
        found = await web.queue.queues()
        now = web.queue.clock()
        settings = await web.queue.queue_settings()
        return {
            "queues": [words.queue_row(info, now) for info in found],
            "columns": words.QUEUE_COLUMNS,
            "all_paused": settings.all_paused,
        }

    return await web.page(request, "queues.html", "_queues.html", context, title="Queues")


async def workers(request: Request) -> Response:
    web = web_of(request)

    async def context() -> dict[str, Any]:
        live = await web.queue.live_workers()
        now = web.queue.clock()
        return {
            "workers": [words.worker_row(w, now) for w in live],
            "workers_line": words.workers_line(live),
            "columns": words.WORKER_COLUMNS,
        }

    return await web.page(request, "workers.html", "_workers.html", context, title="Workers")


async def schedules(request: Request) -> Response:
    web = web_of(request)

    async def context() -> dict[str, Any]:
        found = await web.queue.schedules.list()
        now = web.queue.clock()
        return {
            "schedules": [words.schedule_row(s, now) for s in found],
            "columns": words.SCHEDULE_COLUMNS,
            "watch": "schedules",
        }

    return await web.page(request, "schedules.html", "_schedules.html", context, title="Schedules")


def _sse(data: str, event: str | None = None) -> str:
    head = f"event: {event}\n" if event else ""
    return head + "".join(f"data: {line}\n" for line in data.split("\n")) + "\n"


async def events(request: Request) -> Response:
    """The page's event stream: one message per poller generation, keep-alives between.

    ``?watch=schedules`` (the schedules page) has the poller watch the schedules too.
    """
    hub = web_of(request).hub
    watch = request.query_params.get("watch") or None
    if watch is not None and watch not in WATCHES:
        raise BadRequest(f"unknown watch {watch!r}; choose one of {', '.join(sorted(WATCHES))}")

    async def stream() -> AsyncIterator[str]:
        async with hub.subscribe(watch) as inbox:
            yield "retry: 2000\n\n"
            while True:
                try:
                    message = await asyncio.wait_for(inbox.get(), KEEPALIVE_S)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if message == CLOSE or hub.closing.is_set():
                    return
                yield _sse(message)

    return StreamingResponse(stream(), media_type="text/event-stream", headers=_STREAM_HEADERS)


async def output_stream(request: Request) -> Response:
    """A running attempt's output as ``logs --follow`` prints it, as text events.

    The follow runs as its own task feeding a queue, so a notice ("waiting for it
    to start") reaches the page at once, and a stopping server ends the stream
    however long the attempt still runs.
    """
    web = web_of(request)
    job_id = request.path_params["job_id"]
    await web.queue.get(job_id)
    attempt = request.query_params.get("attempt")
    number = int(attempt) if attempt and attempt.isdigit() else None
    events: asyncio.Queue[tuple[str, str]] = asyncio.Queue()

    async def follow() -> None:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        say = functools.partial(_put, events, "notice")
        # The shared poller runs while this stream is open and wakes the follow when
        # the store moves; between changes the follow reads the store every 2 s.
        async with web.hub.subscribe():
            try:
                async for chunk in web.queue.follow(
                    job_id, number, notice=say, poll_s=FOLLOW_POLL_S, changed=web.hub.changes()
                ):
                    events.put_nowait(("message", decoder.decode(chunk)))
                events.put_nowait(("message", decoder.decode(b"", final=True)))
            except QueueCtlError as exc:
                events.put_nowait(("notice", str(exc)))
        events.put_nowait(("end", "{}"))

    async def stream() -> AsyncIterator[str]:
        task = asyncio.create_task(follow())
        closing = asyncio.ensure_future(web.hub.closing.wait())
        try:
            while True:
                step = asyncio.ensure_future(events.get())
                await asyncio.wait({step, closing}, return_when=asyncio.FIRST_COMPLETED)
                if not step.done():
                    step.cancel()
                    return
                kind, text = step.result()
                if kind == "end":
                    yield _sse(text, "end")
                    return
                if text:
                    yield _sse(json.dumps(text), None if kind == "message" else kind)
        finally:
            closing.cancel()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return StreamingResponse(stream(), media_type="text/event-stream", headers=_STREAM_HEADERS)


def _put(events: asyncio.Queue[tuple[str, str]], kind: str, text: str) -> None:
    events.put_nowait((kind, text))


_STREAM_HEADERS = {"cache-control": "no-store", "x-accel-buffering": "no"}


def routes() -> list[Route]:
    return [
        Route("/", overview),
        Route("/jobs", jobs),
        Route("/jobs/{job_id:path}/stream", output_stream),
        Route("/jobs/{job_id:path}", job),
        Route("/dlq", dlq),
        Route("/queues", queues),
        Route("/workers", workers),
        Route("/schedules", schedules),
        Route("/events", events),
    ]
