"""Fixtures of the web tests: the app in this event loop, and ``queuectl web`` as a process.

HTTP-level tests drive the ASGI app through httpx's ASGI transport in the test's own
event loop (the ``Queue`` it wraps is bound to that loop); tests that need a real
server (signals, streams, the browser) start ``queuectl web`` as a subprocess on a
free port and stop it by its pid.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from queuectl.queue import Queue
from queuectl.web import create_app
from tests.helpers import QUEUECTL, cli_env

ORIGIN = "http://127.0.0.1:8787"


@pytest.fixture
async def queue(db: str) -> AsyncIterator[Queue]:
    async with Queue.open(db) as q:
        yield q


ClientFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def make_client(queue: Queue) -> ClientFactory:
    """``async with make_client(token=..., read_only=...) as client`` over ``queue``."""

    @asynccontextmanager
    async def make(**options: Any) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(queue, **options)
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as client:
            yield client

    return make


@pytest.fixture
async def client(make_client: ClientFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client() as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class WebProcess:
    """``queuectl web`` in its own session, on a free port; stopped by pid."""

    def __init__(self, db: Path | str, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [QUEUECTL, "web", "--port", str(self.port), *args],
            env=cli_env(db, env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        self.banner = self._read_banner()

    def _read_banner(self, timeout: float = 30) -> str:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.stop()
            raise AssertionError(f"queuectl web printed nothing in {timeout}s")
        line = self.proc.stdout.readline()
        if not line:
            _, err = self.stop()
            raise AssertionError(f"queuectl web exited: {err}")
        return line

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> tuple[int, str]:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            _, err = self.proc.communicate()
        return self.proc.returncode, err


@pytest.fixture
def web_process() -> Iterator[Callable[..., WebProcess]]:
    started: list[WebProcess] = []

    def start(db: Path | str, *args: str, env: dict[str, str] | None = None) -> WebProcess:
        process = WebProcess(db, *args, env=env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def wait_http(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
