"""Processes of concurrent claimers for the exactly-once test (imported by ``spawn`` children).

Each process opens several ``SqliteBackend`` connections of its own and runs one
claim loop per connection, as a worker slot would: claim a few, report them done in
the next exchange together with the next claim, until nothing is left.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from queuectl.backends.sqlite import SqliteBackend
from queuectl.clock import now_ms
from queuectl.models import ExecutionResult, Finish

Record = tuple[str, int, str]


async def _claim_loop(backend: SqliteBackend, worker_id: str, seed: int) -> list[Record]:
    rng = random.Random(seed)
    claimed: list[Record] = []
    finishes: list[Finish] = []
    while True:
        result = await backend.exchange(
            worker_id=worker_id,
            finishes=finishes,
            claim=rng.randint(1, 4),
            lease_ms=600_000,
            now=now_ms(),
        )
        assert all(f.held for f in result.finished), result.finished
        if not result.claims:
            return claimed
        finishes = []
        for c in result.claims:
            claimed.append((c.job.id, c.token, worker_id))
            finishes.append(
                Finish(c.job.id, c.token, c.job.attempts, c.job.max_retries, ExecutionResult(0))
            )
        await asyncio.sleep(0)


async def _run(db: str, index: int, connections: int, barrier: Any) -> list[Record]:
    backends = [await SqliteBackend.open(db, durable=False) for _ in range(connections)]
    try:
        # Everyone starts together, or the first process would drain the queue alone.
        await asyncio.get_running_loop().run_in_executor(None, barrier.wait, 30)
        loops = [
            _claim_loop(b, f"p{index}c{i}", seed=index * 100 + i) for i, b in enumerate(backends)
        ]
        results = await asyncio.gather(*loops)
    finally:
        for b in backends:
            await b.aclose()
    return [r for loop in results for r in loop]


def claimer_process(db: str, index: int, connections: int, barrier: Any, out: Any) -> None:
    try:
        out.put((index, asyncio.run(_run(db, index, connections, barrier)), None))
    except BaseException as exc:
        out.put((index, [], repr(exc)))
        raise
