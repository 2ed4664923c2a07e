"""``queuectl web``: serve the dashboard, the JSON API and ``/metrics`` until stopped.

Starlette, uvicorn and Jinja2 are imported here, inside the command, so every other
command starts as fast as before. uvicorn runs inside this command's own event loop
(``Server.serve``), on a socket bound here first so that a port in use is one
``Error:`` line rather than uvicorn's log and exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import asyncclick as click

from queuectl.cli.app import App, pass_app
from queuectl.exceptions import QueueCtlError

if TYPE_CHECKING:
    import uvicorn

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787
#: Seconds open streams (live pages) get to end when the server stops.
GRACE_S = 1


@click.command(short_help="Serve the web dashboard, JSON API and /metrics.")
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True, help="Port."
)
@click.option(
    "--token",
    metavar="T",
    help="Require this token (env QUEUECTL_WEB_TOKEN); needed off loopback.",
)
@click.option("--read-only", is_flag=True, help="Offer no actions; answer every POST with 405.")
@pass_app
async def web(app: App, host: str, port: int, token: str | None, read_only: bool) -> None:
    """Serve a live dashboard over the queue's store until Ctrl-C or SIGTERM.

    Pages: overview, jobs, each job with its output (live while it runs), dead
    letters, workers. JSON under /api, Prometheus metrics at /metrics. Listening on
    anything but a loopback address needs a token; with one, every request must
    carry it (?token=T once, then a cookie; or Authorization: Bearer T).

    \b
    Examples:
      queuectl web
      queuectl web --port 9000 --read-only
      QUEUECTL_WEB_TOKEN=s3cret queuectl web --host 0.0.0.0
    """
    from queuectl.web.security import host_allow_list, is_loopback

    token = token or os.environ.get("QUEUECTL_WEB_TOKEN") or None
    if not is_loopback(host) and token is None:
        raise QueueCtlError(
            f"listening on {host} (not a loopback address) needs a token: "
            "--token T or QUEUECTL_WEB_TOKEN"
        )
    sock = _bind(host, port)
    queue = await app.queue()

    import uvicorn

    from queuectl.web import create_app

    _log_to_stderr()
    site = create_app(
        queue,
        token=token,
        read_only=read_only,
        allowed_hosts=host_allow_list(host, token=token),
    )
    config = uvicorn.Config(
        site,
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=GRACE_S,
    )
    bound = sock.getsockname()
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    url = f"http://{shown}:{bound[1]}/"
    note = " (needs the token: open it once with ?token=...)" if token else ""
    mode = ", read-only" if read_only else ""
    click.echo(f"queuectl web: {url}{note}{mode}; Ctrl-C to stop", err=False)
    sys.stdout.flush()
    await _QuietServer(config, on_stop=site.state.web.hub.close).serve(sockets=[sock])
    click.echo("queuectl web: stopped", err=True)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(128)
        sock.set_inheritable(True)
    except OSError as exc:
        sock.close()
        raise QueueCtlError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


def _log_to_stderr() -> None:
    """Action lines and server warnings, one per line, on stderr (never a request's query)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s"))
    for name, level in (("queuectl.web", logging.INFO), ("uvicorn.error", logging.WARNING)):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False


class _QuietServer:
    """uvicorn's server with our signal handling: stop on SIGINT/SIGTERM, exit 0.

    uvicorn re-raises a captured signal after shutting down (so Ctrl-C would end in
    a traceback-free but non-zero exit, and SIGTERM in death by signal); here a
    stop request is the normal end of ``web``.
    """

    def __init__(self, config: uvicorn.Config, *, on_stop: Callable[[], None]) -> None:
        import uvicorn

        self.on_stop = on_stop
        server = uvicorn.Server(config)
        server.capture_signals = self._signals  # type: ignore[method-assign]
        self.server = server

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        handled = (signal.SIGINT, signal.SIGTERM)

        def stop() -> None:
            if self.server.should_exit:
                self.server.force_exit = True
            self.server.should_exit = True
            self.on_stop()  # open pages' streams end, so they do not hold the stop up

        for sig in handled:
            loop.add_signal_handler(sig, stop)
        try:
            yield
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)

    async def serve(self, *, sockets: list[socket.socket]) -> None:
        await self.server.serve(sockets=sockets)
