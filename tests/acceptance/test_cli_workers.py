"""Worker processes: stopping from another terminal, listing, and several processes."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from tests.helpers import (
    WorkerProcess,
    cli_json,
    db_rows,
    enqueue_lines,
    run_cli,
    run_worker,
    wait_for,
)


def state_of(db: Path, job_id: str) -> str:
    return cli_json(db, "show", job_id)["state"]


def test_worker_stop_with_none_running(db_path: Path) -> None:
    result = run_cli(db_path, "worker", "stop")
    assert (result.returncode, result.stdout) == (0, "No workers running.\n"), result.stderr


def test_worker_stop_lets_the_running_job_finish(db_path: Path, tmp_path: Path) -> None:
    started = tmp_path / "started"
    enqueue_lines(
        db_path,
        [
            {"id": "long", "command": f"touch {started}; sleep 2; echo finished"},
            {"id": "queued", "command": "true", "delay": 1},
        ],
    )
    with WorkerProcess(db_path, "--count", "1") as worker:
        wait_for(started.exists, timeout=30)
        stop = run_cli(db_path, "worker", "stop", timeout=60)
        assert (stop.returncode, stop.stdout) == (0, "Stopped 1 worker process.\n"), stop.stderr
        # `worker stop` returns once the worker has exited.
        assert worker.wait(timeout=5) == 0
    long = cli_json(db_path, "show", "long")
    assert (long["state"], long["attempts"]) == ("completed", 1)
    assert run_cli(db_path, "logs", "long").stdout == "finished\n"
    # No new job was claimed after the stop request.
    assert state_of(db_path, "queued") == "pending"
    assert cli_json(db_path, "worker", "list") == []


def test_worker_stop_now_puts_the_job_back_without_using_an_attempt(
    db_path: Path, tmp_path: Path
) -> None:
    started = tmp_path / "started"
    enqueue_lines(
        db_path, [{"id": "long", "command": f"touch {started}; sleep 60", "max_retries": 0}]
    )
    with WorkerProcess(db_path) as worker:
        wait_for(started.exists, timeout=30)
        stop = run_cli(db_path, "worker", "stop", "--now", timeout=60)
        assert stop.returncode == 0, stop.stderr
        assert worker.wait(timeout=30) == 0
    long = cli_json(db_path, "show", "long")
    assert (long["state"], long["attempts"]) == ("pending", 0)
    [attempt] = long["history"]
    assert attempt["outcome"] == "interrupted"
    assert attempt["finished_at"] is not None


def test_worker_stop_stops_every_worker_process(db_path: Path, tmp_path: Path) -> None:
    logs = tmp_path / "one.log", tmp_path / "two.log"
    with (
        WorkerProcess(db_path, "--count", "2", log=logs[0]) as one,
        WorkerProcess(db_path, log=logs[1]) as two,
    ):
        workers = wait_for(lambda: len(cli_json(db_path, "worker", "list")) == 2 or None)
        assert workers
        listed = cli_json(db_path, "worker", "list")
        assert sorted(w["pid"] for w in listed) == sorted([one.pid, two.pid])
        assert cli_json(db_path, "status")["workers"] == 3
        stop = run_cli(db_path, "worker", "stop", timeout=60)
        assert (stop.returncode, stop.stdout) == (0, "Stopped 2 worker processes.\n"), stop.stderr
        assert one.wait(timeout=10) == 0
        assert two.wait(timeout=10) == 0
    for log in logs:
        said = log.read_text()
        # Idle: the stop line does not speak of waiting for 0 jobs.
        assert re.search(r"stopping: no new jobs$", said, re.MULTILINE), said
        assert "running job" not in said, said


def test_worker_stop_now_of_an_idle_worker_and_a_negative_timeout(
    db_path: Path, tmp_path: Path
) -> None:
    refused = run_cli(db_path, "worker", "stop", "--timeout", "-1")
    assert refused.returncode == 2 and "--timeout" in refused.stderr, refused
    assert "Traceback" not in refused.stderr
    with WorkerProcess(db_path, log=tmp_path / "w.log") as worker:
        wait_for(lambda: cli_json(db_path, "worker", "list") or None)
        stop = run_cli(db_path, "worker", "stop", "--now", "--timeout", "30")
        assert (stop.returncode, stop.stdout) == (0, "Stopped 1 worker process.\n"), stop.stderr
        assert worker.wait(timeout=10) == 0
        said = worker.output()
    assert "forced stop: no job was running" in said and "killing 0" not in said, said


def test_processes_count_as_their_coroutines_and_stop_together(db_path: Path) -> None:
    with WorkerProcess(db_path, "--processes", "2", "--count", "3") as supervisor:
        seen: list[list[dict[str, object]]] = []

        def both_registered() -> bool:
            seen.append(cli_json(db_path, "worker", "list"))
            return len(seen[-1]) == 2

        try:
            wait_for(both_registered)
        except AssertionError:
            raise AssertionError(f"worker list never showed 2 processes: {seen[-1]}") from None
        workers = seen[-1]
        assert sorted(w["count"] for w in workers) == [1, 2]
        assert supervisor.pid not in {w["pid"] for w in workers}
        assert cli_json(db_path, "status")["workers"] == 3
        stop = run_cli(db_path, "worker", "stop", timeout=60)
        assert (stop.returncode, stop.stdout) == (0, "Stopped 2 worker processes.\n"), stop.stderr
        assert supervisor.wait(timeout=30) == 0
    assert cli_json(db_path, "status")["workers"] == 0


def test_worker_queues_filter_what_it_claims(db_path: Path) -> None:
    with WorkerProcess(db_path, "--queue", "mail") as worker:
        wait_for(lambda: cli_json(db_path, "worker", "list"))
        enqueue_lines(
            db_path,
            [
                {"id": "m", "command": "true", "queue": "mail"},
                {"id": "r", "command": "true", "queue": "reports"},
                {"id": "d", "command": "true"},
            ],
        )
        wait_for(lambda: state_of(db_path, "m") == "completed", timeout=30)
        [info] = cli_json(db_path, "worker", "list")
        assert info["jobs_done"] == 1
        stop = run_cli(db_path, "worker", "stop")
        assert stop.returncode == 0, stop.stderr
        assert worker.wait(timeout=30) == 0
    assert (state_of(db_path, "r"), state_of(db_path, "d")) == ("pending", "pending")


def test_heartbeats_keep_a_job_longer_than_the_lease(db_path: Path) -> None:
    """A 3 s job under a 1 s lease is neither recovered nor run twice by a peer."""
    for key, value in (("lease", "1"), ("reap-interval", "0.2")):
        assert run_cli(db_path, "config", "set", key, value).returncode == 0
    enqueue_lines(db_path, [{"id": "long", "command": "sleep 3; echo done"}])
    result = run_worker(db_path, "--processes", "2", "--count", "2", timeout=60)
    assert result.returncode == 0, result.stderr
    long = cli_json(db_path, "show", "long")
    assert (long["state"], long["attempts"], long["last_error"]) == ("completed", 1, None)
    assert [h["outcome"] for h in long["history"]] == ["completed"]
    assert "recovered" not in result.stderr
    assert "lease lost" not in result.stderr


def test_an_idle_worker_picks_up_a_new_job(db_path: Path) -> None:
    with WorkerProcess(db_path) as worker:
        wait_for(lambda: cli_json(db_path, "worker", "list"))
        enqueue_lines(db_path, [{"id": "late-comer", "command": "true"}])
        wait_for(lambda: state_of(db_path, "late-comer") == "completed", timeout=30)
        worker.signal(2)
        assert worker.wait(timeout=30) == 0


def test_three_processes_of_four_slots_run_300_jobs_exactly_once(
    db_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ran.txt"
    jobs = [
        {"id": f"job-{i:03d}", "command": f'echo "$QUEUECTL_JOB_ID" >> {out}'} for i in range(300)
    ]
    enqueue_lines(db_path, jobs)
    result = run_worker(db_path, "--processes", "3", "--count", "12", timeout=110)
    assert result.returncode == 0, result.stderr
    ran = Counter(out.read_text().split())
    assert len(ran) == 300
    assert set(ran) == {j["id"] for j in jobs}
    assert set(ran.values()) == {1}, [k for k, v in ran.items() if v > 1]
    assert cli_json(db_path, "status")["jobs"] == {
        "pending": 0,
        "processing": 0,
        "completed": 300,
        "failed": 0,
        "dead": 0,
    }
    [row] = db_rows(db_path, "SELECT count(*), max(attempt) FROM attempts")
    assert tuple(row) == (300, 1)
    started = re.findall(r"worker \w+ started: (\d+) slot\(s\)", result.stderr)
    assert started == ["4", "4", "4"]
