"""Helpers of ``bench_postgres.py``: processes, PostgreSQL access, the two queuectl stores,
and the latency probe (W4) that every system shares."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchlib import QUEUECTL_ENQUEUE, BenchError

PY = sys.executable
QUEUECTL = str(Path(PY).with_name("queuectl"))


def note(message: str) -> None:
    print(f"  {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
    kwargs.setdefault("capture_output", "stdout" not in kwargs)
    kwargs.setdefault("timeout", 600)
    result = subprocess.run([str(a) for a in args], check=False, **kwargs)
    if result.returncode != 0:
        err = (result.stderr or b"")[-2000:].decode(errors="replace")
        raise BenchError(f"{' '.join(map(str, args[:4]))} exited {result.returncode}: {err}")
    return result


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def wait_for(
    predicate: Callable[[], object], timeout: float, what: str, step: float = 0.01
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out waiting for {what}")
        time.sleep(step)


@contextlib.contextmanager
def running(args: list[str], **kwargs: Any) -> Iterator[subprocess.Popen[bytes]]:
    """A process in its own session, stopped by its process group on the way out."""
    proc = subprocess.Popen([str(a) for a in args], start_new_session=True, **kwargs)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


# PostgreSQL access (asyncpg, through queuectl's extra) -------------------------------


def pg(url: str, sql: str, *args: Any, schema: str | None = None) -> list[Any]:
    import asyncpg

    async def go() -> list[Any]:
        settings = {"search_path": f'"{schema}"'} if schema else {}
        conn = await asyncpg.connect(url, server_settings=settings, timeout=10)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    return asyncio.run(go())


def pg_exec(url: str, sql: str, schema: str | None = None) -> None:
    import asyncpg

    async def go() -> None:
        settings = {"search_path": f'"{schema}"'} if schema else {}
        conn = await asyncpg.connect(url, server_settings=settings, timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(go())


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
        env = dict(os.environ)
        env["QUEUECTL_DB"] = self.target()
        env.pop("QUEUECTL_DEBUG", None)
        return env

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
    return SqliteStore(work) if kind == "sqlite" else PostgresStore(url)


# queuectl --------------------------------------------------------------------------------


def queuectl_drain(store: Store, work: Path, n: int, count: int) -> tuple[float, bool]:
    env = store.env()
    line = json.dumps({"command": "true"}) + "\n"
    run([QUEUECTL, "enqueue"], input=(line * n).encode(), env=env)
    with (work / "worker.log").open("wb") as log:
        seconds = timed(
            lambda: run(
                [QUEUECTL, "worker", "start", "--count", str(count), "--burst"],
                env=env,
                stdout=log,
                stderr=log,
                timeout=max(120.0, n * 0.1),
            )
        )
    return seconds, store.exactly_once(n)


class LineEnqueuer:
    """A helper process that enqueues one command per line and answers two times (ns)."""

    def __init__(self, args: list[str], **kwargs: Any) -> None:
        self.proc = subprocess.Popen(
            [str(a) for a in args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
            **kwargs,
        )

    def __call__(self, command: str) -> tuple[int, int]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        if not answer:
            raise BenchError("the enqueue helper died")
        before, after = answer.split()
        return int(before), int(after)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def latency_samples(enqueue: Callable[[str], tuple[int, int]], work: Path, n: int) -> list[float]:
    """Milliseconds from enqueue returning to the command running, for ``n`` jobs."""
    found = []
    for i in range(n):
        out = work / f"start-{i}"
        _, after = enqueue(f"date +%s%N > {out}.tmp && mv {out}.tmp {out}")
        wait_for(out.exists, 30, "a job to start", 0.001)
        found.append((int(out.read_text()) - after) / 1e6)
        time.sleep(random.uniform(0.05, 0.15))
    return found


def queuectl_latency(store: Store, work: Path, n: int) -> list[float]:
    env = store.env()
    run([QUEUECTL, "status", "--json"], env=env)
    with (
        (work / "idle.log").open("wb") as log,
        running([QUEUECTL, "worker", "start", "--count", "1"], env=env, stdout=log, stderr=log),
    ):
        wait_for(lambda: store.workers() >= 1, 60, "the worker to register", 0.05)
        enqueue = LineEnqueuer([PY, "-c", QUEUECTL_ENQUEUE, store.target()], env=env)
        try:
            return latency_samples(enqueue, work, n)
        finally:
            enqueue.close()
