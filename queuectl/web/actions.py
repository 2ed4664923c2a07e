"""The dashboard's actions: ``POST /actions/{name}``, each one ``Queue`` call.

An action is a function from the form to ``(ids, message)`` registered in
``ACTIONS``; ``perform`` does the rest for all of them: it logs one line (action,
ids, client address), then redirects a browser back to where it came from with
the message (or the error: a stale action changes nothing and says why), or
answers a script with JSON. The gate (``security``) has already refused
cross-site and read-only POSTs.

A job action may carry, per id, the state the page showed (``state``): when the
job has moved on since (a stale page), nothing is done and the message says so
(409 for a script). The store still decides each change itself, in one
transaction, so the check only adds a clear word before the store's own rules.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from queuectl.clock import to_iso
from queuectl.exceptions import InvalidTransition, QueueCtlError
from queuectl.models import JobState
from queuectl.queue import Queue
from queuectl.web.app import BadRequest, flash_cookie, status_of, web_of

log = logging.getLogger("queuectl.web")

Form = list[tuple[str, str]]
Action = Callable[[Queue, Form], Awaitable[tuple[list[str], str]]]
#: Ids per ``dlq retry`` call when retrying every dead job of a filter.
_RETRY_CHUNK = 500
#: Seconds a cancel of a running job waits for its worker to confirm; the live
#: page shows the end when it comes later.
CANCEL_WAIT_S = 2.0


def _ids(form: Form) -> list[str]:
    ids = [v for k, v in form if k == "id" and v]
    if not ids:
        raise BadRequest("no job named: give at least one id")
    return ids


def _field(form: Form, name: str) -> str | None:
    return next((v for k, v in form if k == name and v), None)


async def _fresh_ids(queue: Queue, form: Form) -> list[str]:
    """The named ids, refused (nothing done) if one is no longer in the state shown."""
    ids = _ids(form)
    shown = [v for k, v in form if k == "state"]
    if shown and len(shown) != len(ids):
        raise BadRequest("give one state per id, or none")
    for job_id, state in zip(ids, shown, strict=False):
        now = (await queue.get(job_id)).state.value
        if now != state:
            raise InvalidTransition(
                f"job {job_id!r} is {now} now, not {state} as the page showed;"
                " look again before acting"
            )
    return ids


def _name(form: Form) -> str:
    name = _field(form, "name")
    if name is None:
        raise BadRequest("no schedule named: give its name")
    return name


async def cancel(queue: Queue, form: Form) -> tuple[list[str], str]:
    """``cancel ID...``: waiting jobs at once; running ones once their worker confirms.

    The request is written at once (``request_cancel`` inside ``Queue.cancel``); the
    answer waits at most ``CANCEL_WAIT_S`` for the worker, and the live page shows
    the end if it comes later.
    """
    ids = await _fresh_ids(queue, form)
    report = await queue.cancel(ids, wait_s=CANCEL_WAIT_S)
    parts = [f"{len(report.cancelled)} job(s) cancelled."]
    if report.running:
        parts.append(
            f"Still stopping: {', '.join(report.running)} (the cancel stays requested;"
            " this page shows when it ends)."
        )
    parts.extend(
        f"Job {job_id!r} was {state.value} before the cancel reached it."
        for job_id, state in report.not_cancelled.items()
    )
    return ids, " ".join(parts)


async def retry(queue: Queue, form: Form) -> tuple[list[str], str]:
    """``retry ID...``: dead and cancelled jobs start over, failed ones run now."""
    plan = await queue.retry(await _fresh_ids(queue, form))
    return plan.ids, f"{len(plan.ids)} job(s) moved back to pending."


async def remove(queue: Queue, form: Form) -> tuple[list[str], str]:
    """``rm ID...``: jobs with their attempts and output; a running job is refused."""
    done = await queue.remove(await _fresh_ids(queue, form))
    return done, f"{len(done)} job(s) removed."


async def schedule_pause(queue: Queue, form: Form) -> tuple[list[str], str]:
    name = _name(form)
    await queue.schedules.pause(name)
    return [name], f"paused schedule {name}"


async def schedule_resume(queue: Queue, form: Form) -> tuple[list[str], str]:
    name = _name(form)
    await queue.schedules.resume(name)
    resumed = await queue.schedules.get(name)
    return [
        name
    ], f"resumed schedule {name}; next fire at {to_iso(resumed.next_fire_at) or 'never'}"


async def schedule_run(queue: Queue, form: Form) -> tuple[list[str], str]:
    name = _name(form)
    job_id = await queue.schedules.run(name)
    return [name, job_id], f"schedule {name} made job {job_id}"


def _queue_names(form: Form) -> list[str]:
    names = [v for k, v in form if k == "queue" and v]
    if not names:
        raise BadRequest("no queue named: give at least one queue")
    return names


async def queue_pause(queue: Queue, form: Form) -> tuple[list[str], str]:
    """``queue pause QUEUE...``: no worker claims their new jobs; running ones finish."""
    names = _queue_names(form)
    await queue.pause_queues(names)
    return names, "; ".join(f"paused {n}" for n in dict.fromkeys(names))


async def queue_resume(queue: Queue, form: Form) -> tuple[list[str], str]:
    """``queue resume QUEUE...``: an unknown queue is an error and nothing changes."""
    names = _queue_names(form)
    done = await queue.resume_queues(names)
    parts = [f"resumed {n}" for n in done.resumed]
    parts += [f"{n} was not paused" for n in done.not_paused if n not in done.still_held]
    parts += [f"{n} stays paused by pause all (resume all lifts it)" for n in done.still_held]
    return names, "; ".join(parts)


async def queue_limit(queue: Queue, form: Form) -> tuple[list[str], str]:
    """``queue limit QUEUE N``: 0 removes the limit; the library refuses a negative one."""
    name = _queue_names(form)[0]
    text = (_field(form, "limit") or "").strip()
    try:
        number = int(text)
    except ValueError:
        raise BadRequest(f"a limit must be a whole number, not {text!r}") from None
    cap = await queue.limit_queue(name, number)
    return [name], f"{name}: at most {cap} running" if cap else f"{name}: no limit"


async def queue_pause_all(queue: Queue, form: Form) -> tuple[list[str], str]:
    """``queue pause --all``: every queue, also ones that appear later."""
    await queue.pause_queues(all_queues=True)
    return [], "paused every queue (until resume all)"


async def queue_resume_all(queue: Queue, form: Form) -> tuple[list[str], str]:
    """``queue resume --all``: lifts ``pause --all`` and every queue's own pause."""
    await queue.resume_queues(all_queues=True)
    return [], "resumed every queue"


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
    "cancel": cancel,
    "retry": retry,
    "rm": remove,
    "schedule-pause": schedule_pause,
    "schedule-resume": schedule_resume,
    "schedule-run": schedule_run,
    "queue-pause": queue_pause,
    "queue-resume": queue_resume,
    "queue-limit": queue_limit,
    "queue-pause-all": queue_pause_all,
    "queue-resume-all": queue_resume_all,
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
        said = str(exc)
        flash_cookie(
            response,
            f"Error: {said}."
            if "nothing was changed" in said
            else f"Error: {said}; nothing was changed.",
        )
        return response
    web.hub.forget()
    log.info("web action %s: %s (client %s)", name, ",".join(ids) or "-", _client(request))
    if wants_json:
        return JSONResponse({"action": name, "ids": ids, "message": message})
    response = RedirectResponse(_back(form), status_code=303)
    flash_cookie(response, message)
    return response


def routes() -> list[Route]:
    return [Route("/actions/{name}", perform, methods=["POST"])]
