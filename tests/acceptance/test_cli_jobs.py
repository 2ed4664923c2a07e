"""Jobs through the real executable: ordering, scheduling, retries, logs, lists and the DLQ."""

from __future__ import annotations

import json
import os
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.helpers import (
    QUEUECTL,
    WorkerProcess,
    assert_error,
    cli_env,
    cli_json,
    enqueue_lines,
    iso_ms,
    run_cli,
    run_worker,
    wait_for,
)


def record_to(out: Path, job_id: str, **fields: object) -> dict:
    """A job that appends its id to ``out`` (``>>`` is atomic for short lines)."""
    return {"id": job_id, "command": f'echo "$QUEUECTL_JOB_ID" >> {out}', **fields}


def test_one_slot_runs_by_priority_then_oldest_first(db_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "order.txt"
    jobs = [
        record_to(out, "p0-first"),
        record_to(out, "p5", priority=5),
        record_to(out, "p0-second"),
        record_to(out, "neg", priority=-3),
        record_to(out, "p9", priority=9),
        record_to(out, "p5-later", priority=5),
    ]
    enqueue_lines(db_path, jobs)
    result = run_worker(db_path, "--count", "1")
    assert result.returncode == 0, result.stderr
    assert out.read_text().split() == ["p9", "p5", "p5-later", "p0-first", "p0-second", "neg"]


def test_delay_and_run_at_are_respected(db_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "ran.txt"
    run_at = (datetime.now(UTC) + timedelta(seconds=2)).isoformat().replace("+00:00", "Z")
    enqueue_lines(
        db_path,
        [
            record_to(out, "delayed", delay=2),
            record_to(out, "scheduled", run_at=run_at),
            record_to(out, "now"),
        ],
    )
    with WorkerProcess(db_path, "--count", "2") as worker:
        wait_for(lambda: cli_json(db_path, "status")["jobs"]["completed"] == 3, timeout=30)
        worker.signal(15)
        assert worker.wait(timeout=30) == 0
    assert sorted(out.read_text().split()) == ["delayed", "now", "scheduled"]
    for job_id in ("delayed", "scheduled"):
        shown = cli_json(db_path, "show", job_id)
        started = iso_ms(shown["history"][0]["started_at"])
        assert started >= iso_ms(shown["run_at"])
    delayed = cli_json(db_path, "show", "delayed")
    assert iso_ms(delayed["run_at"]) - iso_ms(delayed["created_at"]) == 2000
    scheduled = cli_json(db_path, "show", "scheduled")
    assert iso_ms(scheduled["run_at"]) == iso_ms(run_at)


def test_burst_does_not_wait_for_jobs_that_are_not_due(db_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "ran.txt"
    in_an_hour = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    enqueue_lines(
        db_path,
        [
            record_to(out, "delayed", delay=3600),
            record_to(out, "scheduled", run_at=in_an_hour),
            record_to(out, "now"),
        ],
    )
    burst = run_worker(db_path)
    assert burst.returncode == 0, burst.stderr
    assert out.read_text().split() == ["now"]
    assert {r["id"]: r["state"] for r in cli_json(db_path, "list")} == {
        "delayed": "pending",
        "scheduled": "pending",
        "now": "completed",
    }


def test_run_at_as_unix_seconds_and_with_an_offset(db_path: Path) -> None:
    enqueue_lines(
        db_path,
        [
            {"id": "unix", "command": "true", "run_at": 4102444800},
            {"id": "offset", "command": "true", "run_at": "2100-01-01T02:00:00+02:00"},
        ],
    )
    for job_id in ("unix", "offset"):
        assert cli_json(db_path, "show", job_id)["run_at"] == "2100-01-01T00:00:00.000Z"


def test_config_spellings_and_max_retries_taken_at_enqueue(db_path: Path) -> None:
    for key, value in (
        ("max_retries", "2"),
        ("BACKOFF_BASE", "1.5"),
        ("back-off-max", "60"),
        ("Job-Timeout", "30"),
    ):
        result = run_cli(db_path, "config", "set", key, value)
        assert result.returncode == 0, result.stderr
    assert run_cli(db_path, "config", "get", "max-retries").stdout == "2\n"
    assert run_cli(db_path, "config", "get", "backoffbase").stdout == "1.5\n"
    settings = cli_json(db_path, "config", "list")
    assert (settings["max-retries"], settings["backoff-base"]) == (2, 1.5)
    assert (settings["backoff-max"], settings["job-timeout"]) == (60, 30)
    assert run_cli(db_path, "config", "set", "max-retries", "1").stdout == "max-retries = 1\n"

    enqueue_lines(db_path, [{"id": "early", "command": "true"}])
    assert run_cli(db_path, "config", "set", "max-retries", "5").returncode == 0
    enqueue_lines(db_path, [{"id": "late", "command": "true"}])
    assert cli_json(db_path, "show", "early")["max_retries"] == 1
    assert cli_json(db_path, "show", "late")["max_retries"] == 5
    assert cli_json(db_path, "show", "late")["timeout"] == 30


def test_retries_then_logs_of_each_attempt(db_path: Path) -> None:
    assert run_cli(db_path, "config", "set", "backoff-base", "1").returncode == 0
    command = 'echo "try $QUEUECTL_ATTEMPT"; echo "to stderr" >&2; [ "$QUEUECTL_ATTEMPT" -ge 3 ]'
    enqueue_lines(db_path, [{"id": "flaky", "command": command, "max_retries": 5}])
    result = run_worker(db_path)
    assert result.returncode == 0, result.stderr
    shown = cli_json(db_path, "show", "flaky")
    assert (shown["state"], shown["attempts"], shown["exit_code"]) == ("completed", 3, 0)
    assert [h["exit_code"] for h in shown["history"]] == [1, 1, 0]
    for earlier, later in zip(shown["history"], shown["history"][1:], strict=False):
        gap = iso_ms(later["started_at"]) - iso_ms(earlier["finished_at"])
        assert 1000 <= gap < 15000
    assert run_cli(db_path, "logs", "flaky").stdout == "try 3\nto stderr\n"
    assert run_cli(db_path, "logs", "flaky", "--attempt", "1").stdout == "try 1\nto stderr\n"
    assert run_cli(db_path, "logs", "flaky", "--attempt", "2").stdout == "try 2\nto stderr\n"
    assert_error(run_cli(db_path, "logs", "flaky", "--attempt", "4"), 1, "'flaky'", "attempt 4")
    # The worker logged each claim, failure, retry and the success as lines.
    lines = [line for line in result.stderr.splitlines() if "flaky" in line]
    assert sum("claimed" in line for line in lines) == 3
    assert sum("failed" in line for line in lines) == 2
    assert sum("completed" in line for line in lines) == 1


def test_a_timeout_kills_the_job_and_counts_as_a_failure(db_path: Path) -> None:
    enqueue_lines(
        db_path, [{"id": "slow", "command": "sleep 30", "timeout": 0.5, "max_retries": 0}]
    )
    result = run_worker(db_path)
    assert result.returncode == 0, result.stderr
    shown = cli_json(db_path, "show", "slow")
    assert shown["state"] == "dead"
    assert "timed out" in shown["last_error"]
    [attempt] = shown["history"]
    assert iso_ms(attempt["finished_at"]) - iso_ms(attempt["started_at"]) < 25_000


def test_env_cwd_and_the_queuectl_variables(db_path: Path, tmp_path: Path) -> None:
    job = {
        "id": "envy",
        "command": 'echo "$GREETING|$QUEUECTL_JOB_ID|$QUEUECTL_ATTEMPT|$(pwd)"',
        "env": {"GREETING": "hello there"},
        "cwd": str(tmp_path),
    }
    enqueue_lines(db_path, [job])
    assert run_worker(db_path).returncode == 0
    logs = run_cli(db_path, "logs", "envy")
    assert logs.stdout == f"hello there|envy|1|{tmp_path}\n"


def test_a_missing_cwd_fails_the_attempt_with_a_clear_error(db_path: Path, tmp_path: Path) -> None:
    missing = tmp_path / "gone"
    enqueue_lines(
        db_path, [{"id": "nowhere", "command": "true", "cwd": str(missing), "max_retries": 0}]
    )
    assert run_worker(db_path).returncode == 0
    shown = cli_json(db_path, "show", "nowhere")
    assert shown["state"] == "dead"
    assert "could not start" in shown["last_error"]
    assert str(missing) in shown["last_error"]


def test_logs_follow_streams_a_running_attempt_to_its_end(db_path: Path) -> None:
    command = "for i in 1 2 3; do echo line $i; sleep 0.3; done"
    enqueue_lines(db_path, [{"id": "chatty", "command": command}])
    follow = subprocess.Popen(
        [QUEUECTL, "logs", "chatty", "--follow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(db_path),
        start_new_session=True,
    )
    try:
        assert run_worker(db_path).returncode == 0
        out, err = follow.communicate(timeout=30)
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.communicate()
    assert (follow.returncode, out) == (0, "line 1\nline 2\nline 3\n"), err


def test_enqueue_with_the_command_flag(db_path: Path) -> None:
    result = run_cli(
        db_path,
        "enqueue",
        "-c",
        "echo $X",
        "--id",
        "flagged",
        "--max-retries",
        "0",
        "--priority",
        "-2",
        "--delay",
        "60",
        "--timeout",
        "5",
        "--queue",
        "side",
        "--env",
        "X=1",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    [record] = json.loads(result.stdout)
    assert (record["id"], record["command"], record["max_retries"]) == ("flagged", "echo $X", 0)
    assert (record["priority"], record["timeout"], record["queue"]) == (-2, 5, "side")
    assert iso_ms(record["run_at"]) - iso_ms(record["created_at"]) == 60_000
    at = run_cli(db_path, "enqueue", "-c", "true", "--run-at", "2100-01-01T01:00:00+01:00")
    assert at.returncode == 0, at.stderr
    assert cli_json(db_path, "show", at.stdout.strip())["run_at"] == "2100-01-01T00:00:00.000Z"
    both = run_cli(db_path, "enqueue", "-c", "true", "--delay", "1", "--run-at", "4102444800")
    assert_error(both, 1, "not both")


def test_list_limit_state_and_queue(db_path: Path) -> None:
    jobs = [
        {"id": f"j{i:02d}", "command": "true", "queue": "even" if i % 2 == 0 else "odd"}
        for i in range(60)
    ]
    enqueue_lines(db_path, jobs)
    default = cli_json(db_path, "list")
    assert len(default) == 50
    assert default[0]["id"] == "j59"
    assert default[-1]["id"] == "j10"
    every = cli_json(db_path, "list", "--limit", "0")
    assert [r["id"] for r in every] == [f"j{i:02d}" for i in range(59, -1, -1)]
    assert [r["id"] for r in cli_json(db_path, "list", "--limit", "3")] == ["j59", "j58", "j57"]
    odd = cli_json(db_path, "list", "--queue", "odd", "--limit", "0")
    assert len(odd) == 30
    assert all(r["queue"] == "odd" for r in odd)
    assert cli_json(db_path, "list", "--state", "completed") == []
    assert len(cli_json(db_path, "list", "--state", "PENDING", "--limit", "0")) == 60
    assert cli_json(db_path, "list", "--queue", "nope") == []


def test_dlq_round_trip_by_id_and_all(db_path: Path) -> None:
    enqueue_lines(
        db_path,
        [{"id": f"d{i}", "command": "exit 7", "max_retries": 0} for i in range(3)]
        + [{"id": "fine", "command": "true"}],
    )
    assert run_worker(db_path, "--count", "2").returncode == 0
    assert {r["id"] for r in cli_json(db_path, "dlq", "list")} == {"d0", "d1", "d2"}

    # All or nothing: one job that is not dead fails the whole request.
    assert_error(run_cli(db_path, "dlq", "retry", "d0", "fine"), 1, "'fine'", "not dead")
    assert_error(run_cli(db_path, "dlq", "retry", "d0", "ghost"), 1, "'ghost'")
    assert len(cli_json(db_path, "dlq", "list")) == 3

    one = run_cli(db_path, "dlq", "retry", "d1")
    assert (one.returncode, one.stdout) == (0, "d1\n"), one.stderr
    d1 = cli_json(db_path, "show", "d1")
    assert (d1["state"], d1["attempts"]) == ("pending", 0)
    assert len(d1["history"]) == 1

    everything = run_cli(db_path, "dlq", "retry", "--all")
    assert everything.returncode == 0, everything.stderr
    assert sorted(everything.stdout.split()) == ["d0", "d2"]
    assert cli_json(db_path, "dlq", "list") == []
    assert cli_json(db_path, "status")["jobs"]["pending"] == 3

    # They run again (and die again), with the history growing.
    assert run_worker(db_path, "--count", "2").returncode == 0
    d1 = cli_json(db_path, "show", "d1")
    assert (d1["state"], d1["attempts"]) == ("dead", 1)
    assert [h["attempt"] for h in d1["history"]] == [1, 2]
    nothing = run_cli(db_path, "dlq", "retry", "--all")
    assert nothing.returncode == 0
    assert sorted(nothing.stdout.split()) == ["d0", "d1", "d2"]


def test_db_flag_beats_the_environment(db_path: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    result = run_cli(db_path, "--db", str(other), "enqueue", '{"id":"here","command":"true"}')
    assert result.returncode == 0, result.stderr
    assert [r["id"] for r in cli_json(other, "list")] == ["here"]
    assert cli_json(db_path, "list") == []


def test_default_location_is_xdg_data_home_then_home(tmp_path: Path) -> None:
    base = {k: v for k, v in os.environ.items() if k not in ("QUEUECTL_DB", "XDG_DATA_HOME")}
    xdg = tmp_path / "xdg"
    home = tmp_path / "home"
    for extra, expected in (
        ({"XDG_DATA_HOME": str(xdg)}, xdg / "queuectl" / "queuectl.db"),
        ({"HOME": str(home)}, home / ".local" / "share" / "queuectl" / "queuectl.db"),
    ):
        result = subprocess.run(
            [QUEUECTL, "enqueue", '{"id":"where","command":"true"}'],
            capture_output=True,
            text=True,
            env={**base, **extra},
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert cli_json(expected, "show", "where")["state"] == "pending"


def test_output_limit_keeps_the_tail_of_each_attempt(db_path: Path) -> None:
    assert run_cli(db_path, "config", "set", "output-limit", "10").returncode == 0
    enqueue_lines(db_path, [{"id": "loud", "command": "seq 1 100"}])
    assert run_worker(db_path).returncode == 0
    full = "".join(f"{i}\n" for i in range(1, 101))
    logs = run_cli(db_path, "logs", "loud")
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout == full[-10:]
    assert str(len(full)) in logs.stderr
    [attempt] = cli_json(db_path, "show", "loud")["history"]
    assert attempt["output_truncated"] is True
    as_json = cli_json(db_path, "logs", "loud")
    assert (as_json["output"], as_json["output_size"]) == (full[-10:], len(full))


def test_a_record_from_list_json_enqueues_again_under_a_new_id(db_path: Path) -> None:
    enqueue_lines(db_path, [{"id": "orig", "command": "true", "priority": 3, "queue": "q"}])
    assert run_worker(db_path).returncode == 0
    [record] = cli_json(db_path, "list")
    record["id"] = "copy"
    result = run_cli(db_path, "enqueue", json.dumps(record))
    assert (result.returncode, result.stdout) == (0, "copy\n"), result.stderr
    copy = cli_json(db_path, "show", "copy")
    assert (copy["state"], copy["attempts"], copy["priority"], copy["queue"]) == (
        "pending",
        0,
        3,
        "q",
    )


def test_burst_exits_0_and_leaves_other_queues_alone(db_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "ran.txt"
    enqueue_lines(
        db_path,
        [
            record_to(out, "a1", queue="a"),
            record_to(out, "b1", queue="b"),
            record_to(out, "c1", queue="c"),
            record_to(out, "a2", queue="a"),
        ],
    )
    started = time.monotonic()
    result = run_worker(db_path, "--queue", "a", "--queue", "c", "--count", "2")
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 60
    assert sorted(out.read_text().split()) == ["a1", "a2", "c1"]
    states = {r["id"]: r["state"] for r in cli_json(db_path, "list")}
    assert states == {"a1": "completed", "b1": "pending", "c1": "completed", "a2": "completed"}
    assert run_worker(db_path, "--queue", "b").returncode == 0
    assert sorted(out.read_text().split()) == ["a1", "a2", "b1", "c1"]


def test_burst_on_an_empty_queue_exits_0(db_path: Path) -> None:
    result = run_worker(db_path, "--count", "3")
    assert result.returncode == 0, result.stderr
