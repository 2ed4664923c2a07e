"""``queuectl schedule …`` through the real executable, on both stores (reference §19).

The words, the exit codes, and bad input: one ``Error:`` line, exit 1, nothing stored.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import STORES, store_target
from tests.helpers import assert_one_error, cli_json, iso_ms, job_record, run_cli, total_jobs

KEYS = [
    "name",
    "cron",
    "tz",
    "paused",
    "overlap",
    "next_fire_at",
    "last_fire_at",
    "last_job_id",
    "skipped",
    "job",
]


@pytest.fixture(scope="module", params=STORES)
def db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("schedule-cli")
    path = store_target(request, folder)
    added = run_cli(
        path, "schedule", "add", "kept", "--cron", "@daily", "--tz", "UTC", "-c", "true"
    )
    assert added.returncode == 0, added.stderr
    yield path


BAD = {
    "name-with-space": (["a b", "--cron", "* * * * *", "-c", "true"], "invalid schedule name"),
    "name-too-long": (["x" * 65, "--cron", "* * * * *", "-c", "true"], "invalid schedule name"),
    "name-slash": (["a/b", "--cron", "* * * * *", "-c", "true"], "invalid schedule name"),
    "name-taken": (["kept", "--cron", "* * * * *", "-c", "true"], "'kept' already exists"),
    "cron-range": (["n", "--cron", "61 * * * *", "-c", "true"], "bad minute"),
    "cron-fields": (["n", "--cron", "* * * *", "-c", "true"], "has 4 field(s)"),
    "cron-name": (["n", "--cron", "@reboot", "-c", "true"], "unknown cron name '@reboot'"),
    "cron-extension": (["n", "--cron", "0 0 L * *", "-c", "true"], "bad day-of-month"),
    "zone": (["n", "--cron", "@daily", "--tz", "Mars/Base", "-c", "true"], "unknown time zone"),
    "unknown-field": (
        ["n", "--cron", "@daily", '{"command":"true","foo":1}'],
        "unknown field 'foo'",
    ),
    "id-field": (["n", "--cron", "@daily", '{"command":"true","id":"a"}'], "field 'id' is not"),
    "id-flag": (["n", "--cron", "@daily", "-c", "true", "--id", "a"], "field 'id' is not"),
    "after-field": (["n", "--cron", "@daily", '{"command":"true","after":["a"]}'], "'after'"),
    "delay-flag": (["n", "--cron", "@daily", "-c", "true", "--delay", "5"], "'delay' is not"),
    "run-at-field": (["n", "--cron", "@daily", '{"command":"true","run_at":1}'], "'run_at' is"),
    "bad-priority": (["n", "--cron", "@daily", '{"command":"true","priority":"hi"}'], "priority"),
    "no-command": (["n", "--cron", "@daily", "{}"], "missing required field 'command'"),
    "bad-json": (["n", "--cron", "@daily", "{nope"], "invalid JSON"),
    "array": (["n", "--cron", "@daily", '[{"command":"a"},{"command":"b"}]'], "one job; got 2"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_error_and_nothing_is_stored(db: Path, case: str) -> None:
    args, words = BAD[case]
    before = cli_json(db, "schedule", "list")
    result = run_cli(db, "schedule", "add", *args)
    error = assert_one_error(result)
    assert words in error, error
    assert cli_json(db, "schedule", "list") == before


def test_same_errors_as_enqueue(db: Path) -> None:
    """A template is validated by enqueue's code: the same words, field for field."""
    for job in ('{"command":"true","foo":1}', '{"command":"true","timeout":-1}', '{"command":""}'):
        via_enqueue = assert_one_error(run_cli(db, "enqueue", job))
        via_schedule = assert_one_error(
            run_cli(db, "schedule", "add", "n", "--cron", "@daily", job)
        )
        assert via_schedule == via_enqueue


def test_unknown_names_are_errors(db: Path) -> None:
    for command in ("rm", "pause", "resume", "run"):
        error = assert_one_error(run_cli(db, "schedule", command, "nope"))
        assert error == "Error: no schedule named 'nope'"


def test_usage_errors_exit_2(db: Path) -> None:
    bad_overlap = run_cli(
        db, "schedule", "add", "n", "--cron", "@daily", "--overlap", "x", "-c", "t"
    )
    assert bad_overlap.returncode == 2
    assert run_cli(db, "schedule", "add", "n", "-c", "true").returncode == 2  # no --cron
    both = run_cli(db, "schedule", "add", "n", "--cron", "@daily", '{"command":"a"}', "-c", "b")
    assert both.returncode == 2
    flag_alone = run_cli(db, "schedule", "add", "n", "--cron", "@daily", "--priority", "3")
    assert flag_alone.returncode == 2
    assert "--priority needs -c CMD" in flag_alone.stderr


def test_add_list_pause_resume_run_rm(db: Path) -> None:
    added = run_cli(
        db,
        "schedule",
        "add",
        "report.daily",
        "--cron",
        "0 9 * * 1-5",
        "--tz",
        "America/New_York",
        "--overlap",
        "allow",
        "-c",
        "echo report",
        "--priority",
        "5",
        "--queue",
        "reports",
        "--env",
        "A=1",
        "--timeout",
        "60",
    )
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith(
        "added schedule report.daily (0 9 * * 1-5, America/New_York); next fire at 20"
    )
    [listed] = [s for s in cli_json(db, "schedule", "list") if s["name"] == "report.daily"]
    assert list(listed) == KEYS
    assert listed["job"] == {
        "command": "echo report",
        "priority": 5,
        "queue": "reports",
        "env": {"A": "1"},
        "timeout": 60,
    }
    assert (listed["paused"], listed["overlap"], listed["skipped"]) == (False, "allow", 0)
    assert listed["last_fire_at"] is None and listed["last_job_id"] is None
    assert iso_ms(listed["next_fire_at"]) % 3_600_000 == 0

    human = run_cli(db, "schedule", "list")
    assert human.returncode == 0
    assert human.stdout.split("\n")[0].split() == [
        "NAME",
        "CRON",
        "TZ",
        "NEXT",
        "FIRE",
        "LAST",
        "FIRE",
        "LAST",
        "JOB",
        "SKIPPED",
        "OVERLAP",
        "COMMAND",
    ]

    assert (
        run_cli(db, "schedule", "pause", "report.daily").stdout == "paused schedule report.daily\n"
    )
    [paused] = [s for s in cli_json(db, "schedule", "list") if s["name"] == "report.daily"]
    assert (paused["paused"], paused["next_fire_at"]) == (True, None)
    resumed = run_cli(db, "schedule", "resume", "report.daily")
    assert resumed.stdout.startswith("resumed schedule report.daily; next fire at 20")

    jobs_before = total_jobs(db)
    ran = run_cli(db, "schedule", "run", "report.daily")
    assert ran.returncode == 0, ran.stderr
    job_id = ran.stdout.strip()
    assert job_id.startswith("report.daily@20") and job_id.endswith("Z")
    record = job_record(db, job_id)
    assert (record["priority"], record["queue"], record["timeout"], record["state"]) == (
        5,
        "reports",
        60,
        "pending",
    )
    assert total_jobs(db) == jobs_before + 1
    [after] = [s for s in cli_json(db, "schedule", "list") if s["name"] == "report.daily"]
    assert after["last_job_id"] == job_id
    assert after["last_fire_at"] == job_id.split("@")[1].replace("Z", ".000Z")

    assert run_cli(db, "schedule", "rm", "report.daily").stdout == "removed schedule report.daily\n"
    assert [s["name"] for s in cli_json(db, "schedule", "list")] == ["kept"]
    assert job_record(db, job_id)["id"] == job_id  # its jobs stay


def test_the_default_zone_is_the_adding_machines(db: Path) -> None:
    added = run_cli(
        db,
        "schedule",
        "add",
        "tz.env",
        "--cron",
        "@daily",
        "-c",
        "true",
        env={"TZ": "Asia/Kolkata"},
    )
    assert added.returncode == 0, added.stderr
    unnamed = run_cli(
        db, "schedule", "add", "tz.posix", "--cron", "@daily", "-c", "true", env={"TZ": "EST+5"}
    )
    assert unnamed.returncode == 0, unnamed.stderr
    zones = {s["name"]: s["tz"] for s in cli_json(db, "schedule", "list")}
    assert (zones["tz.env"], zones["tz.posix"]) == ("Asia/Kolkata", "UTC")
    # Asia/Kolkata is UTC+05:30 with no DST: midnight there is 18:30 UTC.
    [s] = [s for s in cli_json(db, "schedule", "list") if s["name"] == "tz.env"]
    assert s["next_fire_at"].endswith("T18:30:00.000Z")
    for name in ("tz.env", "tz.posix"):
        assert run_cli(db, "schedule", "rm", name).returncode == 0


def test_a_worker_runs_what_schedule_run_made(db: Path, tmp_path: Path) -> None:
    ran = run_cli(db, "schedule", "run", "kept")
    assert ran.returncode == 0, ran.stderr
    job_id = ran.stdout.strip()
    worker = run_cli(db, "worker", "start", "--burst", env={"XDG_DATA_HOME": str(tmp_path)})
    assert worker.returncode == 0, worker.stderr
    assert job_record(db, job_id)["state"] == "completed"
    assert json.loads(run_cli(db, "schedule", "list", "--json").stdout)[0]["last_job_id"] == job_id
