"""Finding and killing what is left of an attempt, with real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from queuectl import procs
from tests.helpers import pid_alive, wait_for


def _spawn(job_id: str, attempt: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "QUEUECTL_JOB_ID": job_id, "QUEUECTL_ATTEMPT": str(attempt)}
    # setsid: a grandchild that left the command's process group is still found.
    return subprocess.Popen(["sh", "-c", "setsid sleep 300 & wait"], env=env)


def test_an_attempts_processes_are_found_by_their_environment():
    now_ms = time.time() * 1000
    proc = _spawn("job-a", 2)
    other = _spawn("job-a", 3)
    try:
        found = wait_for(lambda: len(procs.attempt_processes("job-a", 2, now_ms)) == 2 or None)
        assert found
        pids = {pid for pid, _ in procs.attempt_processes("job-a", 2, now_ms)}
        assert proc.pid in pids and other.pid not in pids
        # Started well before the claim: an earlier attempt of the same number.
        assert procs.attempt_processes("job-a", 2, now_ms + 60_000) == []
        assert procs.kill_attempt("job-a", 2, now_ms) == 2
        wait_for(lambda: not any(pid_alive(p) for p in pids))
        assert pid_alive(other.pid)
    finally:
        procs.kill_attempt("job-a", 2, None)
        procs.kill_attempt("job-a", 3, None)
        proc.wait()
        other.wait()


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
