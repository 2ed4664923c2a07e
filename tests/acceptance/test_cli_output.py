"""``--json`` shapes of every read command (reference §8, §2.3) and the plain-text output."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import STORES, store_target
from tests.helpers import (
    ISO_Z,
    QUEUECTL,
    WorkerProcess,
    cli_env,
    cli_json,
    iso_ms,
    run_cli,
    run_worker,
    wait_for,
)
from tests.inproc import burst

RECORD_KEYS = {
    "id",
    "command",
    "state",
    "attempts",
    "max_retries",
    "priority",
    "queue",
    "timeout",
    "run_at",
    "next_run_at",
    "created_at",
    "updated_at",
    "last_error",
    "exit_code",
}
HISTORY_KEYS = {
    "attempt",
    "started_at",
    "finished_at",
    "exit_code",
    "signal",
    "error",
    "worker",
    "output_truncated",
}
WORKER_KEYS = {"id", "host", "pid", "started_at", "heartbeat_at", "count", "jobs_done"}
TIME_KEYS = ("run_at", "next_run_at", "created_at", "updated_at")
LONG_ID = "a-very-long-job-id-" + "x" * 100 + "-the-end"
JOBS = [
    {"id": "ok", "command": "echo out; echo err >&2"},
    {"id": "bad", "command": "echo boom; exit 3", "max_retries": 0},
    {
        "id": "later",
        "command": "true",
        "delay": 3600,
        "timeout": 2.5,
        "priority": 4,
        "queue": "q2",
        "env": {"A": "b"},
    },
    {"id": LONG_ID, "command": "echo " + "word " * 60 + "; exit 1", "max_retries": 0},
]


@pytest.fixture(scope="module", params=STORES)
def db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path | str:
    """A database with a completed, a dead, a delayed pending and a long-id job (per store)."""
    folder = tmp_path_factory.mktemp("output")
    path = store_target(request, folder)
    enq = run_cli(path, "enqueue", input="\n".join(json.dumps(j) for j in JOBS))
    assert enq.returncode == 0, enq.stderr
    worker = run_worker(path, "--count", "2", env={"XDG_DATA_HOME": str(folder / "xdg")})
    assert worker.returncode == 0, worker.stderr
    return path


def check_record(record: dict) -> None:
    assert set(record) >= RECORD_KEYS, RECORD_KEYS - set(record)
    for key in TIME_KEYS:
        assert record[key] is None or ISO_Z.match(record[key]), (key, record[key])
    assert ISO_Z.match(record["created_at"])
    assert ISO_Z.match(record["updated_at"])


def test_enqueue_json_is_an_array_of_records_even_for_one_job(db_path: Path) -> None:
    result = run_cli(db_path, "enqueue", "--json", input='{"id":"one","command":"true"}')
    assert result.returncode == 0, result.stderr
    [record] = json.loads(result.stdout)
    check_record(record)
    assert record["id"] == "one"
    assert (record["state"], record["attempts"], record["max_retries"]) == ("pending", 0, 3)
    assert (record["priority"], record["queue"], record["timeout"]) == (0, "default", None)
    assert (record["run_at"], record["last_error"], record["exit_code"]) == (None, None, None)
    assert record["next_run_at"] == record["created_at"]


def test_enqueue_json_with_every_field(db_path: Path) -> None:
    job = {
        "id": "full",
        "command": "make",
        "max_retries": 0,
        "priority": -2,
        "run_at": "2031-02-03T04:05:06.789+01:00",
        "timeout": 90,
        "queue": "builds",
        "env": {"K": "V"},
        "cwd": "/tmp",
    }
    result = run_cli(db_path, "enqueue", "--json", json.dumps(job))
    assert result.returncode == 0, result.stderr
    [record] = json.loads(result.stdout)
    check_record(record)
    assert record["run_at"] == "2031-02-03T03:05:06.789Z"
    assert record["next_run_at"] == "2031-02-03T03:05:06.789Z"
    assert (record["timeout"], record["priority"], record["max_retries"]) == (90, -2, 0)
    assert (record["queue"], record["env"], record["cwd"]) == ("builds", {"K": "V"}, "/tmp")
    assert cli_json(db_path, "show", "full")["run_at"] == record["run_at"]


def test_enqueue_json_for_a_batch_lists_every_record(db_path: Path) -> None:
    text = "\n".join(json.dumps({"id": f"b{i}", "command": "true"}) for i in range(3))
    result = run_cli(db_path, "enqueue", "--json", input=text)
    assert result.returncode == 0, result.stderr
    assert [r["id"] for r in json.loads(result.stdout)] == ["b0", "b1", "b2"]


def test_list_json(db: Path) -> None:
    records = cli_json(db, "list")
    assert [r["id"] for r in records] == [LONG_ID, "later", "bad", "ok"]
    for record in records:
        check_record(record)
    by_id = {r["id"]: r for r in records}
    ok, bad, later = by_id["ok"], by_id["bad"], by_id["later"]
    assert (ok["state"], ok["attempts"], ok["exit_code"], ok["last_error"]) == (
        "completed",
        1,
        0,
        None,
    )
    assert (ok["timeout"], ok["run_at"], ok["next_run_at"]) == (None, None, None)
    assert (bad["state"], bad["attempts"], bad["exit_code"], bad["last_error"]) == (
        "dead",
        1,
        3,
        "exit code 3",
    )
    assert (later["state"], later["timeout"], later["priority"], later["queue"]) == (
        "pending",
        2.5,
        4,
        "q2",
    )
    assert later["run_at"] == later["next_run_at"]
    assert iso_ms(later["run_at"]) - iso_ms(later["created_at"]) == 3_600_000


def test_show_json_has_the_record_and_its_history(db: Path) -> None:
    shown = cli_json(db, "show", "bad")
    check_record(shown)
    assert {k: v for k, v in shown.items() if k != "history"} == next(
        r for r in cli_json(db, "list") if r["id"] == "bad"
    )
    [attempt] = shown["history"]
    assert set(attempt) >= HISTORY_KEYS
    assert attempt["attempt"] == 1
    assert ISO_Z.match(attempt["started_at"])
    assert ISO_Z.match(attempt["finished_at"])
    assert iso_ms(attempt["started_at"]) <= iso_ms(attempt["finished_at"])
    assert (attempt["exit_code"], attempt["signal"], attempt["error"]) == (3, None, "exit code 3")
    assert attempt["output_truncated"] is False
    assert isinstance(attempt["worker"], str)
    assert attempt["worker"]
    assert cli_json(db, "show", "later")["history"] == []


def test_dlq_list_json(db: Path) -> None:
    records = cli_json(db, "dlq", "list")
    assert [r["id"] for r in records] == [LONG_ID, "bad"]
    for record in records:
        check_record(record)
        assert record["state"] == "dead"


def test_status_json_has_all_five_states_and_workers(db: Path) -> None:
    assert cli_json(db, "status") == {
        "jobs": {
            "pending": 1,
            "processing": 0,
            "completed": 1,
            "failed": 0,
            "dead": 2,
            "cancelled": 0,
        },
        "workers": 0,
        "hosts": {},
        "paused": [],
        "all_paused": False,
    }


def test_status_on_a_database_that_does_not_exist_yet(tmp_path: Path) -> None:
    fresh = tmp_path / "new" / "dir" / "q.db"
    status = cli_json(fresh, "status")
    assert status["jobs"] == {
        "pending": 0,
        "processing": 0,
        "completed": 0,
        "failed": 0,
        "dead": 0,
        "cancelled": 0,
    }
    assert status["workers"] == 0
    # A read never creates it (reference §2.6): a mistyped path must not become an empty queue.
    assert not fresh.parent.parent.exists()


def test_config_json(db_path: Path) -> None:
    assert run_cli(db_path, "config", "set", "max_retries", "1").returncode == 0
    settings = cli_json(db_path, "config", "list")
    assert settings["max-retries"] == 1
    assert {"max-retries", "backoff-base", "backoff-max", "job-timeout", "output-limit"} <= set(
        settings
    )
    assert (settings["backoff-base"], settings["backoff-max"]) == (2, 3600)
    assert (settings["job-timeout"], settings["output-limit"]) == (0, 65536)
    assert cli_json(db_path, "config", "get", "MAX-RETRIES") == {"max-retries": 1}


def test_logs_json(db: Path) -> None:
    logs = cli_json(db, "logs", "ok")
    assert logs["id"] == "ok"
    assert logs["attempt"] == 1
    assert logs["output"] == "out\nerr\n"
    assert (logs["output_size"], logs["output_truncated"]) == (8, False)


def test_worker_list_json(db_path: Path) -> None:
    assert cli_json(db_path, "worker", "list") == []
    with WorkerProcess(db_path, "--count", "3") as worker:
        workers = wait_for(lambda: cli_json(db_path, "worker", "list"))
        [info] = workers
        assert set(info) >= WORKER_KEYS
        assert (info["pid"], info["count"], info["jobs_done"]) == (worker.pid, 3, 0)
        assert ISO_Z.match(info["started_at"])
        assert ISO_Z.match(info["heartbeat_at"])
        assert isinstance(info["host"], str)
        assert info["host"]
        assert cli_json(db_path, "status")["workers"] == 3
        run_cli(db_path, "enqueue", '{"command":"true"}')
        wait_for(lambda: cli_json(db_path, "worker", "list")[0]["jobs_done"] == 1)
        stop = run_cli(db_path, "worker", "stop")
        assert stop.returncode == 0, stop.stderr
        assert worker.wait(timeout=30) == 0
    assert cli_json(db_path, "worker", "list") == []
    assert cli_json(db_path, "status")["workers"] == 0


def test_every_read_command_prints_exactly_one_json_document(db: Path) -> None:
    for args in (
        ("list",),
        ("list", "--state", "dead"),
        ("show", "ok"),
        ("logs", "ok"),
        ("dlq", "list"),
        ("status",),
        ("worker", "list"),
        ("config", "list"),
        ("config", "get", "lease"),
    ):
        result = run_cli(db, *args, "--json")
        assert result.returncode == 0, (args, result.stderr)
        json.loads(result.stdout)  # one document, nothing before or after it


def test_plain_output_has_no_colour_and_never_cuts_an_id(db: Path) -> None:
    for args in (("list",), ("dlq", "list"), ("show", LONG_ID), ("list", "--state", "dead")):
        result = run_cli(db, *args)
        assert result.returncode == 0, result.stderr
        assert "\x1b[" not in result.stdout
        assert LONG_ID in result.stdout.split(), args
        assert "…" not in result.stdout
    for args in (("status",), ("config", "list"), ("worker", "list")):
        result = run_cli(db, *args)
        assert result.returncode == 0, result.stderr
        assert "\x1b[" not in result.stdout


def test_plain_status_lists_every_state_and_the_workers(db: Path) -> None:
    result = run_cli(db, "status")
    assert result.returncode == 0, result.stderr
    counts = {}
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    assert counts == {
        "pending": 1,
        "processing": 0,
        "completed": 1,
        "failed": 0,
        "dead": 2,
        "cancelled": 0,
    }
    assert "workers: 0" in result.stdout


def test_logs_prints_raw_bytes(db_path: Path) -> None:
    enq = run_cli(db_path, "enqueue", json.dumps({"id": "bin", "command": r"printf '\377ok\n'"}))
    assert enq.returncode == 0, enq.stderr
    assert burst(db_path) == 0
    raw = subprocess.run(
        [QUEUECTL, "logs", "bin"], capture_output=True, env=cli_env(db_path), timeout=30
    )
    assert (raw.returncode, raw.stdout) == (0, b"\xffok\n")
    assert cli_json(db_path, "logs", "bin")["output"] == "\ufffdok\n"
