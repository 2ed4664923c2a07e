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
import json
import os
import secrets
import sys
import tempfile
import time
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_pglib import (
    PostgresStore,
    SqliteStore,
    Store,
    make_store,
    pg,
    pg_exec,
    queuectl_drain,
    queuectl_latency,
)
from benchlib import (
    FULL,
    PY,
    QUICK,
    THIS,
    Bench,
    Build,
    Sizes,
    build_sqlite_history,
    create_store,
    latency_samples,
    latency_summary,
    line_enqueuer,
    median,
    note,
    run,
    running,
    timed,
    w6_measure,
    w6_ratio,
    wait_for,
    warm_bytecode,
)

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
PROCRASTINATE_VENV = Path(
    os.environ.get("QUEUECTL_BENCH_PROCRASTINATE", "/tmp/bench-procrastinate")
)


# Procrastinate ----------------------------------------------------------------------------

PROCRASTINATE_TASKS = """
import asyncio, os, subprocess
import procrastinate

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(conninfo=os.environ["BENCH_PROCRASTINATE_DSN"])
)

@app.task(name="run")
def run(command: str) -> int:
    return subprocess.run(command, shell=True).returncode


@app.task(name="run_async")
async def run_async(command: str) -> int:
    # The faster shape (issue 15): the worker's own event loop waits for the child.
    proc = await asyncio.create_subprocess_shell(command)
    return await proc.wait()
"""

PROCRASTINATE_ENQUEUE = """
import sys
import benchtasks
run = getattr(benchtasks, sys.argv[3])
n, command = int(sys.argv[1]), sys.argv[2]
with benchtasks.app.open():
    run.batch_defer(*[{"command": command}] * n)
"""

PROCRASTINATE_LINES = """
import sys, time
import benchtasks
app, run = benchtasks.app, getattr(benchtasks, sys.argv[1])
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
    """Procrastinate with a task that runs the command: ``run`` (sync, ``subprocess.run`` in
    a worker thread) or ``run_async`` (``asyncio.create_subprocess_shell``, issue 15's peer)."""

    name = "procrastinate"

    def __init__(self, python: Path, url: str, work: Path, task: str = "run") -> None:
        from urllib.parse import urlsplit

        self.task = task
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
        enqueue = [str(self.python), "-c", PROCRASTINATE_ENQUEUE, str(n), "true", self.task]
        run(enqueue, env=env, cwd=self.work)
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

    def latency(self, n: int) -> list[tuple[float, float]]:
        env = self.env()
        args = [self.bin(), "--app=benchtasks.app", "worker", "--concurrency", "1"]
        with (
            (self.work / "idle.log").open("wb") as log,
            running(args, env=env, cwd=self.work, stdout=log, stderr=log),
        ):
            rows = "SELECT count(*) FROM procrastinate_workers"
            wait_for(lambda: pg(self.url, rows, schema=self.schema)[0][0] >= 1, 60, "a worker")
            lines = [str(self.python), "-c", PROCRASTINATE_LINES, self.task]
            with line_enqueuer(lines, env=env, cwd=self.work) as enqueue:
                return latency_samples(enqueue, self.work, n)


#: Procrastinate's two rows and the task each runs.
PROCRASTINATE_TASKS_BY_SYSTEM = {"procrastinate": "run", "procrastinate (async)": "run_async"}


# The workloads -----------------------------------------------------------------------------


class PostgresBench(Bench):
    """W2, W4 and W6 on queuectl's two stores (and Procrastinate) against one server."""

    def __init__(
        self,
        url: str,
        sizes: Sizes,
        work: Path,
        *,
        procrastinate: bool,
        baseline: Build | None = None,
    ) -> None:
        super().__init__(sizes, work)
        self.url = url
        self.procrastinate = ensure_procrastinate() if procrastinate else None
        self.baseline = baseline

    def systems(self) -> list[str]:
        """queuectl's two stores (and the baseline build's), then Procrastinate with its
        sync and its async task (the targets compare with the faster of the two)."""
        found = ["sqlite", "postgres"]
        if self.baseline is not None:
            found += [f"sqlite{self.baseline.suffix}", f"postgres{self.baseline.suffix}"]
        if self.procrastinate:
            found += list(PROCRASTINATE_TASKS_BY_SYSTEM)
        return found

    def build(self, system: str) -> Build:
        """The queuectl build a system name stands for."""
        if self.baseline is not None and system.endswith(self.baseline.suffix):
            return self.baseline
        return THIS

    def peer(self, system: str, work: Path) -> Procrastinate:
        assert self.procrastinate is not None
        task = PROCRASTINATE_TASKS_BY_SYSTEM[system]
        return Procrastinate(self.procrastinate, self.url, work, task)

    def drain_once(self, system: str, count: int) -> tuple[float, bool]:
        work = self.fresh(f"w2-{system}-{count}")
        try:
            if system in PROCRASTINATE_TASKS_BY_SYSTEM:
                peer = self.peer(system, work)
                try:
                    return peer.drain(self.sizes.w2_jobs, count)
                finally:
                    peer.close()
            store = make_store(system, work, self.url)
            try:
                return queuectl_drain(store, work, self.sizes.w2_jobs, count, self.build(system))
            finally:
                store.close()
        finally:
            self.clean(work)

    def w2(self) -> dict[str, Any]:
        n = self.sizes.w2_jobs
        cells: dict[tuple[str, int], list[tuple[float, bool]]] = {}
        for round_no in range(self.sizes.rounds):
            for count in self.sizes.w2_counts:
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
                "jobs_per_s": round(n / median([s for s, _ in results]), 1),
                "exactly_once": all(once for _, once in results),
            }
            for (system, count), results in cells.items()
        ]
        return {"jobs": n, "command": "true", "runs": runs}

    def w4(self) -> dict[str, Any]:
        samples: dict[str, list[tuple[float, float]]] = {}
        per_round = max(1, -(-self.sizes.w4_samples // self.sizes.rounds))
        for _ in range(self.sizes.rounds):
            for system in self.systems():
                work = self.fresh(f"w4-{system}")
                try:
                    samples.setdefault(system, []).extend(self._latency(system, work, per_round))
                finally:
                    self.clean(work)
        return {name: latency_summary(values) for name, values in samples.items()}

    def _latency(self, system: str, work: Path, n: int) -> list[tuple[float, float]]:
        if system in PROCRASTINATE_TASKS_BY_SYSTEM:
            peer = self.peer(system, work)
            try:
                return peer.latency(n)
            finally:
                peer.close()
        store = make_store(system, work, self.url)
        try:
            return queuectl_latency(store, work, n, self.build(system))
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
                    figures[label] = w6_measure(
                        store.target(),
                        self.sizes.w6_samples,
                        partial(queuectl_latency, store, work),
                    )
                    figures[label]["build_s"] = round(built, 1)
                    note(f"W6 {system} {label}: {figures[label]}")
                finally:
                    store.close()
                    self.clean(work)
            found[system] = {**figures, "ratio": w6_ratio(figures)}
        return {"jobs": self.sizes.w6_jobs, **found}


#: ``benchlib.W6_SQLITE``'s history, and the pending jobs, in PostgreSQL's dialect.
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
    create_store(store.env())
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
    build_sqlite_history(store.path, history, pending)


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
            for peer in PROCRASTINATE_TASKS_BY_SYSTEM:
                if "postgres" in rate and peer in rate:
                    lines.append(
                        f"  postgres/{peer} at count {count}: {rate['postgres'] / rate[peer]:.2f}"
                    )
    w4 = results.get("W4")
    if w4:
        lines.append("W4: enqueue return -> command start, ms")
        for name, s in w4.items():
            # Runs saved before the scripts shared one summary named the keys p50_ms, ...
            a = s.get("after_return_ms") or {k: s[f"{k}_ms"] for k in ("p50", "p99", "max")}
            lines.append(
                f"  {name:<14} p50 {a['p50']:7.2f}  p99 {a['p99']:7.2f}  max {a['max']:7.2f}"
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


def run_all(
    url: str,
    sizes: Sizes,
    *,
    only: list[str] | None = None,
    procrastinate: bool = True,
    baseline: Build | None = None,
) -> dict[str, Any]:
    """Run the workloads; what ``scripts/bench.py --db URL`` calls, too."""
    here = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="queuectl-bench-pg-") as tmp:
        # Helpers run `python -c`, which imports from the current folder first.
        os.chdir(tmp)
        try:
            bench = PostgresBench(
                url, sizes, Path(tmp), procrastinate=procrastinate, baseline=baseline
            )
            results: dict[str, Any] = {
                "server": pg(url, "SELECT version()")[0][0],
                "loadavg_before": os.getloadavg(),
            }
            results.update(bench.measure(only or ["W2", "W4", "W6"]))
            results["loadavg_after"] = os.getloadavg()
        finally:
            os.chdir(here)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", default=os.environ.get("QUEUECTL_BENCH_PG", DEFAULT_URL))
    parser.add_argument("--quick", action="store_true", help="small sizes, one round")
    parser.add_argument("--only", default="W2,W4,W6", help="comma-separated workloads")
    parser.add_argument("--counts", default="1,4", help="W2 --count values (default 1,4)")
    parser.add_argument("--rounds", type=int, help="rounds (default 3; --quick 1)")
    parser.add_argument("--w6-jobs", type=int, help="W6 history size (default 1,000,000)")
    parser.add_argument("--no-procrastinate", action="store_true")
    parser.add_argument(
        "--baseline", type=Path, metavar="VENV", help="also run another build's queuectl"
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    sizes = replace(
        QUICK if args.quick else FULL, w2_counts=tuple(int(c) for c in args.counts.split(","))
    )
    if args.rounds:
        sizes = replace(sizes, rounds=args.rounds)
    if args.w6_jobs:
        sizes = replace(sizes, w6_jobs=args.w6_jobs)
    baseline = Build.from_venv(args.baseline.absolute()) if args.baseline else None
    for build in [THIS] + ([baseline] if baseline else []):
        warm_bytecode(build)
    results = run_all(
        args.db,
        sizes,
        only=[w.strip() for w in args.only.split(",") if w.strip()],
        procrastinate=not args.no_procrastinate,
        baseline=baseline,
    )
    if args.json:
        args.json.resolve().write_text(json.dumps(results, indent=2) + "\n")
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
