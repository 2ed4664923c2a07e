"""The JSON API (the shapes of ``status``, ``list``, ``show`` and ``logs --json``) and ``/metrics``.

The records come from ``queuectl.records``, the same functions the CLI prints
with, so a script can move between ``queuectl list --json`` and ``GET /api/jobs``.
One difference, on purpose: a job's environment values are replaced by
``(hidden)``, since a dashboard may be read by more people than the job's owner.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from queuectl.records import attempt_record, job_record, status_record
from queuectl.web import metrics
from queuectl.web.app import BadRequest, web_of
from queuectl.web.pages import parse_state
from queuectl.web.words import redact


def parse_limit(value: str | None) -> int:
    if value is None or value == "":
        return 50
    try:
        limit = int(value)
    except ValueError:
        raise BadRequest(f"limit must be a whole number >= 0, not {value!r}") from None
    if limit < 0:
        raise BadRequest(f"limit must be a whole number >= 0, not {value!r}")
    return limit


async def status(request: Request) -> Response:
    queue = web_of(request).queue
    result = await queue.status()
    return JSONResponse(status_record(result))


async def jobs(request: Request) -> Response:
    params = request.query_params
    state = parse_state(params.get("state"))
    limit = parse_limit(params.get("limit"))
    found = await web_of(request).queue.list_jobs(
        state=state, queue=params.get("queue") or None, limit=limit
    )
    return JSONResponse([redact(job_record(j)) for j in found])


async def job(request: Request) -> Response:
    job_id = request.path_params["job_id"]
    found, history = await web_of(request).queue.show(job_id)
    record: dict[str, Any] = dict(redact(job_record(found)))
    record["history"] = [attempt_record(a) for a in history]
    return JSONResponse(record)


async def output(request: Request) -> Response:
    """``logs --json``: one attempt's kept output (the latest without ``attempt``)."""
    job_id = request.path_params["job_id"]
    attempt = request.query_params.get("attempt")
    if attempt is not None and not attempt.isdigit():
        raise BadRequest(f"attempt must be a number from 1, not {attempt!r}")
    out = await web_of(request).queue.output(job_id, int(attempt) if attempt else None)
    return JSONResponse(
        {
            "id": job_id,
            "attempt": out.attempt,
            "output": out.output.decode("utf-8", "replace"),
            "output_size": out.output_size,
            "output_truncated": out.output_size > len(out.output),
            "finished": out.finished,
        }
    )


async def scrape(request: Request) -> Response:
    body, content_type = await metrics.exposition(web_of(request).queue)
    return Response(body, media_type=content_type)


def routes() -> list[Route]:
    return [
        Route("/api/status", status),
        Route("/api/jobs", jobs),
        Route("/api/jobs/{job_id:path}/output", output),
        Route("/api/jobs/{job_id:path}", job),
        Route("/metrics", scrape),
    ]
