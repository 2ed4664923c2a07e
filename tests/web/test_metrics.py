"""``/metrics``: the store's numbers, in Prometheus' text format."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from queuectl.clock import now_ms
from queuectl.queue import Queue
from queuectl.web import create_app
from tests.conftest import FrozenClock


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


async def test_metrics_report_the_stores_counts_workers_and_waiting(db: str) -> None:
    # Started at the real time: PostgreSQL stamps jobs with its own clock.
    clock = FrozenClock(start=now_ms())
    async with Queue.open(db, clock=clock) as queue:
        await queue.enqueue(
            {"id": "m1", "command": "true", "queue": "mail"},
            {"id": "m2", "command": "true", "queue": "mail"},
            {"id": "m3", "command": "true", "delay": 3600},
        )
        clock.advance(42)
        app = create_app(queue)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            answer = await c.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=")
    got = samples(answer.text)
    assert got[("queuectl_jobs", (("queue", "mail"), ("state", "pending")))] == 2
    assert got[("queuectl_jobs", (("queue", "mail"), ("state", "dead")))] == 0
    assert got[("queuectl_jobs", (("queue", "default"), ("state", "pending")))] == 1
    assert got[("queuectl_workers", ())] == 0
    assert got[("queuectl_queue_paused", (("queue", "mail"),))] == 0
    # mail's jobs were due at enqueue, 42 s ago; default's only job is not due yet.
    assert abs(got[("queuectl_oldest_due_seconds", (("queue", "mail"),))] - 42) < 2
    assert got[("queuectl_oldest_due_seconds", (("queue", "default"),))] == 0
    # Not offered until the store keeps them as counters (see queuectl/web/metrics.py).
    assert not any(name.startswith("queuectl_jobs_finished") for name, _ in got)
