"""The seed's scenarios (reference §10.1, §5.4, §13), run through the installed ``queuectl``.

Each scenario gets a database of its own, so one scenario's leftovers (a retried
S2-fail, the pending job1) cannot change what the next one observes.
"""

from __future__ import annotations

import signal
from pathlib import Path

from tests.helpers import (
    WorkerProcess,
    cli_json,
    iso_ms,
    run_cli,
    run_worker,
    wait_for,
)


def state_of(db: Path, job_id: str) -> str:
    return cli_json(db, "show", job_id)["state"]


def test_s1_success_with_one_worker(db_path: Path) -> None:
    enq = run_cli(
        db_path,
        "enqueue",
        input='{"id":"S1-success","command":"echo Success in Parallel"}\n',
    )
    assert enq.returncode == 0, enq.stderr
    assert enq.stdout == "S1-success\n"
    with WorkerProcess(db_path, "--count", "1") as worker:
        wait_for(lambda: state_of(db_path, "S1-success") == "completed")
        worker.signal(signal.SIGINT)
        assert worker.wait(timeout=30) == 0
        _, err = worker.communicate()
    assert "S1-success" in err
    logs = run_cli(db_path, "logs", "S1-success")
    assert (logs.returncode, logs.stdout) == (0, "Success in Parallel\n")
    job = cli_json(db_path, "show", "S1-success")
    assert (job["attempts"], job["exit_code"], job["last_error"]) == (1, 0, None)


def test_s2_fail_retries_once_after_three_seconds_then_dlq_retry(db_path: Path) -> None:
    first = run_cli(db_path, "config", "set", "max-retries", "1")
    second = run_cli(db_path, "config", "set", "back-off-base", "3")
    assert (first.returncode, second.returncode) == (0, 0), first.stderr + second.stderr
    enq = run_cli(db_path, "enqueue", input='{"id":"S2-fail","command":"exit 1"}\n')
    assert enq.returncode == 0, enq.stderr

    worker = run_worker(db_path, "--count", "1", timeout=30)
    assert worker.returncode == 0, worker.stderr

    job = cli_json(db_path, "show", "S2-fail")
    assert (job["state"], job["attempts"], job["max_retries"]) == ("dead", 2, 1)
    assert job["exit_code"] == 1
    assert job["last_error"] == "exit code 1"
    history = job["history"]
    assert [h["attempt"] for h in history] == [1, 2]
    assert [h["exit_code"] for h in history] == [1, 1]
    gap_ms = iso_ms(history[1]["started_at"]) - iso_ms(history[0]["finished_at"])
    assert 3000 <= gap_ms < 15000

    listed = run_cli(db_path, "dlq", "list")
    assert listed.returncode == 0, listed.stderr
    assert "S2-fail" in listed.stdout
    assert [j["id"] for j in cli_json(db_path, "dlq", "list")] == ["S2-fail"]

    retried = run_cli(db_path, "dlq", "retry", "S2-fail")
    assert (retried.returncode, retried.stdout) == (0, "S2-fail\n"), retried.stderr
    job = cli_json(db_path, "show", "S2-fail")
    assert (job["state"], job["attempts"]) == ("pending", 0)
    assert cli_json(db_path, "dlq", "list") == []


def test_job1_is_listed_as_pending(db_path: Path) -> None:
    enq = run_cli(db_path, "enqueue", '{"id":"job1","command":"sleep 2"}')
    assert (enq.returncode, enq.stdout) == (0, "job1\n"), enq.stderr
    listed = run_cli(db_path, "list", "--state", "pending")
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()]
    assert rows[0][:2] == ["ID", "STATE"]
    assert [r[:2] for r in rows[1:]] == [["job1", "pending"]]
    assert "sleep 2" in listed.stdout


def test_s3_two_workers_run_both_jobs_at_the_same_time(db_path: Path) -> None:
    for job_id in ("S3-A", "S3-B"):
        enq = run_cli(db_path, "enqueue", input=f'{{"id":"{job_id}","command":"sleep 2"}}\n')
        assert enq.returncode == 0, enq.stderr
    with WorkerProcess(db_path, "--count", "2") as worker:
        wait_for(lambda: cli_json(db_path, "status")["jobs"]["completed"] == 2, timeout=30)
        stop = run_cli(db_path, "worker", "stop")
        assert (stop.returncode, stop.stdout) == (0, "Stopped 1 worker process.\n"), stop.stderr
        assert worker.wait(timeout=30) == 0
    a, b = (cli_json(db_path, "show", j)["history"][0] for j in ("S3-A", "S3-B"))
    a_start, a_end = iso_ms(a["started_at"]), iso_ms(a["finished_at"])
    b_start, b_end = iso_ms(b["started_at"]), iso_ms(b["finished_at"])
    assert a_end - a_start >= 2000
    assert b_end - b_start >= 2000
    # Both ran at once: each started before the other finished.
    assert a_start < b_end
    assert b_start < a_end
    assert a["worker"] == b["worker"]

    status = run_cli(db_path, "status")
    assert status.returncode == 0, status.stderr
    counts = dict(line.split() for line in status.stdout.splitlines()[1:7])
    assert counts == {
        "pending": "0",
        "processing": "0",
        "completed": "2",
        "failed": "0",
        "dead": "0",
        "cancelled": "0",
    }
    assert cli_json(db_path, "status") == {
        "jobs": {
            "pending": 0,
            "processing": 0,
            "completed": 2,
            "failed": 0,
            "dead": 0,
            "cancelled": 0,
        },
        "workers": 0,
        "hosts": {},
        "paused": [],
        "all_paused": False,
    }
