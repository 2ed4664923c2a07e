"""The pump in-process on a real SQLite file: what goes into each transaction, and when.

The store is wrapped only to count and observe its ``exchange`` calls (and, where a
fault is the subject, to fail one); every write still lands in the real file.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from queuectl.backends.sqlite import SqliteBackend
from queuectl.clock import now_ms
from queuectl.exceptions import BackendError
from queuectl.models import ExecutionResult, Finish, JobState, Outcome
from queuectl.pump import Pump
from tests.helpers import new_job

TIMEOUT_S = 10


class Recording:
    """A real store whose ``exchange`` calls are recorded; ``before`` may interfere."""

    def __init__(self, store: SqliteBackend) -> None:
        self.store = store
        self.calls: list[dict[str, Any]] = []
        self.before: Callable[[dict[str, Any]], None] | None = None

    async def exchange(self, **kw: Any) -> Any:
        self.calls.append(kw)
        if self.before is not None:
            self.before(kw)
        return await self.store.exchange(**kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


@pytest.fixture
async def recorded(db_path: Path) -> AsyncIterator[Recording]:
    backend = await SqliteBackend.open(str(db_path))
    try:
        yield Recording(backend)
    finally:
        await backend.aclose()


def make_pump(recorded: Recording, **kw: Any) -> Pump:
    backend: Any = recorded
    return Pump(backend, worker_id="w1", queues=None, lease_ms=10_000, clock=now_ms, **kw)


async def pumping(pump: Pump) -> asyncio.Task[None]:
    return asyncio.create_task(pump.run())


async def closed(pump: Pump, task: asyncio.Task[None]) -> None:
    pump.close()
    async with asyncio.timeout(TIMEOUT_S):
        await task


async def test_idle_slots_are_filled_by_one_claim(recorded: Recording) -> None:
    await recorded.enqueue([new_job(f"j{i}", now=now_ms()) for i in range(5)], now=now_ms())
    pump = make_pump(recorded)
    wanted = [pump.want_job() for _ in range(3)]
    task = await pumping(pump)
    async with asyncio.timeout(TIMEOUT_S):
        claims = await asyncio.gather(*wanted)
    await closed(pump, task)
    assert sorted(c.job.id for c in claims if c is not None) == ["j0", "j1", "j2"]
    assert [c["claim"] for c in recorded.calls] == [3]


async def test_a_finish_and_the_next_claim_share_one_transaction(recorded: Recording) -> None:
    await recorded.enqueue([new_job("a", now=now_ms()), new_job("b", now=now_ms())], now=now_ms())
    pump = make_pump(recorded)
    first = pump.want_job()
    task = await pumping(pump)
    async with asyncio.timeout(TIMEOUT_S):
        claim = await first
        assert claim is not None
        done = pump.finished(Finish(claim.job.id, claim.token, 1, 3, ExecutionResult(exit_code=0)))
        second = await pump.want_job()
        result = await done
    await closed(pump, task)
    assert (result.held, result.state) == (True, JobState.COMPLETED)
    assert second is not None and second.job.id == "b"
    assert [(len(c.get("finishes", ())), c["claim"]) for c in recorded.calls] == [(0, 1), (1, 1)]


async def test_a_claim_that_lands_after_the_stop_goes_back_without_an_attempt(
    recorded: Recording,
) -> None:
    await recorded.enqueue([new_job("late", now=now_ms(), max_retries=0)], now=now_ms())
    pump = make_pump(recorded)
    # The stop comes while the claim is in flight: the slot no longer wants the job.
    recorded.before = lambda call: pump.stop_claiming() if call["claim"] else None
    wanted = pump.want_job()
    task = await pumping(pump)
    async with asyncio.timeout(TIMEOUT_S):
        assert await wanted is None
    await closed(pump, task)
    job = await recorded.get_job("late")
    assert job is not None
    # Handed back as if never claimed: no attempt row, no claim counted.
    assert (job.state, job.attempts, job.claims) == (JobState.PENDING, 0, 0)
    assert await recorded.history("late") == []


async def test_a_result_survives_a_failed_transaction(
    recorded: Recording, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("queuectl.pump._RETRY_MAX_S", 0.01)
    await recorded.enqueue([new_job("a", now=now_ms())], now=now_ms())
    pump = make_pump(recorded)
    first = pump.want_job()
    task = await pumping(pump)
    failures = iter([True])

    def fail_once(call: dict[str, Any]) -> None:
        if call.get("finishes") and next(failures, False):
            raise BackendError("database is locked")

    async with asyncio.timeout(TIMEOUT_S):
        claim = await first
        assert claim is not None
        recorded.before = fail_once
        result = await pump.finished(
            Finish("a", claim.token, 1, 3, ExecutionResult(exit_code=0, output_tail=b"ok"))
        )
    await closed(pump, task)
    assert (result.held, result.state) == (True, JobState.COMPLETED)
    assert [len(c.get("finishes", ())) for c in recorded.calls[1:3]] == [1, 1]
    out = await recorded.attempt_output("a", None)
    assert out is not None and out.output == b"ok"


async def test_an_idle_pump_wakes_when_the_next_job_falls_due(
    recorded: Recording, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The slow poll is a minute away: only the due time can wake the pump.
    monkeypatch.setattr("queuectl.pump.POLL_S", 60.0)
    due = now_ms() + 300
    await recorded.enqueue([new_job("soon", next_run_at=due, run_at=due)], now=now_ms())
    pump = make_pump(recorded)
    wanted = pump.want_job()
    task = await pumping(pump)
    async with asyncio.timeout(TIMEOUT_S):
        claim = await wanted
    claimed_at = now_ms()
    await closed(pump, task)
    assert claim is not None and claim.job.id == "soon"
    assert due <= claimed_at < due + 5_000
    assert recorded.calls[0]["claim"] == 1 and len(recorded.calls) == 2


async def test_burst_drains_once_nothing_is_due_or_running(recorded: Recording) -> None:
    later = now_ms() + 3_600_000
    await recorded.enqueue(
        [new_job("now", now=now_ms()), new_job("later", next_run_at=later, run_at=later)],
        now=now_ms(),
    )
    drained = asyncio.Event()
    pump = make_pump(recorded, on_drained=drained.set)
    first = pump.want_job()
    task = await pumping(pump)
    started = time.monotonic()
    async with asyncio.timeout(TIMEOUT_S):
        claim = await first
        assert claim is not None
        pump.want_job()  # the slot asks again: nothing else is due
        await asyncio.sleep(0.2)
        assert not drained.is_set()  # "now" still runs
        await pump.finished(Finish("now", claim.token, 1, 3, ExecutionResult(exit_code=0)))
        await drained.wait()
    await closed(pump, task)
    assert time.monotonic() - started < 5


async def test_a_job_given_back_is_unclaimed_and_the_next_claim_takes_it_again(
    recorded: Recording,
) -> None:
    await recorded.enqueue([new_job(i, now=now_ms()) for i in ("a", "b")], now=now_ms())
    pump = make_pump(recorded)
    task = await pumping(pump)
    async with asyncio.timeout(TIMEOUT_S):
        first = await pump.want_job()
        assert first is not None and first.job.id == "a"
        pump.give_back(first)
        again = await pump.want_job()
    await closed(pump, task)
    assert again is not None and (again.job.id, again.token, again.job.attempts) == ("a", 1, 1)
    assert [a.attempt for a in await recorded.history("a")] == [1]


async def test_a_job_given_back_after_a_cancel_request_ends_cancelled(
    recorded: Recording,
) -> None:
    """The store will not unclaim it: the pump finishes it as interrupted, so the cancel applies."""
    await recorded.enqueue([new_job("x", now=now_ms())], now=now_ms())
    pump = make_pump(recorded)
    task = await pumping(pump)
    async with asyncio.timeout(TIMEOUT_S):
        claim = await pump.want_job()
        assert claim is not None
        await recorded.cancel(["x"], now=now_ms())
        pump.give_back(claim)
    await closed(pump, task)
    job = await recorded.get_job("x")
    assert job is not None and job.state is JobState.CANCELLED
    assert [a.outcome for a in await recorded.history("x")] == [Outcome.INTERRUPTED]
