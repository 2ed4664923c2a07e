"""``enqueue --after``, and what ``show``, ``why``, ``list`` and ``status`` say about
dependencies, through the real executable (reference §19.1)."""

from __future__ import annotations

import json

from tests.helpers import assert_error, cli_json, run_cli


def test_after_flags_records_and_words(db: str) -> None:
    assert run_cli(db, "enqueue", "-c", "true", "--id", "build").returncode == 0
    made = run_cli(db, "enqueue", "-c", "true", "--id", "test", "--after", "build")
    assert made.returncode == 0, made.stderr
    record = cli_json(db, "show", "test")
    assert (record["after"], record["after_mode"]) == (["build"], "completed")
    assert cli_json(db, "show", "build")["after"] == []
    why = cli_json(db, "why", "test", "--json")
    assert why["reasons"][0]["code"] == "waiting_for"
    assert "build" in why["reasons"][0]["message"]
    assert why["reasons"][0]["jobs"] == ["build"]
    # Only the codes about other jobs carry ``jobs``.
    assert all("jobs" not in r for r in why["reasons"][1:])
    assert all("jobs" not in r for r in cli_json(db, "why", "build", "--json")["reasons"])
    run_cli(db, "enqueue", "-c", "true", "--id", "ship", "--after", "test", "--after", "build")
    assert cli_json(db, "why", "ship", "--json")["reasons"][0]["jobs"] == ["test", "build"]
    shown = run_cli(db, "show", "test").stdout
    assert "pending (waiting)" in shown and "build (pending)" in shown
    assert "test (pending)" in run_cli(db, "show", "build").stdout
    assert "pending (waiting)" in run_cli(db, "list").stdout
    assert "waiting" in run_cli(db, "status").stdout


def test_bad_dependencies_are_one_error_and_nothing_is_stored(db: str) -> None:
    run_cli(db, "enqueue", "-c", "true", "--id", "a")
    assert_error(
        run_cli(db, "enqueue", "-c", "x", "--after", "nope"), 1, "'nope', which is not a job"
    )
    assert_error(
        run_cli(db, "enqueue", "-c", "x", "--after", "a", "--after-mode", "bogus"),
        1,
        "after_mode must be completed or finished",
    )
    later = [{"id": "b", "command": "x", "after": "c"}, {"id": "c", "command": "y"}]
    assert_error(run_cli(db, "enqueue", json.dumps(later)), 1, "comes later in this input")
    assert_error(
        run_cli(db, "enqueue", json.dumps({"command": "x", "after": [1]})), 1, "bad job id"
    )
    assert [j["id"] for j in cli_json(db, "list")] == ["a"]


def test_rm_and_retry_refusals_name_the_jobs(db: str) -> None:
    run_cli(db, "enqueue", "-c", "true", "--id", "a")
    run_cli(db, "enqueue", "-c", "true", "--id", "b", "--after", "a")
    assert_error(run_cli(db, "rm", "a"), 1, "'a' is a dependency of 'b'")
    run_cli(db, "cancel", "a")
    assert cli_json(db, "show", "b")["state"] == "cancelled"
    [reason] = cli_json(db, "why", "b", "--json")["reasons"]
    assert (reason["code"], reason["jobs"]) == ("cancelled_by_dependency", ["a"])
    assert_error(run_cli(db, "retry", "b"), 1, "'b' waits on 'a', which is cancelled")
    assert run_cli(db, "retry", "a").returncode == 0
    assert [cli_json(db, "show", i)["state"] for i in ("a", "b")] == ["pending", "pending"]


def test_streamed_json_lines_keep_dependencies_across_chunks(db: str) -> None:
    """JSON Lines on stdin are streamed in chunks (``Queue.enqueue_lines``): a job may
    wait on one of an earlier chunk, and one naming a later line is refused whole."""
    from queuectl.queue import STREAM_CHUNK

    lines = [{"id": f"j{i}", "command": "true"} for i in range(STREAM_CHUNK + 1)]
    lines[-1]["after"] = ["j0"]  # in the second chunk, on a job of the first
    text = "".join(json.dumps(line) + "\n" for line in lines)
    assert run_cli(db, "enqueue", input=text).returncode == 0
    last = cli_json(db, "show", f"j{STREAM_CHUNK}")
    assert (last["after"], last["state"]) == (["j0"], "pending")
    assert cli_json(db, "why", f"j{STREAM_CHUNK}", "--json")["reasons"][0]["jobs"] == ["j0"]
    forward = [{"id": "k0", "command": "true", "after": ["k1"]}, {"id": "k1", "command": "true"}]
    text = "".join(json.dumps(line) + "\n" for line in forward)
    assert_error(run_cli(db, "enqueue", input=text), 1, "'k1'")
    assert run_cli(db, "show", "k1").returncode == 1
