"""Helpers of ``bench_postgres.py``: PostgreSQL access and queuectl's two stores seen
the same way (a target for ``QUEUECTL_DB`` and direct reads). Processes, timing and the
latency probe come from ``benchlib``, as for ``bench.py``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from benchlib import (
    QUEUECTL_ENQUEUE,
    THIS,
    Build,
    create_store,
    latency_samples,
    line_enqueuer,
    queuectl_env,
    run,
    running,
    timed,
    wait_for,
)

# PostgreSQL access (asyncpg, through queuectl's extra) -------------------------------


def _on(url: str, schema: str | None, call: Callable[[Any], Awaitable[Any]]) -> Any:
    """``call(connection)`` on a fresh asyncpg connection whose search path is ``schema``."""
    import asyncpg

    async def go() -> Any:
        settings = {"search_path": f'"{schema}"'} if schema else {}
        conn = await asyncpg.connect(url, server_settings=settings, timeout=10)
        try:
            return await call(conn)
        finally:
            await conn.close()

    return asyncio.run(go())


def pg(url: str, sql: str, *args: Any, schema: str | None = None) -> list[Any]:
    """The rows of one query."""
    return list(_on(url, schema, lambda conn: conn.fetch(sql, *args)))


def pg_exec(url: str, sql: str, schema: str | None = None) -> None:
    """Run ``sql`` (several statements allowed)."""
    _on(url, schema, lambda conn: conn.execute(sql))


# The stores ----------------------------------------------------------------------------


class Store:
    """Where a queuectl run keeps its queue, and how the bench reads it directly."""

    name: str

    def target(self) -> str:
        raise NotImplementedError

    def rows(self, sql: str) -> list[Any]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def env(self) -> dict[str, str]:
        return queuectl_env(self.target())

    def workers(self) -> int:
        try:
            return int(self.rows("SELECT count(*) FROM workers")[0][0])
        except Exception:
            return 0

    def exactly_once(self, n: int) -> bool:
        done = self.rows("SELECT count(*) FROM jobs WHERE state = 'completed' AND attempts = 1")
        per = self.rows("SELECT count(*), count(DISTINCT job_id) FROM attempts")
        return int(done[0][0]) == n and tuple(per[0]) == (n, n)


class SqliteStore(Store):
    name = "sqlite"

    def __init__(self, work: Path) -> None:
        self.path = work / "q.db"

    def target(self) -> str:
        return str(self.path)

    def rows(self, sql: str) -> list[Any]:
        with contextlib.closing(sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)) as conn:
            return conn.execute(sql).fetchall()


class PostgresStore(Store):
    name = "postgres"

    def __init__(self, url: str) -> None:
        self.url = url
        self.schema = "bench_" + secrets.token_hex(5)

    def target(self) -> str:
        return f"{self.url}{'&' if '?' in self.url else '?'}schema={self.schema}"

    def rows(self, sql: str) -> list[Any]:
        return pg(self.url, sql, schema=self.schema)

    def close(self) -> None:
        pg_exec(self.url, f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')


def make_store(kind: str, work: Path, url: str) -> Store:
    """A fresh store of ``kind`` (``sqlite`` or ``postgres``, maybe with a build's suffix):
    a file in ``work`` or a schema of its own, so no two builds share one."""
    return SqliteStore(work) if kind.startswith("sqlite") else PostgresStore(url)


# queuectl --------------------------------------------------------------------------------


def queuectl_drain(
    store: Store, work: Path, n: int, count: int, build: Build = THIS
) -> tuple[float, bool]:
    env = store.env()
    line = json.dumps({"command": "true"}) + "\n"
    run([build.queuectl, "enqueue"], input=(line * n).encode(), env=env)
    with (work / "worker.log").open("wb") as log:
        seconds = timed(
            lambda: run(
                [build.queuectl, "worker", "start", "--count", str(count), "--burst"],
                env=env,
                stdout=log,
                stderr=log,
                timeout=max(120.0, n * 0.1),
            )
        )
    return seconds, store.exactly_once(n)


def queuectl_latency(
    store: Store, work: Path, n: int, build: Build = THIS
) -> list[tuple[float, float]]:
    """W4's samples (see ``benchlib.latency_samples``) with one idle worker on ``store``."""
    env = store.env()
    create_store(env, python=build.python)
    worker = [build.queuectl, "worker", "start", "--count", "1"]
    with (
        (work / "idle.log").open("wb") as log,
        running(worker, env=env, stdout=log, stderr=log),
    ):
        wait_for(lambda: store.workers() >= 1, 60, "the worker to register", 0.05)
        helper = [build.python, "-c", QUEUECTL_ENQUEUE, store.target()]
        with line_enqueuer(helper, env=env) as enqueue:
            return latency_samples(enqueue, work, n)
