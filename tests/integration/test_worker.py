"""The worker in-process (``tests.inproc``) on each real store: what it runs, when, and what
it keeps. The commands are real ``sh -c`` processes; only the worker is not a process of
its own, because nothing here is about being one (signals, ``kill -9`` and the CLI's own
output are in ``tests/acceptance``).

Waits are short on purpose: backoffs are capped with ``backoff-max`` and delays are
fractions of a second, so a test waits for an event, never for a fixed sleep.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from queuectl.clock import to_iso
from queuectl.models import JobState, Outcome, StopMode
from tests.inproc import open_queue, run_burst, shown, started_worker, state_of, wait_until


@pytest.fixture(autouse=True)
def _spool_in_tmp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """With a PostgreSQL URL, running commands spool under $XDG_DATA_HOME: keep it here."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


def record_to(out: Path, job_id: str, **fields: object) -> dict[str, Any]:
    """A job that appends its id to ``out`` (``>>`` is atomic for short lines)."""
    return {"id": job_id, "command": f'echo "$QUEUECTL_JOB_ID" >> {out}', **fields}


async def configure(db: str, **settings: object) -> None:
    async with open_queue(db) as queue:
        for key, value in settings.items():
            await queue.set_setting(key, str(value))


async def enqueue(db: str, *specs: dict[str, Any]) -> list[Any]:
    async with open_queue(db) as queue:
        return await queue.enqueue(*specs)


def transitions(caplog: pytest.LogCaptureFixture, job_id: str) -> list[str]:
    """The worker's ``action`` for each of its log lines about ``job_id``."""
    return [
        getattr(r, "action", "")
        for r in caplog.records
        if r.name == "queuectl.worker" and getattr(r, "job_id", None) == job_id
    ]


async def test_one_slot_runs_by_priority_then_oldest_first(db: str, tmp_path: Path) -> None:
    out = tmp_path / "order.txt"
    await enqueue(
        db,
        record_to(out, "p0-first"),
        record_to(out, "p5", priority=5),
        record_to(out, "p0-second"),
        record_to(out, "neg", priority=-3),
        record_to(out, "p9", priority=9),
        record_to(out, "p5-later", priority=5),
    )
    assert await run_burst(db, count=1) == 0
    assert out.read_text().split() == ["p9", "p5", "p5-later", "p0-first", "p0-second", "neg"]


async def test_delay_and_run_at_are_respected(db: str, tmp_path: Path) -> None:
    out = tmp_path / "ran.txt"
    async with open_queue(db) as queue:
        run_at = to_iso(queue.clock() + 700)
        assert run_at is not None
        delayed, scheduled, _ = await queue.enqueue(
            record_to(out, "delayed", delay=0.5),
            record_to(out, "scheduled", run_at=run_at),
            record_to(out, "now"),
        )
    assert delayed.run_at is not None
    assert delayed.run_at - delayed.created_at == 500
    assert to_iso(scheduled.run_at) == run_at
    async with started_worker(db, count=2), open_queue(db) as queue:
        await wait_until(lambda: _completed(queue, 3))
    assert sorted(out.read_text().split()) == ["delayed", "now", "scheduled"]
    for job_id in ("delayed", "scheduled"):
        job, [attempt] = await shown(db, job_id)
        assert job.run_at is not None
        assert attempt.started_at >= job.run_at


async def _completed(queue: Any, n: int) -> bool:
    return bool((await queue.counts())[JobState.COMPLETED] == n)


async def test_burst_does_not_wait_for_jobs_that_are_not_due(db: str, tmp_path: Path) -> None:
    out = tmp_path / "ran.txt"
    async with open_queue(db) as queue:
        in_an_hour = to_iso(queue.clock() + 3_600_000)
    await enqueue(
        db,
        record_to(out, "delayed", delay=3600),
        record_to(out, "scheduled", run_at=in_an_hour),
        record_to(out, "now"),
    )
    started = time.monotonic()
    assert await run_burst(db) == 0
    assert time.monotonic() - started < 20
    assert out.read_text().split() == ["now"]
    states = {j: await state_of(db, j) for j in ("delayed", "scheduled", "now")}
    assert states == {
        "delayed": JobState.PENDING,
        "scheduled": JobState.PENDING,
        "now": JobState.COMPLETED,
    }


async def test_failures_retry_after_the_backoff_and_keep_each_attempts_output(
    db: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="queuectl.worker")
    # backoff-base 1 with backoff-max 0.3: every retry waits min(1, 0.3) seconds.
    await configure(db, backoff_base=1, backoff_max=0.3)
    command = 'echo "try $QUEUECTL_ATTEMPT"; echo "to stderr" >&2; [ "$QUEUECTL_ATTEMPT" -ge 3 ]'
    await enqueue(db, {"id": "flaky", "command": command, "max_retries": 5})
    assert await run_burst(db) == 0
    job, history = await shown(db, "flaky")
    assert (job.state, job.attempts, job.exit_code) == (JobState.COMPLETED, 3, 0)
    assert [h.exit_code for h in history] == [1, 1, 0]
    assert [h.outcome for h in history] == [Outcome.FAILED, Outcome.FAILED, Outcome.COMPLETED]
    for earlier, later in itertools.pairwise(history):
        assert earlier.finished_at is not None
        gap = later.started_at - earlier.finished_at
        assert 300 <= gap < 10_000, gap
    async with open_queue(db) as queue:
        for attempt in (None, 1, 2, 3):
            out = await queue.output("flaky", attempt)
            n = attempt or 3
            assert (out.attempt, out.output) == (n, f"try {n}\nto stderr\n".encode())
    # The worker logged each claim, each failure with its retry, and the success.
    assert transitions(caplog, "flaky") == [
        "job_claimed",
        "job_failed",
        "job_claimed",
        "job_failed",
        "job_claimed",
        "job_completed",
    ]


async def test_a_timeout_kills_the_job_and_counts_as_a_failure(db: str) -> None:
    await enqueue(db, {"id": "slow", "command": "sleep 30", "timeout": 0.5, "max_retries": 0})
    assert await run_burst(db) == 0
    job, [attempt] = await shown(db, "slow")
    assert job.state is JobState.DEAD
    assert job.last_error is not None
    assert "timed out" in job.last_error
    assert attempt.finished_at is not None
    assert attempt.finished_at - attempt.started_at < 10_000


async def test_env_cwd_and_the_queuectl_variables(db: str, tmp_path: Path) -> None:
    await enqueue(
        db,
        {
            "id": "envy",
            "command": 'echo "$GREETING|$QUEUECTL_JOB_ID|$QUEUECTL_ATTEMPT|$(pwd)"',
            "env": {"GREETING": "hello there"},
            "cwd": str(tmp_path),
        },
    )
    assert await run_burst(db) == 0
    async with open_queue(db) as queue:
        out = await queue.output("envy")
    assert out.output == f"hello there|envy|1|{tmp_path}\n".encode()


async def test_a_missing_cwd_fails_the_attempt_with_a_clear_error(db: str, tmp_path: Path) -> None:
    missing = tmp_path / "gone"
    await enqueue(db, {"id": "nowhere", "command": "true", "cwd": str(missing), "max_retries": 0})
    assert await run_burst(db) == 0
    job, _ = await shown(db, "nowhere")
    assert job.state is JobState.DEAD
    assert job.last_error is not None
    assert "could not start" in job.last_error
    assert str(missing) in job.last_error


async def test_burst_leaves_other_queues_alone(db: str, tmp_path: Path) -> None:
    out = tmp_path / "ran.txt"
    await enqueue(
        db,
        record_to(out, "a1", queue="a"),
        record_to(out, "b1", queue="b"),
        record_to(out, "c1", queue="c"),
        record_to(out, "a2", queue="a"),
    )
    assert await run_burst(db, queues=["a", "c"], count=2) == 0
    assert sorted(out.read_text().split()) == ["a1", "a2", "c1"]
    states = {j: await state_of(db, j) for j in ("a1", "b1", "c1", "a2")}
    assert states == {
        "a1": JobState.COMPLETED,
        "b1": JobState.PENDING,
        "c1": JobState.COMPLETED,
        "a2": JobState.COMPLETED,
    }
    assert await run_burst(db, queues=["b"]) == 0
    assert sorted(out.read_text().split()) == ["a1", "a2", "b1", "c1"]


async def test_burst_on_an_empty_queue_ends_at_once(db: str) -> None:
    started = time.monotonic()
    assert await run_burst(db, count=3) == 0
    assert time.monotonic() - started < 10


async def test_a_worker_claims_only_from_its_queues_and_counts_its_jobs(db: str) -> None:
    async with started_worker(db, queues=["mail"]) as (worker, _), open_queue(db) as queue:
        await wait_until(queue.live_workers)
        await queue.enqueue(
            {"id": "m", "command": "true", "queue": "mail"},
            {"id": "r", "command": "true", "queue": "reports"},
            {"id": "d", "command": "true"},
        )
        await wait_until(lambda: _is(queue, "m", JobState.COMPLETED))
        [info] = await queue.live_workers()
        assert (info.id, info.jobs_done, info.queues) == (worker.id, 1, ("mail",))
    assert (await state_of(db, "r"), await state_of(db, "d")) == (
        JobState.PENDING,
        JobState.PENDING,
    )


async def _is(queue: Any, job_id: str, state: JobState) -> bool:
    return bool((await queue.get(job_id)).state == state)


async def test_an_idle_worker_is_woken_by_an_enqueue(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With the fallback poll a minute away, only the wake-up can start the job in time.
    monkeypatch.setattr("queuectl.pump.POLL_S", 60.0)
    async with started_worker(db) as (_, task), open_queue(db) as queue:
        await wait_until(queue.live_workers)
        await asyncio.sleep(0.2)  # let its first claim find nothing: it is idle now
        await queue.enqueue({"id": "late-comer", "command": "true"})
        await wait_until(lambda: _is(queue, "late-comer", JobState.COMPLETED), timeout_s=20)
        assert not task.done()


async def test_heartbeats_keep_a_job_longer_than_the_lease(
    db: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A 2.5 s job under a 1 s lease is neither recovered nor run twice by a peer."""
    caplog.set_level(logging.INFO, logger="queuectl.worker")
    await configure(db, lease=1, reap_interval=0.2)
    await enqueue(db, {"id": "long", "command": "sleep 2.5; echo done"})
    async with started_worker(db, count=2) as (_, one), started_worker(db, count=2) as (_, two):
        async with open_queue(db) as queue:
            await wait_until(lambda: _is(queue, "long", JobState.COMPLETED), timeout_s=30)
        assert not (one.done() or two.done())
    job, history = await shown(db, "long")
    assert (job.state, job.attempts, job.last_error) == (JobState.COMPLETED, 1, None)
    assert [h.outcome for h in history] == [Outcome.COMPLETED]
    actions = {getattr(r, "action", "") for r in caplog.records}
    assert "job_recovered" not in actions
    assert "job_lost" not in actions


async def test_a_worker_started_beside_a_busy_one_leaves_it_its_child_watcher(
    db: str, tmp_path: Path
) -> None:
    """Two workers in one process (as here): the second one starting while the first
    runs a command must not take away how the first learns that it ended."""
    started, release = tmp_path / "started", tmp_path / "release"
    command = f"touch {started}; until [ -e {release} ]; do sleep 0.05; done"
    await enqueue(db, {"id": "long", "command": command})
    async with started_worker(db) as (_, one):
        await wait_until(lambda: _exists(started))
        async with started_worker(db, queues=["elsewhere"]) as (_, two), open_queue(db) as queue:
            release.touch()
            await wait_until(lambda: _is(queue, "long", JobState.COMPLETED), timeout_s=10)
            assert not (one.done() or two.done())


# Queue operations on a running worker: stop requests and following output.


async def test_a_graceful_stop_lets_the_running_job_finish_and_claims_nothing_more(
    db: str, tmp_path: Path
) -> None:
    started = tmp_path / "started"
    await enqueue(db, {"id": "long", "command": f"touch {started}; sleep 0.5; echo finished"})
    async with started_worker(db) as (_, task), open_queue(db) as queue:
        await wait_until(lambda: _exists(started))
        await queue.enqueue({"id": "queued", "command": "true"})
        async with asyncio.timeout(20):
            assert await queue.stop_workers(StopMode.GRACEFUL, timeout_s=15) == 1
            assert await task == 0
        assert await queue.live_workers() == []
    job, [attempt] = await shown(db, "long")
    assert (job.state, job.attempts, attempt.outcome) == (JobState.COMPLETED, 1, Outcome.COMPLETED)
    async with open_queue(db) as queue:
        assert (await queue.output("long")).output == b"finished\n"
    assert await state_of(db, "queued") == JobState.PENDING


async def test_a_forced_stop_puts_the_running_job_back_without_using_an_attempt(
    db: str, tmp_path: Path
) -> None:
    started = tmp_path / "started"
    await configure(db, kill_grace=0.5)
    await enqueue(db, {"id": "long", "command": f"touch {started}; sleep 30", "max_retries": 0})
    async with started_worker(db) as (_, task), open_queue(db) as queue:
        await wait_until(lambda: _exists(started))
        async with asyncio.timeout(20):
            assert await queue.stop_workers(StopMode.NOW, timeout_s=15) == 1
            assert await task == 0
    job, [attempt] = await shown(db, "long")
    assert (job.state, job.attempts) == (JobState.PENDING, 0)
    assert attempt.outcome is Outcome.INTERRUPTED
    assert attempt.finished_at is not None


async def _exists(path: Path) -> bool:
    return path.exists()


async def test_follow_streams_a_running_attempt_to_its_end(db: str) -> None:
    command = "for i in 1 2 3; do echo line $i; sleep 0.2; done"
    await enqueue(db, {"id": "chatty", "command": command})
    async with open_queue(db) as queue:
        follow = asyncio.create_task(_collect(queue.follow("chatty")))
        async with started_worker(db):
            async with asyncio.timeout(20):
                streamed = await follow
    assert streamed == b"line 1\nline 2\nline 3\n"


async def _collect(chunks: Any) -> bytes:
    return b"".join([chunk async for chunk in chunks])


# Riding ahead (issue 15): a slot claims its next job while short jobs run.


@pytest.mark.parametrize("count", [1, 2])
async def test_short_jobs_drained_riding_ahead_run_once_each_with_one_attempt(
    db: str, tmp_path: Path, count: int
) -> None:
    out = tmp_path / "ran.txt"
    ids = [f"j{i:02d}" for i in range(40)]
    await enqueue(db, *(record_to(out, i) for i in ids))
    assert await run_burst(db, count=count) == 0
    assert sorted(out.read_text().split()) == ids
    for job_id in ids:
        job, attempts = await shown(db, job_id)
        assert (job.state, job.attempts) == (JobState.COMPLETED, 1)
        assert [a.outcome for a in attempts] == [Outcome.COMPLETED]


async def test_a_job_claimed_ahead_of_a_long_one_goes_back_uncharged(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After short jobs the slot claims ahead; the long job must not keep it claimed."""
    # A wider "short" than 50 ms, so that `true` counts as short however loaded the
    # machine is: the slot surely claims "after" ahead while "long" runs.
    monkeypatch.setattr("queuectl.pump.START_HOLD_S", 0.3)
    monkeypatch.setattr("queuectl.worker.START_HOLD_S", 0.3)
    started = tmp_path / "started"
    release = tmp_path / "release"
    await enqueue(
        db,
        *({"id": f"short{i}", "command": "true"} for i in range(5)),
        {
            "id": "long",
            "command": f"touch {started}; while [ ! -e {release} ]; do sleep 0.05; done",
        },
        {"id": "after", "command": "true"},
    )
    handed_back: list[tuple[str, int]] = []
    async with started_worker(db) as (worker, task), open_queue(db) as queue:
        unclaim = worker.backend.unclaim

        async def recorded(**kw: Any) -> list[tuple[str, int]]:
            back: list[tuple[str, int]] = await unclaim(**kw)
            handed_back.extend(back)
            return back

        worker.backend.unclaim = recorded  # type: ignore[method-assign]
        await wait_until(lambda: _exists(started))

        async def after_is_back() -> bool:
            return bool(handed_back) and await state_of(db, "after") is JobState.PENDING

        await wait_until(after_is_back)
        assert handed_back == [("after", 1)]
        assert await state_of(db, "long") is JobState.PROCESSING
        job, _ = await shown(db, "after")
        assert job.attempts == 0
        release.touch()
        await wait_until(lambda: _is_completed(db, "after"))
        async with asyncio.timeout(20):
            assert await queue.stop_workers(StopMode.GRACEFUL, timeout_s=15) == 1
            assert await task == 0
    job, attempts = await shown(db, "after")
    assert (job.state, job.attempts) == (JobState.COMPLETED, 1)
    # Handed back without a trace: one attempt, the one that ran.
    assert [(a.attempt, a.outcome) for a in attempts] == [(1, Outcome.COMPLETED)]


async def _is_completed(db: str, job_id: str) -> bool:
    return await state_of(db, job_id) is JobState.COMPLETED
