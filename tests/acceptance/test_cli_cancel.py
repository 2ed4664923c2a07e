"""``queuectl cancel`` of running jobs, through real workers, on both stores (reference §16.1).

The command traps TERM and leaves a grandchild that ignores it, so only the
worker's SIGKILL of the whole process group after ``kill-grace`` ends it: the
test then knows the group was killed, not just the shell.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import (
    WorkerProcess,
    assert_one_error,
    job_record,
    kill_pids,
    pid_alive,
    read_pids,
    run_cli,
    set_config,
    wait_for,
)

STUBBORN = (
    'echo $$ >> "$MARKS/pids"; trap "echo termed" TERM; '
    '(trap "" TERM; exec sleep 300) & echo $! >> "$MARKS/pids"; '
    "echo started; while :; do sleep 0.1; done"
)


@pytest.fixture
def marks(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "marks"
    folder.mkdir()
    yield folder
    kill_pids(read_pids(folder / "pids"))


def _running(db: str, marks: Path, job_id: str = "long") -> list[int]:
    """Enqueue the stubborn job and wait until both of its processes run."""
    result = run_cli(db, "enqueue", "-c", STUBBORN, "--id", job_id, "--env", f"MARKS={marks}")
    assert result.returncode == 0, result.stderr
    wait_for(lambda: len(read_pids(marks / "pids")) >= 2)
    wait_for(lambda: job_record(db, job_id)["state"] == "processing")
    return read_pids(marks / "pids")


def test_a_running_job_is_killed_with_its_group_and_ends_cancelled(db: str, marks: Path) -> None:
    set_config(db, kill_grace=0.5)
    with WorkerProcess(db, env={"MARKS": str(marks)}, log=marks / "worker.log") as worker:
        pids = _running(db, marks)
        began = time.monotonic()
        result = run_cli(db, "cancel", "long")
        took = time.monotonic() - began
        assert result.returncode == 0, result.stderr
        assert result.stdout == "long\n"
        assert result.stderr == "1 job(s) cancelled.\n"
        # Confirmed by the worker: the group got SIGTERM, then SIGKILL after the grace.
        assert took < 0.5 + 5, took
        assert not any(pid_alive(p) for p in pids)
        record = job_record(db, "long")
        assert (record["state"], record["attempts"], record["next_run_at"]) == (
            "cancelled",
            1,
            None,
        )
        [attempt] = record["history"]
        assert (attempt["signal"], attempt["error"]) == (9, "cancelled while running")
        logs = run_cli(db, "logs", "long")
        assert "started" in logs.stdout and "termed" in logs.stdout
        wait_for(lambda: "long cancelled after" in worker.output())
        # Never retried: the worker stays idle, the job stays cancelled.
        time.sleep(0.5)
        assert job_record(db, "long")["attempts"] == 1
        assert run_cli(db, "list", "--state", "cancelled").stdout.count("long") == 1
    status = run_cli(db, "status", "--json")
    assert '"cancelled": 1' in status.stdout


def test_after_wait_the_ids_still_running_are_named_and_the_request_stays(
    db: str, marks: Path
) -> None:
    set_config(db, kill_grace=3)
    with WorkerProcess(db, env={"MARKS": str(marks)}, log=marks / "worker.log"):
        pids = _running(db, marks)
        result = run_cli(db, "cancel", "long", "--wait", "0.3")
        error = assert_one_error(result)
        assert "still running after 0.3s (the cancel stays requested): long" in error
        assert job_record(db, "long")["state"] == "processing"
        # The worker finishes the kill after the grace: the request was kept.
        wait_for(lambda: job_record(db, "long")["state"] == "cancelled", timeout=15)
        assert not any(pid_alive(p) for p in pids)


def test_a_lost_worker_recovery_cancels_instead_of_retrying(db: str, marks: Path) -> None:
    set_config(db, lease=2, reap_interval=0.2)
    worker = WorkerProcess(db, env={"MARKS": str(marks)}, log=marks / "worker.log").start()
    try:
        pids = _running(db, marks)
        worker.signal(signal.SIGKILL)  # the worker only: its command lives on
        worker.wait()
        assert all(pid_alive(p) for p in pids)
        result = run_cli(db, "cancel", "long", "--wait", "0.2")
        assert_one_error(result)
    finally:
        worker.kill_group()
    with WorkerProcess(db, env={"MARKS": str(marks)}, log=marks / "worker.log"):
        wait_for(lambda: job_record(db, "long")["state"] == "cancelled", timeout=15)
        record = job_record(db, "long")
        assert record["attempts"] == 1
        assert "worker lost" in record["last_error"]
        # The new worker killed the orphan on this host before anything else.
        wait_for(lambda: not any(pid_alive(p) for p in pids))


@pytest.mark.postgres
def test_a_job_running_on_another_host_is_cancelled_through_postgres(
    pg_url: str, marks: Path
) -> None:
    """The worker sees another host name (its own UTS namespace): only NOTIFY reaches it."""
    # Heartbeats every 10 s: a cancel confirmed sooner came through the wake-up.
    set_config(pg_url, kill_grace=0.5, lease=30)
    log = marks / "worker.log"
    env = {"MARKS": str(marks)}
    with WorkerProcess(pg_url, env=env, log=log, hostname="elsewhere") as worker:
        pids = _running(pg_url, marks)
        logs = run_cli(pg_url, "logs", "long")
        assert logs.returncode == 0, logs.stderr
        assert "running on elsewhere" in logs.stderr
        began = time.monotonic()
        result = run_cli(pg_url, "cancel", "long")
        assert (result.returncode, result.stdout) == (0, "long\n"), result.stderr
        # Woken by NOTIFY, not by its next heartbeat (lease / 3 = 10 s).
        assert time.monotonic() - began < 0.5 + 5, time.monotonic() - began
        assert not any(pid_alive(p) for p in pids)
        assert job_record(pg_url, "long")["state"] == "cancelled"
        wait_for(lambda: "long cancelled after" in worker.output())
