"""CPU per job of the SQLite store's exchange cycle, in-process (no commands run).

W2 drains ``true`` jobs, so the store's hot path (one ``exchange`` per cycle:
record the starts, finish the attempts, claim the next jobs) is most of a
worker's CPU. This drives that path directly, as the pump does for jobs that end
at once: claim ``--count`` jobs, then every cycle reports their starts and
successful finishes and claims as many again, until the queue is empty. It
prints the process's CPU time (``time.process_time``: the event loop and the
database thread) per job, median of ``--rounds`` fresh databases.

    .venv/bin/python scripts/bench_exchange.py --jobs 2000 --count 1 --rounds 5
    .venv/bin/python scripts/bench_exchange.py --src /tmp/before --src .   # compare

Each ``--src`` is a checkout whose queuectl is imported instead of the installed
one; with several, every round runs each of them once in turn, each in a fresh
process (A B A B ...), so a drifting machine load hits them alike.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any


async def _drain(q: Any, jobs: int, count: int, tmp: str) -> float:
    from queuectl.backends.sqlite import SqliteBackend
    from queuectl.models import ExecutionResult, Finish, NewJob, ProcessStart, WorkerInfo

    backend = await SqliteBackend.open(os.path.join(tmp, "q.db"), durable=False)
    now = int(time.time() * 1000)
    await backend.enqueue(
        [NewJob(id=f"j{i}", command="true", max_retries=3) for i in range(jobs)], now=now
    )
    worker = "bench-worker"
    info = WorkerInfo(worker, "host", os.getpid(), now, now, count, 0)
    await backend.register_worker(info, now=now)
    ok = ExecutionResult(exit_code=0, duration_s=0.001)
    done = 0
    started = time.process_time()
    held = (await backend.exchange(worker_id=worker, claim=count, now=now)).claims
    while held:
        now += 1
        starts = [
            ProcessStart(c.job.id, c.token, "host", 1, 1, "boot:1", None, slot)
            for slot, c in enumerate(held)
        ]
        finishes = [Finish(c.job.id, c.token, c.job.attempts, c.job.max_retries, ok) for c in held]
        done += len(held)
        answer = await backend.exchange(
            worker_id=worker, starts=starts, finishes=finishes, claim=count, now=now
        )
        held = answer.claims
    spent = time.process_time() - started
    await backend.aclose()
    if done != jobs:
        raise SystemExit(f"finished {done} of {jobs} jobs")
    return spent / jobs


def _round(src: str | None, jobs: int, count: int) -> float:
    if src is not None:
        sys.path.insert(0, os.path.abspath(src))
    with tempfile.TemporaryDirectory() as tmp:
        return asyncio.run(_drain(None, jobs, count, tmp))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--count", type=int, default=1, help="jobs per cycle (worker --count)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--src", action="append", help="a checkout whose queuectl to import")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    srcs: list[str | None] = args.src or [None]
    if args.one:
        print(_round(srcs[0], args.jobs, args.count))
        return
    per_job: dict[str | None, list[float]] = {s: [] for s in srcs}
    for _ in range(args.rounds):
        for src in srcs:
            cmd = [sys.executable, __file__, "--one", "--jobs", str(args.jobs)]
            cmd += ["--count", str(args.count), *(["--src", src] if src else [])]
            per_job[src].append(float(subprocess.check_output(cmd, text=True)))
    for src, spent in per_job.items():
        print(
            f"{src or 'installed'}: count={args.count} jobs={args.jobs}:"
            f" CPU per job {statistics.median(spent) * 1e6:.0f} µs"
            f" (median of {args.rounds}; min {min(spent) * 1e6:.0f}, max {max(spent) * 1e6:.0f})"
        )


if __name__ == "__main__":
    main()
