"""Soak on PostgreSQL: two hosts x 4 workers through server restarts and killed sessions.

Jobs with random exit codes and short random durations (as in
``tests/acceptance/test_soak.py``) run on two simulated hosts of a private server
while every ~1 s the workers' sessions are terminated (``pg_terminate_backend``)
and, a third and two thirds of the way through, the server restarts (fast mode).
At the end every job is completed or dead, none is lost, no two executions of one
job overlapped (the jobs' own stamps and per-job ``flock``), both workers are
alive, and work resumed within 5 s of each restart.

Run it with its figures: ``pytest -m slow tests/faults/test_pg_soak.py -s``. The
size is ``QUEUECTL_PG_SOAK_JOBS`` (default 1200).
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.faults.cluster import Cluster, stamped
from tests.pgserver import PrivateServer

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

JOBS = int(os.environ.get("QUEUECTL_PG_SOAK_JOBS", "1200"))
HOSTS, SLOTS = ("a", "b"), 4
DEADLINE_S = 600
RESUME_WITHIN_S = 5.0


def _jobs(rng: random.Random) -> list[dict[str, object]]:
    """Each job fails (exit 1-3) until attempt K, then succeeds; K > 3 means it dies."""
    jobs = []
    for i in range(JOBS):
        succeed_at = rng.choice([1, 1, 1, 1, 2, 3, 4])
        code = rng.randint(1, 3)
        duration = rng.choice([0, 0.05, 0.1, 0.2, 0.3])
        work = f'sleep {duration}; [ "$QUEUECTL_ATTEMPT" -ge {succeed_at} ] || exit {code}'
        jobs.append({"id": f"pgsoak-{i:05d}", "command": stamped(work)})
    return jobs


class Chaos:
    """Kills the workers' sessions every ~1 s, and restarts the server when told to."""

    def __init__(self, server: PrivateServer, rng: random.Random) -> None:
        self.server = server
        self.rng = rng
        self.terminated = 0
        self.rounds = 0
        self.ready_at: list[float] = []
        self._restart = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def __enter__(self) -> Chaos:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def restart(self) -> None:
        self._restart.set()
        while self._restart.is_set() and self._thread.is_alive():
            time.sleep(0.05)

    def _run(self) -> None:
        while not self._done.wait(self.rng.uniform(0.5, 1.5)):
            if self._restart.is_set():
                self.ready_at.append(self.server.restart())
                self._restart.clear()
                continue
            self.terminated += self.server.terminate_workers()
            self.rounds += 1


@pytest.mark.timeout(DEADLINE_S + 120)
def test_pg_soak_with_restarts_and_killed_sessions(
    cluster: Cluster, pg_server: PrivateServer, tmp_path: Path
) -> None:
    rng = random.Random(20261206)
    cluster.configure(reap_interval=0.5, backoff_base=1, max_retries=2)
    jobs = _jobs(rng)
    assert cluster.enqueue(jobs).returncode == 0
    started = time.monotonic()
    hosts = [cluster.host(name, "--count", str(SLOTS), "--burst") for name in HOSTS]
    with Chaos(pg_server, random.Random(14)) as chaos:
        for share in (1 / 3, 2 / 3):
            while _settled(cluster) < JOBS * share:
                assert time.monotonic() - started < DEADLINE_S
                time.sleep(0.2)
            chaos.restart()
        codes = [host.wait(timeout=DEADLINE_S) for host in hosts]
    wall_s = time.monotonic() - started
    assert codes == [0] * len(hosts), [h.log()[-3000:] for h in hosts]

    states = dict(cluster.counts())
    assert set(states) <= {"completed", "dead"}, states
    assert sum(states.values()) == JOBS
    record = cluster.record()
    assert record.overlaps == [], record.overlaps
    assert record.overlapping() == []
    completed = set(cluster.fetch("SELECT id FROM jobs WHERE state = 'completed'"))
    # Lost: a job the store calls completed without a run that got to its end.
    lost = completed - record.completed()
    assert lost == set()
    recover_s = [
        round(min(r.start for r in record.runs if r.start > ready) - ready, 2)
        for ready in chaos.ready_at
    ]
    assert len(recover_s) == 2 and max(recover_s) < RESUME_WITHIN_S, recover_s
    assert chaos.terminated >= chaos.rounds / 2, (chaos.terminated, chaos.rounds)
    runs_per_host = Counter(r.host for r in record.runs)
    figures = {
        "jobs": JOBS,
        "hosts": f"{len(HOSTS)} x {SLOTS}",
        "wall_s": round(wall_s, 1),
        "completed": states.get("completed", 0),
        "dead": states.get("dead", 0),
        "claims": int(cluster.fetch("SELECT sum(claims) FROM jobs")[0]),
        "executions": len(record.runs),
        "executions_by_host": dict(sorted(runs_per_host.items())),
        "executions_cut_short": sum(1 for r in record.runs if r.end is None or r.killed),
        "overlaps": len(record.overlapping()) + len(record.overlaps),
        "lost": len(lost),
        "restarts": len(chaos.ready_at),
        "recover_s": recover_s,
        "sessions_terminated": chaos.terminated,
        "termination_rounds": chaos.rounds,
        "lost_connection_warnings": sum(h.log().count("lost the connection") for h in hosts),
    }
    (tmp_path / "pg-soak.json").write_text(json.dumps(figures, indent=2))
    print("\npg soak figures:", json.dumps(figures))


def _settled(cluster: Cluster) -> int:
    counts = cluster.counts()
    return counts.get("completed", 0) + counts.get("dead", 0)
