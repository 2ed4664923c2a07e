"""The words and exit codes of ``cancel``, ``retry``, ``rm``, ``purge``, ``update``, ``wait``
and ``logs --follow`` (reference §16, §12.4), through the real ``queuectl`` on both stores.

Bad input is one ``Error:`` line, exit 1, and nothing changed (checked by
comparing every job's record before and after).
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest

from tests.helpers import (
    QUEUECTL,
    assert_one_error,
    cli_env,
    cli_json,
    enqueue_lines,
    job_record,
    run_cli,
    run_worker,
    set_config,
)


def _jobs(db: str) -> list[dict[str, Any]]:
    return cli_json(db, "list", "--limit", "0")  # type: ignore[no-any-return]


@pytest.fixture
def finished(db: str) -> str:
    """``ok`` completed, ``bad`` dead, ``p1``/``p2`` pending (due in an hour)."""
    set_config(db, max_retries=0)
    enqueue_lines(db, [{"id": "ok", "command": "echo fine"}, {"id": "bad", "command": "exit 3"}])
    assert run_worker(db).returncode == 0
    enqueue_lines(
        db,
        [
            {"id": "p1", "command": "true", "delay": 3600},
            {"id": "p2", "command": "true", "delay": 3600, "queue": "mail"},
        ],
    )
    return db


BAD_REQUESTS = [
    (["cancel", "p1", "nope"], ["no job with id 'nope'", "nothing was changed"]),
    (["cancel", "p1", "ok"], ["'ok' is completed", "only pending, failed and running"]),
    (["cancel", "bad", "p1"], ["'bad' is dead"]),
    (["retry", "bad", "p1"], ["'p1' is pending", "only dead, cancelled and failed"]),
    (["retry", "bad", "nope"], ["no job with id 'nope'"]),
    (["rm", "p1", "nope"], ["no job with id 'nope'"]),
    (["update", "ok", "--priority", "3"], ["'ok' is completed", "only pending and failed"]),
    (["update", "p1", "--delay", "5", "--now"], ["only one of run_at, delay and now"]),
    (["update", "p1", "--queue", " "], ["queue must be a non-empty queue name"]),
    (["update", "p1", "--max-retries", "-1"], ["max_retries must be an integer from 0"]),
    (["update", "p1", "--run-at", "soon"], ["run_at"]),
    (["update", "p1"], ["nothing to change"]),
    (["update", "nope", "--now"], ["no job with id 'nope'"]),
    (["wait", "ok", "nope"], ["no job with id 'nope'"]),
    (["purge", "--older-than", "-1"], ["--older-than"]),
    (["purge", "--older-than", "5x"], ["--older-than"]),
    (["cancel", "p1", "--wait", "soon"], ["--wait"]),
    (["update", "p1", "--delay", "1.5.h"], ["--delay"]),
    (["update", "p1", "--timeout", "0"], ["--timeout"]),
]
WRONG_USAGE = [
    ["cancel"],
    ["retry"],
    ["retry", "bad", "--state", "dead"],
    ["retry", "--state", "pending"],
    ["retry", "bad", "--queue", "mail"],
    ["purge", "--state", "pending"],
]


def test_bad_requests_are_one_error_line_and_change_nothing(finished: str) -> None:
    before = _jobs(finished)
    for args, words in BAD_REQUESTS:
        started = time.monotonic()
        error = assert_one_error(run_cli(finished, *args))
        for word in words:
            assert word in error, (args, word, error)
        assert _jobs(finished) == before, args
        assert time.monotonic() - started < 10  # `wait` checked the ids before waiting
    for args in WRONG_USAGE:
        result = run_cli(finished, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert _jobs(finished) == before


def test_cancel_retry_rm_purge_words(finished: str) -> None:
    db = finished
    result = run_cli(db, "cancel", "p1", "p2")
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        "p1\np2\n",
        "2 job(s) cancelled.\n",
    )
    again = run_cli(db, "cancel", "p1")
    assert (again.returncode, again.stdout) == (0, "p1\n")
    status = cli_json(db, "status")["jobs"]
    assert status == {
        "pending": 0,
        "processing": 0,
        "completed": 1,
        "failed": 0,
        "dead": 1,
        "cancelled": 2,
    }
    assert [j["id"] for j in cli_json(db, "list", "--state", "cancelled")] == ["p2", "p1"]
    moved = run_cli(db, "retry", "--state", "cancelled", "--queue", "mail")
    assert (moved.returncode, moved.stdout, moved.stderr) == (
        0,
        "p2\n",
        "1 job(s) moved back to pending.\n",
    )
    p2 = job_record(db, "p2")
    assert (p2["state"], p2["attempts"]) == ("pending", 0)
    retried = run_cli(db, "retry", "bad")
    assert (retried.returncode, retried.stdout) == (0, "bad\n")
    assert job_record(db, "bad")["state"] == "pending"
    dry = run_cli(db, "purge", "--dry-run")
    assert (dry.returncode, dry.stdout) == (0, "would delete 2 job(s)\n")  # ok, p1
    assert run_cli(db, "purge", "--state", "completed", "--older-than", "3600").stdout == (
        "deleted 0 job(s)\n"
    )
    purged = run_cli(db, "purge")
    assert (purged.returncode, purged.stdout) == (0, "deleted 2 job(s)\n")
    removed = run_cli(db, "rm", "p2", "bad")
    assert (removed.returncode, removed.stdout, removed.stderr) == (
        0,
        "p2\nbad\n",
        "2 job(s) removed.\n",
    )
    assert _jobs(db) == []
    shown = run_cli(db, "show", "ok")
    assert shown.returncode == 1


def test_update_changes_a_waiting_job(finished: str) -> None:
    db = finished
    result = run_cli(db, "update", "p1", "--priority", "9", "--queue", "fast", "--timeout", "7")
    assert (result.returncode, result.stdout) == (0, "p1\n")
    record = job_record(db, "p1")
    assert (record["priority"], record["queue"], record["timeout"]) == (9, "fast", 7)
    now = run_cli(db, "update", "p1", "--now", "--json")
    assert now.returncode == 0, now.stderr
    assert json.loads(now.stdout)["id"] == "p1"
    assert run_worker(db, "--queue", "fast").returncode == 0
    assert job_record(db, "p1")["state"] == "completed"


def test_wait_exits_0_only_when_all_completed(finished: str) -> None:
    db = finished
    ok = run_cli(db, "wait", "ok")
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, "", "")
    both = run_cli(db, "wait", "ok", "bad")
    assert (both.returncode, both.stdout, both.stderr) == (1, "", "job bad is dead\n")
    started = time.monotonic()
    late = run_cli(db, "wait", "p1", "ok", "--timeout", "0.5")
    assert time.monotonic() - started < 10
    assert (late.returncode, late.stderr) == (1, "job p1 is not finished after 0.5s (pending)\n")
    run_cli(db, "cancel", "p1")
    assert run_cli(db, "wait", "p1").stderr == "job p1 is cancelled\n"


def test_logs_follow_goes_through_every_retry_and_exits_as_wait(db: str) -> None:
    set_config(db, backoff_base=1)
    command = 'echo "try $QUEUECTL_ATTEMPT"; test "$QUEUECTL_ATTEMPT" -ge 3'
    enqueue_lines(
        db,
        [
            {"id": "flaky", "command": command, "max_retries": 2},
            {"id": "doomed", "command": "echo no; exit 1", "max_retries": 1},
        ],
    )
    followers = {
        job_id: subprocess.Popen(
            [QUEUECTL, "logs", job_id, "--follow"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(db),
        )
        for job_id in ("flaky", "doomed")
    }
    try:
        assert run_worker(db).returncode == 0
        flaky = followers["flaky"].communicate(timeout=30)
        doomed = followers["doomed"].communicate(timeout=30)
    finally:
        for proc in followers.values():
            proc.kill()
            proc.wait()
    # Every attempt's output, in order, from a follower started before the first.
    assert (followers["flaky"].returncode, flaky[0]) == (0, "try 1\ntry 2\ntry 3\n")
    assert "waiting for attempt 2" in flaky[1]
    assert (followers["doomed"].returncode, doomed[0]) == (1, "no\nno\n")
    assert doomed[1].endswith("job doomed is dead\n")
