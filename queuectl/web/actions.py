"""The dashboard's actions: ``POST /actions/{name}``, each one ``Queue`` call.

An action is a function from the form to ``(ids, message)`` registered in
``ACTIONS``; ``perform`` does the rest for all of them: it logs one line (action,
ids, client address), then redirects a browser back to where it came from with
the message (or the error: a stale action changes nothing and says why), or
answers a script with JSON. The gate (``security``) has already refused
cross-site and read-only POSTs. cancel, retry, rm, queue pause/resume/limit and
schedule actions register here the same way once the queue has them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from queuectl.exceptions import QueueCtlError
from queuectl.models import JobState
from queuectl.queue import Queue
from queuectl.web.app import BadRequest, flash_cookie, status_of, web_of

log = logging.getLogger("queuectl.web")

Form = list[tuple[str, str]]
Action = Callable[[Queue, Form], Awaitable[tuple[list[str], str]]]
#: Ids per ``dlq retry`` call when retrying every dead job of a filter.
_RETRY_CHUNK = 500


def _ids(form: Form) -> list[str]:
    ids = [v for k, v in form if k == "id" and v]
    if not ids:
        raise BadRequest("no job named: give at least one id")
    return ids


def _field(form: Form, name: str) -> str | None:
    return next((v for k, v in form if k == name and v), None)


async def retry_dead(queue: Queue, form: Form) -> tuple[list[str], str]:
    """``dlq retry ID...``: all or nothing."""
    done = await queue.retry_dead(_ids(form))
    return done, f"{len(done)} job(s) moved back to pending."


async def retry_dead_matching(queue: Queue, form: Form) -> tuple[list[str], str]:
    """Every dead job of the DLQ page's filter (``dlq retry --all`` when there is none)."""
    queue_name, text = _field(form, "queue"), _field(form, "q")
    if queue_name is None and text is None:
        done = await queue.retry_dead(None)
        return done, f"{len(done)} job(s) moved back to pending."
    found: list[str] = []
    before = None
    while True:
        page = await queue.jobs_page(
            state=JobState.DEAD, queue=queue_name, text=text, before=before, limit=1000
        )
        found.extend(j.id for j in page.jobs)
        if page.next_before is None:
            break
        before = page.next_before
    done = []
    for start in range(0, len(found), _RETRY_CHUNK):
        done.extend(await queue.retry_dead(found[start : start + _RETRY_CHUNK]))
    return done, f"{len(done)} job(s) moved back to pending."


ACTIONS: dict[str, Action] = {
    "retry-dead": retry_dead,
    "retry-dead-matching": retry_dead_matching,
}


def _back(form: Form) -> str:
    """Where to send the browser afterwards: a path of this site only."""
    target = _field(form, "next") or "/"
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _client(request: Request) -> str:
    return request.client.host if request.client else "-"


async def perform(request: Request) -> Response:
    name = request.path_params["name"]
    action = ACTIONS.get(name)
    if action is None:
        raise BadRequest(f"unknown action {name!r}")
    body = (await request.body()).decode("utf-8", "replace")
    form = parse_qsl(body, keep_blank_values=True)
    wants_json = "application/json" in request.headers.get("accept", "")
    web = web_of(request)
    try:
        ids, message = await action(web.queue, form)
    except QueueCtlError as exc:
        log.info("web action %s refused: %s (client %s)", name, exc, _client(request))
        if wants_json:
            return JSONResponse({"error": str(exc)}, status_code=status_of(exc))
        response: Response = RedirectResponse(_back(form), status_code=303)
        flash_cookie(response, f"Error: {exc}; nothing was changed.")
        return response
    log.info("web action %s: %s (client %s)", name, ",".join(ids) or "-", _client(request))
    if wants_json:
        return JSONResponse({"action": name, "ids": ids, "message": message})
    response = RedirectResponse(_back(form), status_code=303)
    flash_cookie(response, message)
    return response


def routes() -> list[Route]:
    return [Route("/actions/{name}", perform, methods=["POST"])]
