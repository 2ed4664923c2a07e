#!/usr/bin/env python3
"""W2, W4 and W6 on PostgreSQL, beside the SQLite store and Procrastinate, in one run.

Standalone until it is folded into ``scripts/bench.py`` (same workloads, same
method: interleaved rounds, medians). Run it with the interpreter that has
queuectl installed with its ``postgres`` extra::

    python scripts/bench_postgres.py                         # everything, 3 rounds
    python scripts/bench_postgres.py --quick                 # a small smoke run
    python scripts/bench_postgres.py --only W2 --counts 4 --json out.json
    python scripts/bench_postgres.py --db postgresql://user@host/db

Workloads (docs/benchmarks.md has the method):

* W2  drain N ``true`` jobs with ``worker start --burst --count C`` (Procrastinate:
      ``procrastinate worker --concurrency C --one-shot`` running a task that runs
      the command): jobs/s including worker start, and an exactly-once check.
* W4  enqueue-to-start latency with an idle worker in another process: each job
      writes ``date +%s%N``; the figure is start minus the moment enqueue returned.
* W6  ``status``, ``list --state pending``, one claim and W4 with 10^6 finished
      jobs in the store, against an empty one (queuectl's two stores).

Each queuectl run on PostgreSQL gets a schema of its own (dropped afterwards);
Procrastinate gets one too, with its schema applied by ``procrastinate schema
--apply``. Procrastinate lives in a throwaway virtualenv (default
``/tmp/bench-procrastinate``, created on first use), never in queuectl's
dependencies.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PY = sys.executable
QUEUECTL = str(Path(PY).with_name("queuectl"))
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
PROCRASTINATE_VENV = Path(
    os.environ.get("QUEUECTL_BENCH_PROCRASTINATE", "/tmp/bench-procrastinate")
)


class BenchError(Exception):
    pass


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


QUEUECTL_ENQUEUE = """
import asyncio, sys, time
from queuectl.queue import Queue

async def main():
    async with Queue.open(sys.argv[1]) as q:
        loop = asyncio.get_running_loop()
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            before = time.time_ns()
            await q.enqueue({"command": line.rstrip("\\n")})
            print(before, time.time_ns(), flush=True)

asyncio.run(main())
"""


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


# Procrastinate ----------------------------------------------------------------------------

PROCRASTINATE_TASKS = """
import os, subprocess
import procrastinate

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(conninfo=os.environ["BENCH_PROCRASTINATE_DSN"])
)

@app.task(name="run")
def run(command: str) -> int:
    return subprocess.run(command, shell=True).returncode
"""

PROCRASTINATE_ENQUEUE = """
import sys
from benchtasks import app, run
n, command = int(sys.argv[1]), sys.argv[2]
with app.open():
    run.batch_defer(*[{"command": command}] * n)
"""

PROCRASTINATE_LINES = """
import sys, time
from benchtasks import app, run
with app.open():
    for line in sys.stdin:
        before = time.time_ns()
        run.defer(command=line.rstrip("\\n"))
        print(before, time.time_ns(), flush=True)
"""


def ensure_procrastinate() -> Path:
    python = PROCRASTINATE_VENV / "bin" / "python"
    if (PROCRASTINATE_VENV / "bin" / "procrastinate").exists():
        return python
    note(f"installing Procrastinate into {PROCRASTINATE_VENV}")
    if not python.exists():
        run([PY, "-m", "venv", str(PROCRASTINATE_VENV)])
    run([str(python), "-m", "pip", "install", "-q", "procrastinate"])
    return python


class Procrastinate:
    name = "procrastinate"

    def __init__(self, python: Path, url: str, work: Path) -> None:
        from urllib.parse import urlsplit

        self.python = python
        self.url = url
        self.work = work
        self.schema = "bench_pr_" + secrets.token_hex(5)
        parts = urlsplit(url)
        conninfo = {
            "host": parts.hostname or "localhost",
            "port": str(parts.port or 5432),
            "user": parts.username or "postgres",
            "dbname": parts.path.lstrip("/") or "postgres",
            "options": f"-csearch_path={self.schema}",
        }
        if parts.password:
            conninfo["password"] = parts.password
        self.dsn = " ".join(f"{k}={v}" for k, v in conninfo.items())
        (work / "benchtasks.py").write_text(PROCRASTINATE_TASKS)
        pg_exec(url, f'CREATE SCHEMA "{self.schema}"')
        run([self.bin(), "--app=benchtasks.app", "schema", "--apply"], env=self.env(), cwd=work)

    def bin(self) -> str:
        return str(self.python.with_name("procrastinate"))

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["BENCH_PROCRASTINATE_DSN"] = self.dsn
        env["PYTHONPATH"] = str(self.work)
        return env

    def close(self) -> None:
        pg_exec(self.url, f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')

    def succeeded(self) -> int:
        rows = pg(
            self.url,
            "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'",
            schema=self.schema,
        )
        return int(rows[0][0])

    def drain(self, n: int, count: int) -> tuple[float, bool]:
        env = self.env()
        run([str(self.python), "-c", PROCRASTINATE_ENQUEUE, str(n), "true"], env=env, cwd=self.work)
        args = [self.bin(), "--app=benchtasks.app", "worker", "--concurrency", str(count)]
        with (self.work / "worker.log").open("wb") as log:
            seconds = timed(
                lambda: run(
                    [*args, "--one-shot"],
                    env=env,
                    cwd=self.work,
                    stdout=log,
                    stderr=log,
                    timeout=max(300.0, n * 0.5),
                )
            )
        return seconds, self.succeeded() == n

    def latency(self, n: int) -> list[float]:
        env = self.env()
        args = [self.bin(), "--app=benchtasks.app", "worker", "--concurrency", "1"]
        with (
            (self.work / "idle.log").open("wb") as log,
            running(args, env=env, cwd=self.work, stdout=log, stderr=log),
        ):
            rows = "SELECT count(*) FROM procrastinate_workers"
            wait_for(lambda: pg(self.url, rows, schema=self.schema)[0][0] >= 1, 60, "a worker")
            enqueue = LineEnqueuer(
                [str(self.python), "-c", PROCRASTINATE_LINES], env=env, cwd=self.work
            )
            try:
                return latency_samples(enqueue, self.work, n)
            finally:
                enqueue.close()


# The workloads -----------------------------------------------------------------------------


@dataclass
class Sizes:
    rounds: int
    w2_jobs: int
    w4_samples: int
    w6_jobs: int
    w6_samples: int


FULL = Sizes(3, 2000, 60, 1_000_000, 20)
QUICK = Sizes(1, 300, 10, 20_000, 5)


class Bench:
    def __init__(self, args: argparse.Namespace, sizes: Sizes, work: Path) -> None:
        self.args = args
        self.sizes = sizes
        self.work = work
        self.url: str = args.db
        self.procrastinate = None if args.no_procrastinate else ensure_procrastinate()
        self._seq = 0

    def fresh(self, label: str) -> Path:
        self._seq += 1
        path = self.work / f"{self._seq:04d}-{label}"
        path.mkdir()
        return path

    def systems(self) -> list[str]:
        return ["sqlite", "postgres"] + (["procrastinate"] if self.procrastinate else [])

    def drain_once(self, system: str, count: int) -> tuple[float, bool]:
        work = self.fresh(f"w2-{system}-{count}")
        try:
            if system == "procrastinate":
                assert self.procrastinate is not None
                peer = Procrastinate(self.procrastinate, self.url, work)
                try:
                    return peer.drain(self.sizes.w2_jobs, count)
                finally:
                    peer.close()
            store = make_store(system, work, self.url)
            try:
                return queuectl_drain(store, work, self.sizes.w2_jobs, count)
            finally:
                store.close()
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def w2(self) -> dict[str, Any]:
        n = self.sizes.w2_jobs
        cells: dict[tuple[str, int], list[tuple[float, bool]]] = {}
        for round_no in range(self.sizes.rounds):
            for count in self.args.counts:
                for system in self.systems():
                    seconds, once = self.drain_once(system, count)
                    cells.setdefault((system, count), []).append((seconds, once))
                    note(
                        f"W2 round {round_no + 1}: {system:<14} count {count:>2}: "
                        f"{n / seconds:8.0f} jobs/s  {seconds:6.3f} s"
                        f"{'' if once else '  NOT EXACTLY ONCE'}"
                    )
        runs = [
            {
                "system": system,
                "count": count,
                "seconds": [round(s, 3) for s, _ in results],
                "jobs_per_s": round(n / statistics.median(s for s, _ in results), 1),
                "exactly_once": all(once for _, once in results),
            }
            for (system, count), results in cells.items()
        ]
        return {"jobs": n, "command": "true", "runs": runs}

    def w4(self) -> dict[str, Any]:
        samples: dict[str, list[float]] = {}
        per_round = max(1, self.sizes.w4_samples // self.sizes.rounds)
        for _ in range(self.sizes.rounds):
            for system in self.systems():
                work = self.fresh(f"w4-{system}")
                try:
                    samples.setdefault(system, []).extend(self._latency(system, work, per_round))
                finally:
                    shutil.rmtree(work, ignore_errors=True)
        return {name: summary(values) for name, values in samples.items()}

    def _latency(self, system: str, work: Path, n: int) -> list[float]:
        if system == "procrastinate":
            assert self.procrastinate is not None
            peer = Procrastinate(self.procrastinate, self.url, work)
            try:
                return peer.latency(n)
            finally:
                peer.close()
        store = make_store(system, work, self.url)
        try:
            return queuectl_latency(store, work, n)
        finally:
            store.close()

    def w6(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for system in ("sqlite", "postgres"):
            figures: dict[str, dict[str, float]] = {}
            for label, history in (("empty", 0), ("full", self.sizes.w6_jobs)):
                work = self.fresh(f"w6-{system}-{label}")
                store = make_store(system, work, self.url)
                try:
                    built = timed(lambda s=store, h=history: build_w6(s, h))
                    note(
                        f"W6 {system}: built the {label} store ({history:,} jobs) in {built:.1f} s"
                    )
                    figures[label] = w6_measure(store, work, self.sizes.w6_samples)
                    figures[label]["build_s"] = round(built, 1)
                    note(f"W6 {system} {label}: {figures[label]}")
                finally:
                    store.close()
                    shutil.rmtree(work, ignore_errors=True)
            ratio = {
                k: round(figures["full"][k] / figures["empty"][k], 2)
                for k in figures["full"]
                if k != "build_s" and figures["empty"].get(k)
            }
            found[system] = {**figures, "ratio": ratio}
        return {"jobs": self.sizes.w6_jobs, **found}


def summary(values: list[float]) -> dict[str, Any]:
    return {
        "samples": len(values),
        "p50_ms": round(percentile(values, 50), 2),
        "p90_ms": round(percentile(values, 90), 2),
        "p99_ms": round(percentile(values, 99), 2),
        "max_ms": round(max(values), 2) if values else None,
    }


W6_SQLITE = """
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :h)
INSERT INTO jobs (id, command, state, queue, priority, attempts, max_retries,
                  next_run_at, created_at, updated_at, exit_code, claims)
SELECT 'old-' || i, 'echo ' || i,
       CASE WHEN i % 100 = 0 THEN 'dead' WHEN i % 100 = 1 THEN 'failed' ELSE 'completed' END,
       CASE WHEN i % 10 = 0 THEN 'other' ELSE 'default' END,
       0, 1, 3, CASE WHEN i % 100 = 1 THEN :later END, :now - :h + i, :now - :h + i, 0, 1
  FROM n
"""

W6_POSTGRES = """
INSERT INTO jobs (id, command, state, queue, priority, attempts, max_retries,
                  next_run_at, created_at, updated_at, exit_code, claims)
SELECT 'old-' || i, 'echo ' || i,
       CASE WHEN i % 100 = 0 THEN 'dead' WHEN i % 100 = 1 THEN 'failed' ELSE 'completed' END,
       CASE WHEN i % 10 = 0 THEN 'other' ELSE 'default' END,
       0, 1, 3, CASE WHEN i % 100 = 1 THEN {later} END, {now} - {h} + i, {now} - {h} + i, 0, 1
  FROM generate_series(1, {h}) AS i;
INSERT INTO attempts (job_id, attempt, worker_id, started_at, finished_at, outcome, exit_code,
                      output, output_size)
SELECT id, 1, 'w-old', created_at, created_at + 5, 'completed', 0, '\\x6f6b0a'::bytea, 3
  FROM jobs WHERE id LIKE 'old-%';
INSERT INTO jobs (id, command, state, max_retries, next_run_at, created_at, updated_at)
SELECT 'later-' || i, 'true', 'pending', 3, {later}, {now}, {now}
  FROM generate_series(1, {pending}) AS i;
"""


def build_w6(store: Store, history: int, pending: int = 1000) -> None:
    """``history`` finished jobs (mostly completed, one attempt each) and ``pending`` jobs
    due tomorrow, inserted with plain SQL into the schema ``queuectl`` created."""
    run([QUEUECTL, "status", "--json"], env=store.env())
    now = time.time_ns() // 1_000_000
    later = now + 86_400_000
    if isinstance(store, PostgresStore):
        sql = W6_POSTGRES.format(h=history, now=now, later=later, pending=pending)
        pg_exec(store.url, sql, schema=store.schema)
        # What autovacuum's analyze does soon after a bulk load, done now.
        for table in ("jobs", "attempts"):
            pg_exec(store.url, f"VACUUM ANALYZE {table}", schema=store.schema)
        return
    assert isinstance(store, SqliteStore)
    with contextlib.closing(sqlite3.connect(store.path)) as conn:
        conn.execute("PRAGMA synchronous = OFF")
        with conn:
            conn.execute(W6_SQLITE, {"h": history, "now": now, "later": later})
            conn.execute(
                "INSERT INTO attempts (job_id, attempt, worker_id, started_at, finished_at,"
                " outcome, exit_code, output, output_size)"
                " SELECT id, 1, 'w-old', created_at, created_at + 5, 'completed', 0, X'6F6B0A', 3"
                " FROM jobs WHERE id LIKE 'old-%'"
            )
            conn.executemany(
                "INSERT INTO jobs (id, command, state, max_retries, next_run_at, created_at,"
                " updated_at) VALUES (?, 'true', 'pending', 3, ?, ?, ?)",
                [(f"later-{i}", later, now, now) for i in range(pending)],
            )
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def w6_measure(store: Store, work: Path, samples: int) -> dict[str, float]:
    env = store.env()
    reps = max(3, samples // 4)
    status = [timed(lambda: run([QUEUECTL, "status", "--json"], env=env)) for _ in range(reps)]
    listing = [
        timed(lambda: run([QUEUECTL, "list", "--state", "pending"], env=env)) for _ in range(reps)
    ]
    claims = asyncio.run(time_claims(store.target(), samples))
    lat = summary(queuectl_latency(store, work, samples))
    return {
        "status_ms": round(1000 * statistics.median(status), 1),
        "list_pending_ms": round(1000 * statistics.median(listing), 1),
        "claim_ms": round(1000 * statistics.median(claims), 3),
        "w4_p50_ms": lat["p50_ms"],
        "w4_p99_ms": lat["p99_ms"],
    }


async def time_claims(target: str, n: int) -> list[float]:
    """Seconds of ``n`` single-job claims through the store's own ``exchange`` call; the
    claimed jobs are completed right after (untimed) so the latency worker finds none."""
    from queuectl.backends import open_backend
    from queuectl.clock import now_ms
    from queuectl.models import ExecutionResult, Finish, NewJob

    backend = await open_backend(target, durable=False)
    try:
        now = now_ms()
        jobs = [
            NewJob(id=f"claim-{i}", command="true", max_retries=0, next_run_at=now)
            for i in range(n)
        ]
        await backend.enqueue(jobs, now=now)
        found = []
        for _ in range(n):
            start = time.perf_counter()
            out = await backend.exchange(worker_id="bench-claim", claim=1, now=now_ms())
            found.append(time.perf_counter() - start)
            if len(out.claims) != 1:
                raise BenchError("a claim found no job")
            (c,) = out.claims
            done = Finish(
                c.job.id, c.token, c.job.attempts, c.job.max_retries, ExecutionResult(exit_code=0)
            )
            await backend.exchange(worker_id="bench-claim", finishes=[done], now=now_ms())
    finally:
        await backend.aclose()
    return found


# Report ---------------------------------------------------------------------------------


def report(results: dict[str, Any]) -> str:
    lines = []
    w2 = results.get("W2")
    if w2:
        lines.append(f"W2: drain {w2['jobs']:,} `true` jobs, jobs/s (median)")
        lines.append("| count | " + " | ".join(sorted({r["system"] for r in w2["runs"]})) + " |")
        by = {(r["system"], r["count"]): r for r in w2["runs"]}
        systems = sorted({r["system"] for r in w2["runs"]})
        for count in sorted({r["count"] for r in w2["runs"]}):
            cells = [by.get((s, count)) for s in systems]
            lines.append(
                f"| {count} | "
                + " | ".join(
                    f"{c['jobs_per_s']:,.0f}{'' if c['exactly_once'] else ' (NOT ONCE)'}"
                    if c
                    else "-"
                    for c in cells
                )
                + " |"
            )
            rate = {s: by[(s, count)]["jobs_per_s"] for s in systems if (s, count) in by}
            if "postgres" in rate and "sqlite" in rate:
                lines.append(
                    f"  postgres/sqlite at count {count}: {rate['postgres'] / rate['sqlite']:.2f}"
                )
            if "postgres" in rate and "procrastinate" in rate:
                lines.append(
                    f"  postgres/procrastinate at count {count}: "
                    f"{rate['postgres'] / rate['procrastinate']:.2f}"
                )
    w4 = results.get("W4")
    if w4:
        lines.append("W4: enqueue return -> command start, ms")
        for name, s in w4.items():
            lines.append(
                f"  {name:<14} p50 {s['p50_ms']:7.2f}  p90 {s['p90_ms']:7.2f}"
                f"  p99 {s['p99_ms']:7.2f}"
            )
    w6 = results.get("W6")
    if w6:
        lines.append(f"W6: {w6['jobs']:,} finished jobs vs none")
        for system in ("sqlite", "postgres"):
            if system in w6:
                lines.append(f"  {system}: empty {w6[system]['empty']}")
                lines.append(f"  {system}: full  {w6[system]['full']}")
                lines.append(f"  {system}: ratio {w6[system]['ratio']}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", default=os.environ.get("QUEUECTL_BENCH_PG", DEFAULT_URL))
    parser.add_argument("--quick", action="store_true", help="small sizes, one round")
    parser.add_argument("--only", default="W2,W4,W6", help="comma-separated workloads")
    parser.add_argument("--counts", default="1,4", help="W2 --count values (default 1,4)")
    parser.add_argument("--rounds", type=int, help="rounds (default 3; --quick 1)")
    parser.add_argument("--w6-jobs", type=int, help="W6 history size (default 1,000,000)")
    parser.add_argument("--no-procrastinate", action="store_true")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    args.counts = [int(c) for c in args.counts.split(",")]
    sizes = QUICK if args.quick else FULL
    if args.rounds:
        sizes.rounds = args.rounds
    if args.w6_jobs:
        sizes.w6_jobs = args.w6_jobs
    with tempfile.TemporaryDirectory(prefix="queuectl-bench-pg-") as tmp:
        bench = Bench(args, sizes, Path(tmp))
        results: dict[str, Any] = {
            "machine": {"cpus": os.cpu_count(), "loadavg": os.getloadavg()},
            "postgres": pg(args.db, "SELECT version()")[0][0],
        }
        for work in args.only.split(","):
            started = time.monotonic()
            results[work] = getattr(bench, work.lower())()
            note(f"{work} done in {time.monotonic() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
