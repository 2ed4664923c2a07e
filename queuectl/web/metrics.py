"""``/metrics``: the store's numbers in Prometheus' text format.

Every scrape reads the store (a few indexed reads: the kept per-queue counters,
the finished-attempt counters, the live workers, the oldest due job of each queue),
then a ``Collector`` turns that reading into metric families. Nothing is counted in
this process, so every ``web`` process over one store reports the same numbers, and
``queuectl_jobs_finished_total`` and ``queuectl_job_duration_seconds`` never go
down: the store keeps them in the transaction that finishes each attempt, apart from
the attempts table that ``purge`` and ``rm`` shrink.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from queuectl.backends.base import FinishedTotals
from queuectl.backends.bookkeeping import DURATION_BOUNDS_MS, OVER_MS, TALLIES
from queuectl.models import JobState
from queuectl.queue import Queue


@dataclass(frozen=True, slots=True)
class Reading:
    queues: dict[str, dict[JobState, int]]
    workers: int
    oldest_due_s: dict[str, float]
    paused: dict[str, bool]
    finished: FinishedTotals


async def read(queue: Queue) -> Reading:
    queues = await queue.queue_counts()
    waiting = [q for q, c in queues.items() if c[JobState.PENDING] or c[JobState.FAILED]]
    ages = await queue.oldest_due(waiting)
    workers = sum(w.count for w in await queue.live_workers())
    settings = await queue.queue_settings()
    return Reading(
        queues=queues,
        workers=workers,
        oldest_due_s={q: ages.get(q, 0.0) for q in queues},
        # Every queue with jobs or settings (as `queue list`): a paused queue without
        # jobs yet still reads 1.
        paused={q: settings.paused(q) for q in sorted({*queues, *settings.queues})},
        finished=await queue.finished_totals(),
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
        yield from finished_families(r.finished, r.queues)


def finished_families(totals: FinishedTotals, queues: Iterable[str]) -> Iterator[Metric]:
    """The finished-attempt counter and the duration histogram, every queue and outcome
    present (zeros too), so a rate over them never starts from a missing series."""
    names = sorted({*queues, *totals.counts, *totals.buckets})
    finished = CounterMetricFamily(
        "queuectl_jobs_finished",
        "Attempts finished, by how they ended (failed: will be retried).",
        labels=["queue", "outcome"],
    )
    durations = HistogramMetricFamily(
        "queuectl_job_duration_seconds",
        "How long finished attempts ran.",
        labels=["queue"],
    )
    for name in names:
        counts = totals.counts.get(name, {})
        for outcome in TALLIES:
            finished.add_metric([name, outcome], counts.get(outcome, 0))
        per_bucket = totals.buckets.get(name, {})
        running = 0
        buckets: list[tuple[str, float]] = []
        for bound in DURATION_BOUNDS_MS:
            running += per_bucket.get(bound, 0)
            # As prometheus_client writes its own bounds: "0.01", "1.0", "3600.0".
            buckets.append((str(bound / 1000), running))
        buckets.append(("+Inf", running + per_bucket.get(OVER_MS, 0)))
        durations.add_metric([name], buckets, totals.sum_ms.get(name, 0) / 1000)
    yield finished
    yield durations


async def exposition(queue: Queue) -> tuple[bytes, str]:
    """The text of one scrape and its content type."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(await read(queue)))
    return generate_latest(registry), CONTENT_TYPE_LATEST
