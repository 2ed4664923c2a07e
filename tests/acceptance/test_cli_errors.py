"""Exit codes 0/1/2 and one ``Error:`` line, never a traceback, and nothing changed."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import QUEUECTL, assert_error, cli_env, cli_json, run_cli


@pytest.fixture
def db(db_path: Path) -> Path:
    result = run_cli(db_path, "enqueue", '{"id":"taken","command":"echo original"}')
    assert result.returncode == 0, result.stderr
    return db_path


def jobs(db: Path) -> list[dict]:
    return cli_json(db, "list", "--limit", "0")


def test_duplicate_id_is_refused_and_the_job_untouched(db: Path) -> None:
    before = jobs(db)
    result = run_cli(db, "enqueue", '{"id":"taken","command":"echo impostor"}')
    assert_error(result, 1, "'taken'", "already exists")
    assert result.stdout == ""
    assert jobs(db) == before


def test_a_bad_job_in_a_batch_enqueues_nothing_and_is_named_by_position(db: Path) -> None:
    before = jobs(db)
    text = '{"id":"n1","command":"true"}\n\n{"id":"n2","command":"true"}\n{"id":"n3"}\n'
    result = run_cli(db, "enqueue", input=text)
    assert_error(result, 1, "job 3 (line 4)", "command")
    assert jobs(db) == before


def test_a_duplicate_in_json_lines_is_named_by_position_and_line(db: Path) -> None:
    before = jobs(db)
    text = '{"id":"n1","command":"true"}\n\n{"id":"taken","command":"true"}\n'
    assert_error(run_cli(db, "enqueue", input=text), 1, "job 2 (line 3):", "'taken'")
    assert jobs(db) == before


def test_a_duplicate_inside_a_batch_enqueues_nothing(db: Path) -> None:
    before = jobs(db)
    text = '[{"id":"n1","command":"true"}, {"id":"taken","command":"true"}]'
    result = run_cli(db, "enqueue", input=text)
    assert_error(result, 1, "job 2", "'taken'")
    assert jobs(db) == before


BAD_INPUT = [
    ('{"command": "true", "colour": "red"}', ("unknown field 'colour'",)),
    ('{"command": "true"', ("job 1", "invalid JSON")),
    ('{"command": ""}', ("command",)),
    ('{"command": "true", "max_retries": -1}', ("max_retries",)),
    ('{"command": "true", "delay": 1, "run_at": 5}', ("run_at", "delay")),
    ("[]", ("no job given",)),
    ("42", ("expected a JSON object",)),
]


def test_representative_bad_input(db: Path) -> None:
    before = jobs(db)
    for text, fragments in BAD_INPUT:
        assert_error(run_cli(db, "enqueue", input=text), 1, *fragments)
    assert jobs(db) == before


@pytest.mark.parametrize(
    "args",
    [
        ("show", "nope"),
        ("show", "nope", "--json"),
        ("logs", "nope"),
        ("dlq", "retry", "nope"),
    ],
)
def test_unknown_job(db: Path, args: tuple[str, ...]) -> None:
    result = run_cli(db, *args)
    assert_error(result, 1, "'nope'")
    assert result.stdout == ""


def test_dlq_retry_of_a_job_that_is_not_dead_names_it(db: Path) -> None:
    assert_error(run_cli(db, "dlq", "retry", "taken"), 1, "'taken'", "pending", "not dead")
    assert cli_json(db, "show", "taken")["state"] == "pending"


def test_logs_of_a_job_that_has_not_run(db: Path) -> None:
    assert_error(run_cli(db, "logs", "taken"), 1, "'taken'", "not run yet")


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("config", "set", "bogus", "1"), ("unknown config key 'bogus'", "max-retries", "lease")),
        (("config", "get", "bogus"), ("unknown config key 'bogus'", "backoff-base")),
        (("config", "set", "max-retries", "lots"), ("max-retries", "an integer from 0 to")),
        (("config", "set", "backoff-base", "0.5"), ("backoff-base", ">= 1")),
        (("config", "set", "job-timeout", "never"), ("job-timeout", ">= 0")),
        (("config", "set", "max-retries", "-1"), ("max-retries", "an integer from 0 to")),
        (("config", "set", "backoff-max", "-5"), ("backoff-max", ">= 0")),
    ],
)
def test_config_errors_list_the_valid_keys_or_range(
    db: Path, args: tuple[str, ...], fragments: tuple[str, ...]
) -> None:
    before = cli_json(db, "config", "list")
    assert_error(run_cli(db, *args), 1, *fragments)
    assert cli_json(db, "config", "list") == before


USAGE_ERRORS = [
    ("bogus",),
    ("list", "--state", "bogus"),
    ("list", "--limit", "-1"),
    ("list", "--limit", "many"),
    ("show",),
    ("worker", "start", "--count", "0"),
    ("worker", "start", "--count", "2", "--processes", "3"),
    ("dlq", "retry"),
    ("dlq", "retry", "taken", "--all"),
    ("logs", "taken", "--attempt", "0"),
    ("enqueue", "--priority", "1"),
    ("enqueue", '{"command":"true"}', "-c", "true"),
    ("enqueue", "-c", "true", "--priority", "high"),
    ("config", "set", "max-retries"),
    ("status", "--bogus"),
]


def test_enqueue_options_without_c_name_the_option_given(db: Path) -> None:
    before = jobs(db)
    for flag, value in (("--id", "X"), ("--run-at", "5"), ("--max-retries", "1")):
        field = flag[2:].replace("-", "_")
        result = run_cli(db, "enqueue", flag, value, '{"command":"true"}')
        assert_error(result, 2, f"{flag} needs -c CMD", repr(field))
    assert jobs(db) == before
    helped = run_cli(db, "enqueue", "--help").stdout
    flag_form = ("--id", "--max-retries", "--priority", "--delay", "--run-at", "--timeout")
    for flag in (*flag_form, "--queue", "--env", "--cwd"):
        line = next(line for line in helped.splitlines() if line.strip().startswith(flag + " "))
        assert "(with -c)" in line, line


def test_usage_errors_exit_2(db: Path) -> None:
    before = jobs(db)
    for args in USAGE_ERRORS:
        assert_error(run_cli(db, *args), 2)
    assert jobs(db) == before


def test_a_foreign_sqlite_file_is_refused_without_change(tmp_path: Path) -> None:
    foreign = tmp_path / "other.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    before = foreign.read_bytes()
    assert_error(run_cli(foreign, "status"), 1, "not a queuectl database")
    for args in (
        ("enqueue", '{"command":"true"}'),
        ("worker", "start", "--burst"),
        ("worker", "start", "--burst", "--processes", "2", "--count", "2"),
    ):
        assert_error(run_cli(foreign, *args), 1, "not a queuectl database")
    assert foreign.read_bytes() == before


@pytest.mark.sqlite_only
def test_a_newer_schema_is_refused_without_change(db: Path) -> None:
    conn = sqlite3.connect(db)
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    conn.execute(f"PRAGMA user_version = {version + 1}")
    conn.close()
    before = db.read_bytes()
    assert_error(run_cli(db, "list"), 1, "newer", "upgrade queuectl")
    assert db.read_bytes() == before


def test_a_folder_as_database_is_an_error(tmp_path: Path) -> None:
    assert_error(run_cli(tmp_path, "status"), 1, "folder")


@pytest.mark.sqlite_only
def test_help_and_version_exit_0(db_path: Path) -> None:
    for args in (("--help",), ("worker", "start", "--help"), ("dlq", "--help"), ("--version",)):
        result = run_cli(db_path, *args)
        assert result.returncode == 0, result.stderr
        assert result.stdout
    assert not db_path.exists()


@pytest.mark.parametrize("module", ["queuectl", "queuectl.cli"])
def test_python_dash_m_queuectl_is_the_same_cli(db_path: Path, module: str) -> None:
    """``python -m queuectl.cli enqueue`` once exited 0 without enqueueing anything."""
    result = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        capture_output=True,
        text=True,
        env=cli_env(db_path),
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "enqueue" in result.stdout
    assert "worker" in result.stdout
    enq = subprocess.run(
        [sys.executable, "-m", module, "enqueue", '{"id":"m","command":"true"}'],
        capture_output=True,
        text=True,
        env=cli_env(db_path),
        timeout=30,
    )
    assert (enq.returncode, enq.stdout) == (0, "m\n"), enq.stderr
    assert QUEUECTL  # the console script and -m agree on the same database
    assert cli_json(db_path, "show", "m")["state"] == "pending"
