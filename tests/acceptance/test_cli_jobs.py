"""Jobs through the real executable: scheduling fields, config, logs, lists and the DLQ.

Where a test needs jobs to have run, the worker runs in-process (``tests.inproc.burst``):
the subject is the command in front; how the worker orders, retries and times out jobs
is tested in ``tests/integration/test_worker.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.helpers import (
    QUEUECTL,
    assert_error,
    cli_env,
    cli_json,
    enqueue_lines,
    iso_ms,
    run_cli,
    set_config,
)
from tests.inproc import burst


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


def test_logs_of_each_attempt(db_path: Path) -> None:
    # Retries after min(1, 0.2) s; the worker runs in-process (tests/integration/test_worker.py
    # checks the retries themselves), the `logs` command is the subject here.
    set_config(db_path, backoff_base=1, backoff_max=0.2)
    command = 'echo "try $QUEUECTL_ATTEMPT"; echo "to stderr" >&2; [ "$QUEUECTL_ATTEMPT" -ge 3 ]'
    enqueue_lines(db_path, [{"id": "flaky", "command": command, "max_retries": 5}])
    assert burst(db_path) == 0
    assert cli_json(db_path, "show", "flaky")["attempts"] == 3
    assert run_cli(db_path, "logs", "flaky").stdout == "try 3\nto stderr\n"
    assert run_cli(db_path, "logs", "flaky", "--attempt", "1").stdout == "try 1\nto stderr\n"
    assert run_cli(db_path, "logs", "flaky", "--attempt", "2").stdout == "try 2\nto stderr\n"
    assert_error(run_cli(db_path, "logs", "flaky", "--attempt", "4"), 1, "'flaky'", "attempt 4")


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
        assert burst(db_path) == 0
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
    assert burst(db_path, count=2) == 0
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
    assert burst(db_path, count=2) == 0
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
            timeout=30,
        )
        assert result.returncode == 0, result.stderr
        assert cli_json(expected, "show", "where")["state"] == "pending"


def test_output_limit_keeps_the_tail_of_each_attempt(db_path: Path) -> None:
    assert run_cli(db_path, "config", "set", "output-limit", "10").returncode == 0
    enqueue_lines(db_path, [{"id": "loud", "command": "seq 1 100"}])
    assert burst(db_path) == 0
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
    assert burst(db_path) == 0
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
