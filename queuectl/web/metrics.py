"""``/metrics``: the store's numbers in Prometheus' text format.

Every scrape reads the store (a few indexed reads: the kept per-queue counters,
the live workers, the oldest due job of each queue), then a ``Collector`` turns
that reading into metric families. Nothing is counted in this process, so every
``web`` process over one store reports the same numbers.

Not here yet: ``queuectl_jobs_finished_total{queue,outcome}`` and
``queuectl_job_duration_seconds{queue}``. They must be counters that never go
down, kept by the store in the transaction that finishes an attempt; counting the
attempts table would go down after ``purge``, so it is not offered in their place.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from queuectl.models import JobState
from queuectl.queue import Queue


@dataclass(frozen=True, slots=True)
class Reading:
    queues: dict[str, dict[JobState, int]]
    workers: int
    oldest_due_s: dict[str, float]
    paused: dict[str, bool]


async def read(queue: Queue) -> Reading:
    queues = await queue.queue_counts()
    waiting = [q for q, c in queues.items() if c[JobState.PENDING] or c[JobState.FAILED]]
    ages = await queue.oldest_due(waiting)
    workers = sum(w.count for w in await queue.live_workers())
    return Reading(
        queues=queues,
        workers=workers,
        oldest_due_s={q: ages.get(q, 0.0) for q in queues},
        # Queues cannot be paused yet (issue 11 brings `queue pause`): all 0 until then.
        paused=dict.fromkeys(queues, False),
    )


class StoreCollector(Collector):
    """Metric families from one reading of the store."""

    def __init__(self, reading: Reading) -> None:
        self.reading = reading

    def collect(self) -> Iterator[Metric]:
        r = self.reading
        jobs = GaugeMetricFamily(
            "queuectl_jobs", "Jobs in the store, per queue and state.", labels=["queue", "state"]
        )
        for name, counts in r.queues.items():
            for state in JobState:
                jobs.add_metric([name, state.value], counts[state])
        yield jobs
        yield GaugeMetricFamily(
            "queuectl_workers", "Live worker coroutines (slots) over the store.", value=r.workers
        )
        paused = GaugeMetricFamily(
            "queuectl_queue_paused", "1 when the queue is paused, else 0.", labels=["queue"]
        )
        for name, flag in r.paused.items():
            paused.add_metric([name], 1 if flag else 0)
        yield paused
        due = GaugeMetricFamily(
            "queuectl_oldest_due_seconds",
            "How long the longest-waiting due job of the queue has waited (0 when none).",
            labels=["queue"],
        )
        for name, age in r.oldest_due_s.items():
            due.add_metric([name], age)
        yield due


async def exposition(queue: Queue) -> tuple[bytes, str]:
    """The text of one scrape and its content type."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(await read(queue)))
    return generate_latest(registry), CONTENT_TYPE_LATEST
