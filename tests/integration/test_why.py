"""``why``: every reason code reference §18 names that exists yet, on both stores."""

from __future__ import annotations

from typing import Any

from queuectl.models import ALL_QUEUES, ExecutionResult, ProcessStart, WorkerInfo
from queuectl.queue import Queue
from tests.conftest import FrozenClock
from tests.integration.test_backend_contract import OK, claim, finish, job


async def codes(q: Queue, job_id: str) -> list[str]:
    return [r.code for r in (await q.why(job_id)).reasons]


async def add_worker(backend: Any, now: int, wid: str, count: int, *queues: str) -> None:
    info = WorkerInfo(wid, "elsewhere", 4242, now, now, count=count, jobs_done=0, queues=queues)
    await backend.register_worker(info, now=now)


async def test_what_holds_a_waiting_job(backend: Any, clock: FrozenClock) -> None:
    now = clock()
    q = Queue(backend, clock=clock)
    await backend.enqueue(
        [
            job("later", now, run_at=now + 300_000),
            job("mail", now, queue="emails"),
            job("flaky", now, command="exit 1", max_retries=2),
        ],
        now=now,
    )
    assert await codes(q, "later") == ["due_later", "no_worker"]
    assert "`queuectl update later --now`" in (await q.why("later")).reasons[0].message
    await backend.set_paused(["emails"], paused=True)
    why = await q.why("mail")
    assert [r.code for r in why.reasons] == ["queue_paused", "no_worker"]
    assert why.reasons[0].message == "queue emails is paused: `queuectl queue resume emails`"
    await backend.set_paused([ALL_QUEUES], paused=True)
    assert await codes(q, "mail") == ["all_paused", "queue_paused", "no_worker"]
    await backend.resume_all()
    await add_worker(backend, now, "w-other", 2, "reports")
    assert await codes(q, "mail") == ["no_worker_for_queue"]
    assert "`queuectl worker start --queue emails`" in (await q.why("mail")).reasons[0].message
    # A failed attempt waits for its retry.
    [c] = await claim(backend, now, queues=["default"], worker="w-other")
    assert c.job.id == "flaky"
    assert await codes(q, "flaky") == ["running"]
    await finish(backend, c, ExecutionResult(exit_code=1), now, worker="w-other")
    assert await codes(q, "flaky") == ["retry_backoff", "no_worker_for_queue"]


async def test_limit_behind_ready_running_and_finished(backend: Any, clock: FrozenClock) -> None:
    now = clock()
    q = Queue(backend, clock=clock)
    await backend.enqueue(
        [job("first", now), job("second", now), job("third", now), job("low", now, priority=-5)],
        now=now,
    )
    await add_worker(backend, now, "w1", 1)
    assert await codes(q, "second") == ["ready"]
    [running] = await claim(backend, now, worker="w1")
    await backend.exchange(
        worker_id="w1",
        starts=[ProcessStart("first", running.token, "elsewhere", 77, 77, None, "/x", slot=0)],
        now=now,
    )
    why = await q.why("first")
    assert [r.code for r in why.reasons] == ["running"]
    assert "pid 77" in why.reasons[0].message and "w1" in why.reasons[0].message
    # The only slot is busy and "second" comes before "third": third is behind.
    assert await codes(q, "third") == ["behind"]
    # Next in line when a slot frees: nothing holds "second".
    assert await codes(q, "second") == ["ready"]
    await backend.set_limit("default", 1)
    assert await codes(q, "second") == ["queue_limit"]
    assert "`queuectl queue limit default N`" in (await q.why("second")).reasons[0].message
    await finish(backend, running, OK, now, worker="w1")
    why = await q.why("first")
    assert [r.code for r in why.reasons] == ["finished"]
    assert why.job.state.value == "completed"
