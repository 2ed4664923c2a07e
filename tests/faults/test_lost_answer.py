"""An exchange that committed but whose answer was lost with the connection.

The worker cannot know whether a failed exchange's claims were committed. If
they were, the store says the worker holds jobs that no slot runs, and the
worker's own heartbeat would keep their leases alive for as long as it lives: the
jobs would be stuck in ``processing``. The pump asks the store what it holds and
hands such claims back, uncharged, before it claims again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from queuectl.exceptions import StoreUnreachable
from queuectl.models import ExecutionResult, Finish
from queuectl.pump import Pump
from tests.conftest import FrozenClock
from tests.helpers import new_job


class LosesAnswers:
    """A store whose first claiming exchange commits, then loses its answer."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.lost = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def exchange(self, **kwargs: Any) -> Any:
        result = await self.inner.exchange(**kwargs)
        if kwargs.get("claim") and not self.lost:
            self.lost += 1
            raise StoreUnreachable("lost the connection to the store (a test)")
        return result


async def test_a_claim_whose_answer_was_lost_is_handed_back_uncharged(
    backend: Any, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    await backend.enqueue([new_job("j1", now=clock.now)], now=clock.now)
    store = LosesAnswers(backend)
    pump = Pump(store, worker_id="w1", queues=None, lease_ms=60_000, clock=clock)
    runner = asyncio.create_task(pump.run())
    try:
        with caplog.at_level(logging.WARNING, logger="queuectl.worker"):
            claim = await asyncio.wait_for(pump.want_job(), 30)
        assert store.lost == 1
        assert claim is not None and claim.job.id == "j1"
        # The lost claim was the first; it went back without using up an attempt.
        assert (claim.token, claim.job.attempts) == (2, 1)
        assert "answer was lost; handing it back" in caplog.text
        done = pump.finished(
            Finish("j1", claim.token, claim.job.attempts, 3, ExecutionResult(exit_code=0))
        )
        assert (await asyncio.wait_for(done, 30)).held
    finally:
        pump.close()
        await asyncio.wait_for(runner, 30)
    history = await backend.history("j1")
    assert [a.outcome.value for a in history] == ["interrupted", "completed"]
