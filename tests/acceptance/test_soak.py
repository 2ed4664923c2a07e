"""Soak: thousands of jobs while workers are killed with SIGKILL every couple of seconds.

3 worker processes x 4 slots run 2,000 jobs in two queues with random exit codes
and short random durations; every ~2 s one worker is ``kill -9``-ed and started
again, every ~0.5 s a random job is cancelled (``cancel --wait 0``: waiting, running
or already finished, whatever it is by then), and every few seconds a queue (or
every queue) is paused for a moment. At the end every job is completed, dead or
cancelled (only the cancelled ones), none is lost, no two executions of one job
overlapped in time (start/end markers plus a per-job ``flock``), no cancelled job
started again after it was cancelled, and no job started in a queue more than a
second after it was paused and before it was resumed.

Run it with its figures: ``pytest -m slow -k soak -s``. Sizes can be changed with
``QUEUECTL_SOAK_JOBS`` and ``QUEUECTL_SOAK_KILL_EVERY``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from queuectl.exceptions import InvalidTransition
from queuectl.models import JobState
from queuectl.queue import Queue
from tests.helpers import (
    Execution,
    WorkerProcess,
    assert_no_overlap,
    cli_json,
    enqueue_lines,
    iso_ms,
    job_counts,
    marked,
    run_cli,
    set_config,
    wait_for,
)

JOBS = int(os.environ.get("QUEUECTL_SOAK_JOBS", "2000"))
KILL_EVERY_S = float(os.environ.get("QUEUECTL_SOAK_KILL_EVERY", "2"))
CANCEL_EVERY_S = 0.5
WORKERS, SLOTS = 3, 4
QUEUES = ("a", "b")
#: Reference §17: workers on every process and host obey a pause within 1 s.
PAUSE_OBEYED_S = 1.0
DEADLINE_S = 480


def _jobs(rng: random.Random) -> list[dict[str, object]]:
    """Each job fails (exit 1-3) until attempt K, then succeeds; K > 3 means it dies."""
    jobs: list[dict[str, object]] = []
    for i in range(JOBS):
        succeed_at = rng.choice([1, 1, 1, 1, 2, 3, 4])
        code = rng.randint(1, 3)
        duration = rng.choice([0, 0.05, 0.1, 0.2, 0.3, 0.5])
        work = f'sleep {duration}; [ "$QUEUECTL_ATTEMPT" -ge {succeed_at} ] || exit {code}'
        queue = rng.choice(QUEUES)
        jobs.append({"id": f"soak-{queue}-{i:05d}", "command": marked(work), "queue": queue})
    return jobs


class _Canceller(threading.Thread):
    """Every ``CANCEL_EVERY_S``, cancel a random running or waiting job (``Queue.cancel``).

    In-process, on its own thread and event loop, so the kills keep their pace (a
    ``queuectl`` process per cancel would load the machine more than the workers);
    the CLI's words are tested elsewhere. ``wait_s=0``: a running job's worker kills
    it later, or its recovery cancels it if that worker is killed first.
    """

    def __init__(self, db: Path) -> None:
        super().__init__(daemon=True)
        self.db = db
        self.asked: set[str] = set()
        self.sent = 0
        self.stopped = threading.Event()
        self.rng = random.Random(7)

    def run(self) -> None:
        asyncio.run(self._cancel_now_and_then())

    async def _cancel_now_and_then(self) -> None:
        async with Queue.open(str(self.db)) as queue:
            while not self.stopped.wait(CANCEL_EVERY_S):
                state = self.rng.choice([JobState.PROCESSING, JobState.PENDING, JobState.FAILED])
                candidates = await queue.list_jobs(state=state, limit=20)
                if not candidates:
                    continue
                job_id = self.rng.choice(candidates).id
                self.sent += 1
                try:
                    await queue.cancel([job_id], wait_s=0)
                except InvalidTransition:
                    continue  # it finished meanwhile: nothing was changed
                self.asked.add(job_id)

    def settle(self) -> set[str]:
        """Stop; the ids whose cancel took effect or was requested."""
        self.stopped.set()
        self.join(timeout=60)
        return self.asked


def _unfinished(counts: dict[str, int]) -> int:
    return counts["pending"] + counts["processing"] + counts["failed"]


@pytest.mark.slow
@pytest.mark.timeout(DEADLINE_S + 120)
def test_soak_with_kill_9_every_two_seconds(db_path: Path, tmp_path: Path):
    rng = random.Random(20261129)
    marks = tmp_path / "marks"
    marks.mkdir()
    logs = tmp_path / "logs"
    logs.mkdir()
    set_config(db_path, reap_interval=0.5, backoff_base=1, max_retries=2)
    jobs = _jobs(rng)
    enqueue_lines(db_path, jobs)
    env = {"MARKS": str(marks)}
    started = time.monotonic()
    serial = 0

    def spawn() -> WorkerProcess:
        nonlocal serial
        serial += 1
        log = logs / f"worker-{serial}.log"
        return WorkerProcess(db_path, "--count", str(SLOTS), env=env, log=log).start()

    workers = [spawn() for _ in range(WORKERS)]
    kills = 0
    canceller = _Canceller(db_path)
    canceller.start()
    pauses = _Pauses(db_path, rng)
    try:
        next_kill = time.monotonic() + KILL_EVERY_S
        while _unfinished(counts := job_counts(db_path)):
            assert time.monotonic() - started < DEADLINE_S, counts
            pauses.tick()
            if time.monotonic() >= next_kill:
                victim = rng.randrange(WORKERS)
                workers[victim].proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
                workers[victim].wait()
                workers[victim] = spawn()
                kills += 1
                next_kill = time.monotonic() + KILL_EVERY_S * rng.uniform(0.5, 1.5)
            time.sleep(0.2)
        wall_s = time.monotonic() - started
        pauses.end()
        for worker in workers:
            # A worker restarted a moment ago may not have its handlers yet.
            wait_for(lambda w=worker: " started: " in w.output())  # type: ignore[misc]
            worker.signal(signal.SIGTERM)
        codes = [worker.wait(timeout=60) for worker in workers]
    finally:
        asked = canceller.settle()
        for worker in workers:
            worker.kill_group()
    assert codes == [0] * WORKERS

    records = cli_json(db_path, "list", "--limit", "0")
    assert sorted(r["id"] for r in records) == sorted(str(j["id"]) for j in jobs)  # none lost
    states = Counter(r["state"] for r in records)
    assert set(states) <= {"completed", "dead", "cancelled"}, states
    cancelled = {
        r["id"]: iso_ms(r["updated_at"]) / 1000 for r in records if r["state"] == "cancelled"
    }
    assert set(cancelled) <= asked
    runs = assert_no_overlap(marks)
    for run in runs:
        if run.job_id in cancelled:
            assert run.start < cancelled[run.job_id], run  # never run again once cancelled
    pauses.check(runs)
    finished = {r.job_id for r in runs if r.end is not None}
    completed = {r["id"] for r in records if r["state"] == "completed"}
    assert completed <= finished  # every completion came from a run that got to its end
    lost = sum(1 for r in records if r["last_error"] and "worker lost" in r["last_error"])
    figures = {
        "jobs": JOBS,
        "workers": f"{WORKERS} x {SLOTS}",
        "kills": kills,
        "wall_s": round(wall_s, 1),
        "jobs_per_s": round(JOBS / wall_s, 1),
        "completed": states["completed"],
        "dead": states["dead"],
        "cancels_sent": canceller.sent,
        "cancels_asked": len(asked),
        "cancelled": states["cancelled"],
        "executions": len(runs),
        "executions_cut_short": sum(1 for r in runs if r.end is None),
        "claims": sum(r["attempts"] for r in records),
        "last_error_worker_lost": lost,
        "overlaps": 0,
        "pauses": len(pauses.windows),
    }
    (tmp_path / "soak.json").write_text(json.dumps(figures, indent=2))
    print("\nsoak figures:", json.dumps(figures))
    assert kills >= wall_s / KILL_EVERY_S / 2


class _Pauses:
    """Pause a queue (or all of them, ``--all``) now and then, and resume it soon after."""

    def __init__(self, db: Path, rng: random.Random) -> None:
        self.db = db
        self.rng = rng
        #: (queue or "--all", paused at, resumed at), wall-clock seconds as the markers.
        self.windows: list[tuple[str, float, float]] = []
        self._held: tuple[str, float] | None = None
        self._next = time.monotonic() + rng.uniform(1, 3)

    def tick(self) -> None:
        if time.monotonic() < self._next:
            return
        if self._held is None:
            target = self.rng.choice([*QUEUES, "--all"])
            assert run_cli(self.db, "queue", "pause", target).returncode == 0
            self._held = (target, time.time())
            self._next = time.monotonic() + self.rng.uniform(0.5, 2)
        else:
            self.end()
            self._next = time.monotonic() + self.rng.uniform(1, 4)

    def end(self) -> None:
        if self._held is None:
            return
        target, since = self._held
        resumed = time.time()
        assert run_cli(self.db, "queue", "resume", target).returncode == 0
        self.windows.append((target, since, resumed))
        self._held = None

    def check(self, runs: list[Execution]) -> None:
        """No execution started in a paused queue once the pause had had a second."""
        for target, since, until in self.windows:
            for run in runs:
                queue = run.job_id.split("-")[1]
                if target in ("--all", queue):
                    assert not since + PAUSE_OBEYED_S < run.start < until, (target, run)
