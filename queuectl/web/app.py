"""The dashboard as a Starlette app over one ``Queue``: ``create_app(queue, ...)``.

Pages are rendered on the server with Jinja2 (autoescape on: every value is text);
a small script of our own (``static/app.js``) swaps in live fragments when the
shared poller (``live.Hub``) says something changed. Errors become a page (or, under
``/api``, a JSON object) with a status code and one line, never a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from queuectl.clock import now_ms
from queuectl.exceptions import (
    BackendError,
    DuplicateJob,
    InvalidTransition,
    JobNotFound,
    QueueCtlError,
    ScheduleNotFound,
)
from queuectl.models import JobState
from queuectl.queue import Queue
from queuectl.web.live import Hub
from queuectl.web.security import Gate, GateMiddleware

log = logging.getLogger("queuectl.web")

HERE = Path(__file__).parent
FLASH = "queuectl_flash"
FRAGMENT_HEADER = "x-queuectl-fragment"


#: States whose jobs get a cancel button, and a retry button (the rules of
#: ``backends.operations``; the store decides again when the button is pressed).
CANCELLABLE = frozenset({"pending", "failed", "processing"})
RETRYABLE = frozenset({"dead", "cancelled", "failed"})


class BadRequest(QueueCtlError):
    """The request is not valid."""


@dataclass
class Web:
    """What every route needs: the queue, the shared poller, the gate, the templates."""

    queue: Queue
    gate: Gate
    hub: Hub
    templates: jinja2.Environment
    #: The store as a person may see it (a PostgreSQL URL without its password).
    target: str
    extra: dict[str, Any] = field(default_factory=dict)

    def render(self, name: str, context: Mapping[str, Any]) -> bytes:
        base = {"read_only": self.gate.read_only, "target": self.target, "flash": None, "path": ""}
        return self.templates.get_template(name).render({**base, **context}).encode()

    async def page(
        self,
        request: Request,
        template: str,
        fragment: str,
        context: Callable[[], Awaitable[dict[str, Any]]],
        *,
        title: str,
    ) -> Response:
        """The full page, or only its live fragment (cached per poller generation)."""
        if request.headers.get(FRAGMENT_HEADER):

            async def produce() -> bytes:
                return self.render(fragment, {**await context(), "now": now_ms()})

            body = await self.hub.cached(f"{request.url.path}?{request.url.query}", produce)
            return HTMLResponse(body, headers={"cache-control": "no-store"})
        flash = request.cookies.get(FLASH)
        values = {**await context(), "now": now_ms(), "title": title, "fragment": fragment}
        values["flash"] = unquote(flash) if flash else None
        values["path"] = request.url.path
        response = HTMLResponse(self.render(template, values))
        response.headers["cache-control"] = "no-store"
        if flash:
            response.delete_cookie(FLASH, path="/")
        return response


def flash_cookie(response: Response, message: str) -> None:
    response.set_cookie(
        FLASH, quote(message[:500]), path="/", httponly=True, samesite="strict", max_age=60
    )


def status_of(exc: BaseException) -> int:
    if isinstance(exc, HTTPException):
        return exc.status_code
    if isinstance(exc, JobNotFound | ScheduleNotFound):
        return 404
    if isinstance(exc, BackendError):
        return 503
    if isinstance(exc, InvalidTransition | DuplicateJob):
        return 409
    if isinstance(exc, QueueCtlError):
        return 400
    return 500


class ErrorPages:
    """Any failure of a route as a page (or JSON under ``/api``) and one log line.

    Sits inside the gate and outside the router, so it also catches what Starlette's
    own exception middleware re-raises; a response already started (a stream) is
    just ended.
    """

    def __init__(self, app: ASGIApp, web: Web) -> None:
        self.app = app
        self.web = web

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except Exception as exc:
            status = status_of(exc)
            if status >= 500:
                log.warning(
                    "%s %s: %s: %s", scope["method"], scope["path"], type(exc).__name__, exc
                )
            if started:
                return
            response = error_response(self.web, scope, exc, status)
            await response(scope, receive, send)


def error_response(web: Web, scope: Scope, exc: BaseException, status: int) -> Response:
    """The page (or JSON under ``/api`` and ``/metrics``) that says what went wrong."""
    if isinstance(exc, HTTPException):
        message = str(exc.detail)
    elif isinstance(exc, QueueCtlError):
        message = str(exc)
    else:
        message = "internal error; the server's log says more"
    if scope["path"].startswith("/api/") or scope["path"] == "/metrics":
        return JSONResponse({"error": message}, status_code=status)
    try:
        body = web.render(
            "error.html", {"status": status, "message": message, "title": f"Error {status}"}
        )
    except Exception:  # the error page itself must not fail: say it plainly
        return PlainTextResponse(f"Error {status}: {message}\n", status_code=status)
    return HTMLResponse(body, status_code=status, headers={"cache-control": "no-store"})


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["states"] = [s.value for s in JobState]
    env.globals["cancellable"] = CANCELLABLE
    env.globals["retryable"] = RETRYABLE
    return env


def shown_target(target: str) -> str:
    """A store target fit for a page or a log: no password in a URL."""
    if "://" not in target or "@" not in target:
        return target
    scheme, rest = target.split("://", 1)
    userinfo, _, host = rest.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}@{host}" if user else f"{scheme}://{host}"


def create_app(
    queue: Queue,
    *,
    token: str | None = None,
    read_only: bool = False,
    allowed_hosts: frozenset[str] | None = frozenset({"localhost", "127.0.0.1", "::1"}),
    poll_s: float = 1.0,
) -> Starlette:
    """The dashboard over ``queue``; the caller owns the queue and closes it."""
    from queuectl.web import actions, api, pages

    gate = Gate(token=token, read_only=read_only, allowed_hosts=allowed_hosts)
    web = Web(
        queue=queue,
        gate=gate,
        hub=Hub(queue, poll_s=poll_s),
        templates=_templates(),
        target=shown_target(queue.backend.target),
    )
    routes = [
        *pages.routes(),
        *api.routes(),
        *actions.routes(),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        return error_response(web, request.scope, exc, status_of(exc))

    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
    app.state.web = web
    app.add_middleware(ErrorPages, web=web)
    app.add_middleware(GateMiddleware, gate=gate)
    return app


def web_of(request: Request) -> Web:
    web: Web = request.app.state.web
    return web
