"""Finding and killing what is left of an attempt, with real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from queuectl import procs
from queuectl.executor import job_environment
from tests.helpers import kill_pids, pid_alive, wait_for
from tests.inproc import claim_for_a_gone_worker, open_queue, run_burst, shown


def _spawn(job_id: str, attempt: int, store: str = "s1") -> subprocess.Popen[bytes]:
    env = job_environment(os.environ, {}, job_id, attempt, store)
    # setsid: a grandchild that left the command's process group is still found.
    return subprocess.Popen(["sh", "-c", "setsid sleep 300 & wait"], env=env)


def test_an_attempts_processes_are_found_by_their_environment():
    now_ms = time.time() * 1000
    proc = _spawn("job-a", 2)
    other = _spawn("job-a", 3)
    elsewhere = _spawn("job-a", 2, store="s2")  # the same job and attempt of another store
    try:
        found = wait_for(lambda: len(procs.attempt_processes("s1", "job-a", 2, now_ms)) == 2)
        assert found
        pids = {pid for pid, _ in procs.attempt_processes("s1", "job-a", 2, now_ms)}
        assert proc.pid in pids and other.pid not in pids and elsewhere.pid not in pids
        # Started well before the claim: an earlier attempt of the same number.
        assert procs.attempt_processes("s1", "job-a", 2, now_ms + 60_000) == []
        assert procs.kill_attempt("s1", "job-a", 2, now_ms) == 2
        wait_for(lambda: not any(pid_alive(p) for p in pids))
        assert pid_alive(other.pid) and pid_alive(elsewhere.pid)
    finally:
        procs.kill_attempt("s1", "job-a", 2, None)
        procs.kill_attempt("s1", "job-a", 3, None)
        procs.kill_attempt("s2", "job-a", 2, None)
        for p in (proc, other, elsewhere):
            p.wait()


async def _lost_on_this_host(db: Path, job_id: str) -> tuple[int, str]:
    """Enqueue ``job_id`` and claim it for a worker of this host whose process is gone."""
    async with open_queue(db) as queue:
        await queue.enqueue({"id": job_id, "command": "true"})
    return await claim_for_a_gone_worker(db, job_id)


async def test_a_worker_kills_the_orphans_of_its_own_store_only(tmp_path: Path) -> None:
    """Two stores on one host, each with a lost ``build`` at attempt 1: a worker of B
    recovering its own kills B's leftover command, never A's, which looks the same
    but for ``$QUEUECTL_STORE``."""
    attempt_a, tag_a = await _lost_on_this_host(tmp_path / "a.db", "build")
    attempt_b, tag_b = await _lost_on_this_host(tmp_path / "b.db", "build")
    assert attempt_a == attempt_b == 1 and tag_a != tag_b
    ours = _spawn("build", 1, store=tag_b)
    theirs = _spawn("build", 1, store=tag_a)
    try:
        wait_for(
            lambda: all(
                len(procs.attempt_processes(t, "build", 1, None)) >= 2 for t in (tag_a, tag_b)
            )
        )
        assert await run_burst(tmp_path / "b.db") == 0
        job, attempts = await shown(tmp_path / "b.db", "build")
        assert job.state == "completed" and [a.outcome for a in attempts] == ["lost", "completed"]
        # Both of B's processes were killed (the shell may see its sleep die first and
        # exit 0 before its own SIGKILL lands; without the kill it would wait 300 s).
        ours.wait(timeout=10)
        wait_for(lambda: procs.attempt_processes(tag_b, "build", 1, None) == [], timeout=10)
        assert theirs.poll() is None
        assert len(procs.attempt_processes(tag_a, "build", 1, None)) == 2
    finally:
        kill_pids([pid for pid, _ in procs.attempt_processes(tag_a, "build", 1, None)])
        kill_pids([pid for pid, _ in procs.attempt_processes(tag_b, "build", 1, None)])
        ours.wait()
        theirs.wait()


def test_group_alive_ignores_members_that_are_only_zombies() -> None:
    """A killed member that nobody has reaped yet is not a live member."""
    # The leader stays a zombie until this test reaps it: its group only "exists".
    child = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        assert procs.group_alive(child.pid)
        os.kill(child.pid, signal.SIGKILL)
        wait_for(lambda: not procs.is_alive(child.pid, None), timeout=10)
        assert procs.group_exists(child.pid), "the zombie still holds the group id"
        assert not procs.group_alive(child.pid)
    finally:
        child.kill()
        child.wait()
