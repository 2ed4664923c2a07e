"""Operating named queues from the command line (reference §17): words, exit codes, and
workers in other processes obeying a pause or a limit."""

from __future__ import annotations

import time
from pathlib import Path

from tests.helpers import (
    WorkerProcess,
    assert_error,
    cli_json,
    enqueue_lines,
    marked,
    read_executions,
    run_cli,
    wait_for,
)


def test_pause_resume_limit_and_list_say_what_they_did(db: str) -> None:
    enqueue_lines(db, [{"id": "e1", "command": "true", "queue": "emails"}, {"command": "true"}])
    assert run_cli(db, "queue", "pause", "emails").stdout == "paused emails\n"
    assert run_cli(db, "queue", "limit", "default", "2").stdout == "default: at most 2 running\n"
    listed = {q["queue"]: q for q in cli_json(db, "queue", "list")}
    assert sorted(listed) == ["default", "emails"]
    emails = listed["emails"]
    assert (emails["paused"], emails["limit"], emails["jobs"]["pending"]) == (True, None, 1)
    assert set(emails["jobs"]) == set(cli_json(db, "status")["jobs"])
    assert (listed["default"]["paused"], listed["default"]["limit"]) == (False, 2)
    plain = run_cli(db, "queue", "list").stdout.splitlines()
    assert plain[0].split()[:3] == ["QUEUE", "PAUSED", "LIMIT"]
    assert plain[2].split()[:3] == ["emails", "yes", "-"]
    status = run_cli(db, "status")
    assert "paused: emails" in status.stdout
    assert cli_json(db, "status")["paused"] == ["emails"]
    assert run_cli(db, "queue", "resume", "emails").stdout == "resumed emails\n"
    assert run_cli(db, "queue", "resume", "emails").stdout == "emails was not paused\n"
    assert run_cli(db, "queue", "limit", "default", "0").stdout == "default: no limit\n"
    assert [q["limit"] for q in cli_json(db, "queue", "list")] == [None, None]


def test_pause_all_holds_queues_that_appear_later_until_resume_all(db: str) -> None:
    assert run_cli(db, "queue", "pause", "--all").returncode == 0
    enqueue_lines(db, [{"id": "late", "command": "true", "queue": "late"}])
    [late] = cli_json(db, "queue", "list")
    assert (late["queue"], late["paused"], late["paused_by"]) == ("late", True, "all")
    resumed = run_cli(db, "queue", "resume", "late")
    assert resumed.returncode == 0
    assert "late stays paused by `queue pause --all`" in resumed.stderr
    assert cli_json(db, "status")["all_paused"] is True
    assert "paused: every queue" in run_cli(db, "status").stdout
    # A --burst worker does not wait for a paused queue's jobs.
    burst = run_cli(db, "worker", "start", "--burst", timeout=30)
    assert burst.returncode == 0, burst.stderr
    assert cli_json(db, "show", "late")["state"] == "pending"
    assert run_cli(db, "queue", "resume", "--all").stdout == "resumed every queue\n"
    assert cli_json(db, "queue", "list")[0]["paused"] is False


def test_bad_queue_requests_are_one_error_line_and_change_nothing(db: str) -> None:
    enqueue_lines(db, [{"command": "true", "queue": "q"}])
    before = cli_json(db, "queue", "list")
    assert_error(run_cli(db, "queue", "limit", "q", "-1"), 1, "limit", "-1")
    assert_error(run_cli(db, "queue", "limit", "q", "two"), 1, "whole number", "two")
    assert_error(run_cli(db, "queue", "resume", "nope"), 1, "no queue named 'nope'")
    assert_error(run_cli(db, "queue", "resume", "q", "nope"), 1, "nope")
    assert_error(run_cli(db, "queue", "pause", ""), 1, "queue name")
    assert_error(run_cli(db, "queue", "pause"), 2, "--all")
    assert_error(run_cli(db, "queue", "pause", "q", "--all"), 2, "--all")
    assert cli_json(db, "queue", "list") == before


def _most_at_once(marks: Path) -> int:
    events = []
    for run in read_executions(marks):
        assert run.end is not None
        events += [(run.start, 1), (run.end, -1)]
    most = now = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):
        now += step
        most = max(most, now)
    return most


def test_a_limit_holds_across_two_worker_processes(db: str, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    jobs = [{"id": f"c{i}", "command": marked("sleep 0.3"), "queue": "capped"} for i in range(8)]
    jobs += [{"id": f"f{i}", "command": marked("sleep 0.3"), "queue": "free"} for i in range(4)]
    enqueue_lines(db, jobs)
    assert run_cli(db, "queue", "limit", "capped", "2").returncode == 0
    env = {"MARKS": str(marks)}
    with (
        WorkerProcess(db, "--count", "3", "--burst", "--queue", "capped", env=env) as one,
        WorkerProcess(db, "--count", "3", "--burst", "--queue", "capped", env=env) as two,
    ):
        assert one.wait(timeout=120) == 0 and two.wait(timeout=120) == 0
    counts = {q["queue"]: q["jobs"] for q in cli_json(db, "queue", "list")}
    assert counts["capped"]["completed"] == 8
    assert _most_at_once(marks) == 2
    # The free queue was not served here; the limit did not touch it.
    assert counts["free"]["pending"] == 4


def test_a_pause_is_obeyed_within_a_second_and_resume_wakes_workers(
    db: str, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    jobs = [{"id": f"j{i:03d}", "command": marked("sleep 0.05")} for i in range(400)]
    enqueue_lines(db, jobs)
    with WorkerProcess(db, "--count", "2", env={"MARKS": str(marks)}):
        wait_for(lambda: len(read_executions(marks)) >= 5, timeout=60)
        assert run_cli(db, "queue", "pause", "default").returncode == 0
        paused_at = time.time()
        time.sleep(2.0)
        starts = [r.start for r in read_executions(marks)]
        late = [s - paused_at for s in starts if s > paused_at + 1.0]
        assert late == [], late
        left = cli_json(db, "status")["jobs"]["pending"]
        assert left > 0
        assert run_cli(db, "queue", "resume", "default").returncode == 0
        resumed_at = time.time()
        wait_for(lambda: any(r.start > resumed_at for r in read_executions(marks)), timeout=10)
        first = min(r.start for r in read_executions(marks) if r.start > resumed_at)
        assert first - resumed_at < 1.0


def test_why_in_words_and_json(db: str) -> None:
    enqueue_lines(db, [{"id": "m1", "command": "true", "queue": "emails"}])
    run_cli(db, "queue", "pause", "emails")
    plain = run_cli(db, "why", "m1")
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.splitlines() == [
        "m1 is pending:",
        "  - queue emails is paused: `queuectl queue resume emails`  [queue_paused]",
        "  - no worker is running: `queuectl worker start`  [no_worker]",
    ]
    doc = cli_json(db, "why", "m1")
    assert (doc["id"], doc["state"]) == ("m1", "pending")
    assert [r["code"] for r in doc["reasons"]] == ["queue_paused", "no_worker"]
    assert all(set(r) == {"code", "message"} for r in doc["reasons"])
    assert_error(run_cli(db, "why", "nope"), 1, "no job with id 'nope'")


def test_read_commands_create_no_database(tmp_path: Path) -> None:
    db = tmp_path / "nothing" / "q.db"
    listed = run_cli(db, "queue", "list", "--json")
    assert (listed.returncode, listed.stdout.strip()) == (0, "[]"), listed.stderr
    for args, error in [
        (("why", "x"), "Error: no job with id 'x'"),
        (("queue", "resume", "q"), "Error: no queue named 'q'"),
    ]:
        result = run_cli(db, *args)
        assert result.returncode == 1 and error in result.stderr, result.stderr
    assert not db.parent.exists()
