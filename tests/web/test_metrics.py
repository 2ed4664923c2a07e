"""``/metrics``: the store's numbers, in Prometheus' text format."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from queuectl.clock import now_ms
from queuectl.models import ExecutionResult, Finish
from queuectl.queue import Queue
from queuectl.web import create_app
from tests.conftest import FrozenClock
from tests.integration.test_backend_contract import _delete_all_jobs


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
    # No attempt has finished yet: every outcome of every queue is there, at zero.
    for name in ("mail", "default"):
        for outcome in ("completed", "failed", "dead", "cancelled", "lost", "interrupted"):
            assert (
                got[("queuectl_jobs_finished_total", (("outcome", outcome), ("queue", name)))] == 0
            )
        assert got[("queuectl_job_duration_seconds_count", (("queue", name),))] == 0


async def scrape(queue: Queue) -> str:
    transport = httpx.ASGITransport(app=create_app(queue))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
        answer = await c.get("/metrics")
    assert answer.status_code == 200
    return answer.text


async def test_finished_attempts_are_counters_that_removing_jobs_does_not_lower(db: str) -> None:
    async with Queue.open(db) as queue:
        await queue.enqueue(
            {"id": "ok", "command": "true", "queue": "mail"},
            {"id": "bad", "command": "false", "max_retries": 0},
        )
        backend = queue.backend
        claims = (await backend.exchange(worker_id="w", claim=2, now=now_ms())).claims
        results = {"ok": ExecutionResult(exit_code=0), "bad": ExecutionResult(exit_code=1)}
        finishes = [
            Finish(c.job.id, c.token, c.job.attempts, c.job.max_retries, results[c.job.id])
            for c in claims
        ]
        await backend.exchange(worker_id="w", finishes=finishes, now=now_ms())
        text = await scrape(queue)
        assert "# TYPE queuectl_jobs_finished_total counter" in text
        assert "# TYPE queuectl_job_duration_seconds histogram" in text
        got = samples(text)
        await _delete_all_jobs(backend)
    # Another process over the same store, after every job was removed: the same numbers.
    async with Queue.open(db) as other:
        again = samples(await scrape(other))
    finished = {
        k: v
        for k, v in got.items()
        if k[0].startswith(("queuectl_jobs_finished", "queuectl_job_duration"))
    }
    assert finished == {k: v for k, v in again.items() if k in finished}
    assert got[("queuectl_jobs_finished_total", (("outcome", "completed"), ("queue", "mail")))] == 1
    assert got[("queuectl_jobs_finished_total", (("outcome", "dead"), ("queue", "default")))] == 1
    assert got[("queuectl_jobs_finished_total", (("outcome", "failed"), ("queue", "default")))] == 0
    for name in ("mail", "default"):
        assert got[("queuectl_job_duration_seconds_count", (("queue", name),))] == 1
        assert got[("queuectl_job_duration_seconds_bucket", (("le", "+Inf"), ("queue", name)))] == 1
        assert got[("queuectl_job_duration_seconds_bucket", (("le", "0.01"), ("queue", name)))] in (
            0,
            1,
        )
        assert (
            got[("queuectl_job_duration_seconds_bucket", (("le", "3600.0"), ("queue", name)))] == 1
        )
