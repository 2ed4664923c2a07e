"""The PostgreSQL server the tests use, and one throwaway schema per test.

``QUEUECTL_TEST_PG`` names the server (a ``postgresql://`` URL); unset, the local
one at 127.0.0.1:5432 is tried. ``QUEUECTL_TEST_PG=off`` skips every PostgreSQL
test. An unreachable server skips them with the reason, unless
``QUEUECTL_TEST_PG_REQUIRED=1`` (CI) turns that into a failure.

Each test gets its own schema (``?schema=qt_<random>``), dropped afterwards, so
tests never see each other's jobs and can run while others use the same database.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
from functools import cache
from typing import Any

import pytest

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


def base_url() -> str | None:
    value = os.environ.get("QUEUECTL_TEST_PG", DEFAULT_URL).strip()
    return None if value.lower() in ("", "0", "off", "no", "false") else value


def run_sync(coro_fn: Any, *args: Any) -> Any:
    """Run a coroutine function on a fresh loop in a thread (safe inside a running loop)."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = asyncio.run(coro_fn(*args))
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result.get("value")


async def _connect(url: str, schema: str | None) -> Any:
    import asyncpg

    settings = {"search_path": f'"{schema}"'} if schema else {}
    return await asyncpg.connect(url, timeout=5, server_settings=settings)


async def _execute(url: str, sql: str, schema: str | None = None) -> None:
    conn = await _connect(url, schema)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _fetch(url: str, sql: str, schema: str | None = None) -> list[Any]:
    conn = await _connect(url, schema)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


@cache
def unavailable() -> str | None:
    """Why the PostgreSQL tests cannot run, or ``None`` when they can."""
    url = base_url()
    if url is None:
        return "PostgreSQL tests switched off (QUEUECTL_TEST_PG=off)"
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        return "asyncpg is not installed (pip install -e '.[test,postgres]')"
    try:
        run_sync(_execute, url, "SELECT 1")
    except Exception as exc:
        return (
            f"PostgreSQL not reachable at {url} ({type(exc).__name__}: {exc}); set QUEUECTL_TEST_PG"
        )
    return None


def require() -> str:
    """The server URL, or skip (fail under ``QUEUECTL_TEST_PG_REQUIRED=1``)."""
    reason = unavailable()
    if reason is not None:
        if os.environ.get("QUEUECTL_TEST_PG_REQUIRED") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    url = base_url()
    assert url is not None
    return url


def with_schema(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}schema={schema}"


class Schema:
    """A fresh schema name on the test server; ``drop`` removes it and all it holds."""

    def __init__(self, url: str) -> None:
        self.server = url
        self.name = "qt_" + secrets.token_hex(6)
        self.url = with_schema(url, self.name)

    def execute(self, sql: str) -> None:
        """Run SQL with this schema first on the search path (for test set-up)."""
        run_sync(_execute, self.server, sql, self.name)

    def fetch(self, sql: str) -> list[Any]:
        return list(run_sync(_fetch, self.server, sql, self.name))

    def drop(self) -> None:
        run_sync(_execute, self.server, f'DROP SCHEMA IF EXISTS "{self.name}" CASCADE')
