#!/usr/bin/env python3
"""How fast the dashboard answers on an empty queue and on a big one.

Usage: scripts/web_latency.py [--jobs N] [--db PATH]

Fills a SQLite queue with N jobs (default 1,000,000: most completed, some dead,
some pending) unless PATH already holds them, then times each page, the JSON API
and a /metrics scrape through the ASGI app in this process (no network), median
of several requests, and the same on an empty queue. Prints one line per URL.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from queuectl.jobspec import RawJob
from queuectl.queue import Queue
from queuectl.web import create_app

URLS = [
    "/",
    "/jobs",
    "/jobs?state=pending",
    "/jobs?state=dead",
    "/jobs?queue=rare",
    "/jobs?q=job-0999",
    "/jobs?q=needle",
    "/jobs?before=500000",
    "/dlq",
    "/workers",
    "/jobs/job-0500000",
    "/api/status",
    "/api/jobs",
    "/api/jobs?state=dead&limit=50",
    "/metrics",
]
BATCH = 100_000


async def fill(queue: Queue, n: int) -> None:
    have = sum((await queue.counts()).values())
    for start in range(have, n, BATCH):
        raws = [
            RawJob(
                i + 1,
                None,
                {
                    "id": f"job-{i:07d}",
                    "command": "make needle" if i % 100_000 == 7 else f"echo {i}",
                    "queue": "rare" if i % 50_000 == 3 else "default",
                },
            )
            for i in range(start, min(start + BATCH, n))
        ]
        await queue.enqueue_raw(raws)
        print(f"  enqueued {min(start + BATCH, n):,}", file=sys.stderr)


def settle(db: str) -> None:
    """Test data only: most jobs completed, a few dead, a tenth still pending.

    Running a million commands would take an hour; the states are what the pages
    read, so they are set directly (the counters follow through their triggers).
    """
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(
            "UPDATE jobs SET state = CASE WHEN seq % 1000 = 5 THEN 'dead' ELSE 'completed' END,"
            " next_run_at = NULL WHERE seq % 10 != 0 AND state = 'pending'"
        )
    conn.close()


async def measure(db: str, repeat: int) -> dict[str, float]:
    async with Queue.open(db) as queue:
        app = create_app(queue)
        transport = httpx.ASGITransport(app=app)
        times: dict[str, float] = {}
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            for url in URLS:
                samples = []
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    answer = await c.get(url)
                    samples.append(time.perf_counter() - t0)
                    if answer.status_code not in (200, 404):
                        raise SystemExit(f"{url}: {answer.status_code} {answer.text[:200]}")
                times[url] = statistics.median(samples) * 1000
        return times


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--db", default=None)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        empty = await measure(str(Path(tmp) / "empty.db"), args.repeat)
        big_db = args.db or str(Path(tmp) / "big.db")
        async with Queue.open(big_db) as queue:
            await fill(queue, args.jobs)
        settle(big_db)
        big = await measure(big_db, args.repeat)
    print(f"{'URL':36} {'empty ms':>9} {f'{args.jobs:,} jobs ms':>16}")
    for url in URLS:
        print(f"{url:36} {empty[url]:9.1f} {big[url]:16.1f}")


if __name__ == "__main__":
    asyncio.run(main())
