"""Every bad input of reference §4.1 and §4.2: exit 1, one ``Error:`` line, nothing changed.

Each case runs against a database that already holds a job, and compares the job
counts (and the config) before and after. The tables of cases run the CLI in-process
(``tests.clirun``: the same entry point, words and exit code, without an interpreter
to start per case); the few cases of other requests, empty stdin and the error's
wording run the real executable, as test_cli_errors does on both stores.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clirun import run_cli_inproc
from tests.conftest import SLOW_ON_POSTGRES, store_target
from tests.helpers import (
    assert_one_error,
    db_counts,
    db_rows,
    enqueue_lines,
    job_counts,
    run_cli,
)


#: The whole matrix on SQLite; on PostgreSQL it is ``slow``: most cases fail validation,
#: which does not depend on the store, and test_cli_errors runs representative bad
#: input, duplicates, unknown jobs and config errors on both stores by default.
@pytest.fixture(scope="module", params=SLOW_ON_POSTGRES)
def db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("bad-input")
    path = store_target(request, folder)
    enqueue_lines(path, [{"id": "existing", "command": "echo kept", "priority": 7}])
    worker = run_cli(path, "worker", "start", "--burst", env={"XDG_DATA_HOME": str(folder)})
    assert worker.returncode == 0
    enqueue_lines(path, [{"id": "waiting", "command": "true"}])
    assert job_counts(path) == COUNTS
    yield path


def _job(**fields: object) -> str:
    return json.dumps({"command": "echo ok", **fields})


LONG_ID = "x" * 129
BAD_JOBS = {
    # not JSON, or not an object
    "malformed": "{bad",
    "truncated": '{"command": "echo',
    "number": "5",
    "string": '"echo hi"',
    "null": "null",
    "array-of-number": "[1]",
    "empty-array": "[]",
    "blank": "   \n\t",
    # command
    "no-command": "{}",
    "command-null": '{"command": null}',
    "empty-command": _job(command=""),
    "blank-command": _job(command="   "),
    "nul-in-command": _job(command="echo a\u0000b"),
    "command-number": _job(command=5),
    "command-array": _job(command=["echo", "hi"]),
    # id
    "id-space": _job(id="a b"),
    "id-tab": _job(id="a\tb"),
    "id-newline": _job(id="a\nb"),
    "id-bell": _job(id="a\u0007b"),
    "id-nul": _job(id="a\u0000b"),
    "id-nbsp": _job(id="a\u00a0b"),
    "id-129-chars": _job(id=LONG_ID),
    "id-empty": _job(id=""),
    "id-number": _job(id=5),
    "id-duplicate": _job(id="existing"),
    # max_retries
    "retries-text": _job(max_retries="abc"),
    "retries-numeric-text": _job(max_retries="3"),
    "retries-fraction": _job(max_retries=3.5),
    "retries-true": _job(max_retries=True),
    "retries-negative": _job(max_retries=-1),
    "retries-1e100": _job(max_retries=1e100),
    "retries-nan": '{"command": "x", "max_retries": NaN}',
    "retries-infinity": '{"command": "x", "max_retries": Infinity}',
    "retries-huge": _job(max_retries=2**63),
    # timeout
    "timeout-zero": _job(timeout=0),
    "timeout-negative": _job(timeout=-1),
    "timeout-text": _job(timeout="5x"),
    "timeout-nan": '{"command": "x", "timeout": NaN}',
    "timeout-true": _job(timeout=True),
    # priority
    "priority-fraction": _job(priority=1.5),
    "priority-text": _job(priority="1"),
    "priority-true": _job(priority=True),
    "priority-huge": _job(priority=1e100),
    # env
    "env-array": _job(env=["A=b"]),
    "env-string": _job(env="A=b"),
    "env-number-value": _job(env={"A": 1}),
    "env-null-value": _job(env={"A": None}),
    "env-object-value": _job(env={"A": {"b": "c"}}),
    "env-empty-name": _job(env={"": "x"}),
    "env-equals-in-name": _job(env={"A=B": "x"}),
    "env-nul-value": _job(env={"A": "x\u0000y"}),
    # run_at / delay
    "run-at-words": _job(run_at="tomorrow"),
    "run-at-empty": _job(run_at=""),
    "run-at-bad-date": _job(run_at="2026-13-45T10:00:00Z"),
    "run-at-true": _job(run_at=True),
    "run-at-object": _job(run_at={}),
    "run-at-nan": '{"command": "x", "run_at": NaN}',
    "run-at-far": _job(run_at=1e300),
    "delay-and-run-at": _job(run_at="2030-01-01T00:00:00Z", delay=5),
    "delay-negative": _job(delay=-1),
    "delay-text": _job(delay="1.5.h"),
    "delay-infinity": '{"command": "x", "delay": Infinity}',
    # queue, cwd, unknown fields
    "queue-empty": _job(queue=""),
    "queue-number": _job(queue=5),
    "queue-space": _job(queue="a b"),
    "cwd-empty": _job(cwd=""),
    "cwd-number": _job(cwd=5),
    "cwd-nul": _job(cwd="/tmp\u0000x"),
    "unknown-field": _job(colour="red"),
    # batches: all or nothing, the bad job named by position
    "batch-third-bad": json.dumps(
        [{"command": "true"}, {"command": "true"}, {"command": "true", "max_retries": -1}]
    ),
    "batch-non-object": json.dumps([{"command": "true"}, "echo"]),
    "batch-duplicate-inside": json.dumps(
        [{"id": "d", "command": "a"}, {"id": "d", "command": "b"}]
    ),
    "batch-duplicate-existing": json.dumps(
        [{"id": "new-1", "command": "a"}, {"id": "existing", "command": "b"}]
    ),
    "lines-second-bad": '{"command": "true"}\n{"command": ""}\n',
    "lines-second-malformed": '{"command": "true"}\n{bad\n',
    "lines-second-array": '{"command": "true"}\n[1]\n',
}


#: What the fixture leaves: one finished job and one waiting.
COUNTS = {"pending": 1, "processing": 0, "completed": 1, "failed": 0, "dead": 0, "cancelled": 0}


def _snapshot(db: Path | str) -> list[list[tuple[object, ...]]]:
    """Every row of every table, read straight from the store (no process per check)."""
    if str(db).startswith("postgresql://"):
        tables = [
            r[0]
            for r in db_rows(
                db,
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = current_schema() ORDER BY table_name",
            )
        ]
        return [
            sorted((tuple(r) for r in db_rows(db, f'SELECT * FROM "{t}"')), key=repr)
            for t in tables
        ]
    conn = sqlite3.connect(db)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return [sorted(conn.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr) for t in tables]
    finally:
        conn.close()


@pytest.mark.parametrize("text", BAD_JOBS.values(), ids=BAD_JOBS.keys())
def test_a_bad_job_on_stdin_is_refused_whole(db: Path, text: str):
    before = _snapshot(db)
    result = run_cli_inproc(db, "enqueue", input=text)
    line = assert_one_error(result)
    assert result.stdout == ""
    assert "internal error" not in line
    assert _snapshot(db) == before
    assert db_counts(db) == COUNTS


#: The argument takes the same parser as stdin; a sample of each kind of mistake.
AS_ARGUMENT = ["malformed", "blank", "array-of-number", "empty-command", "id-tab"]
AS_ARGUMENT += ["retries-nan", "env-null-value", "delay-and-run-at", "lines-second-bad"]


@pytest.mark.parametrize("name", AS_ARGUMENT)
def test_a_bad_job_as_argument_is_refused_whole(db: Path, name: str):
    before = _snapshot(db)
    result = run_cli_inproc(db, "enqueue", BAD_JOBS[name])
    assert "internal error" not in assert_one_error(result)
    assert _snapshot(db) == before


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (BAD_JOBS["batch-third-bad"], "job 3"),
        (BAD_JOBS["batch-non-object"], "job 2"),
        (BAD_JOBS["batch-duplicate-existing"], "job 2"),
        (BAD_JOBS["lines-second-bad"], "job 2"),
        (BAD_JOBS["unknown-field"], "colour"),
        (BAD_JOBS["retries-fraction"], "max_retries"),
        (BAD_JOBS["env-number-value"], "env"),
    ],
)
def test_the_error_names_the_job_and_the_field(db: Path, text: str, named: str):
    assert named in assert_one_error(run_cli(db, "enqueue", input=text))


def test_empty_stdin_is_refused(db: Path):
    before = _snapshot(db)
    assert "no job given" in assert_one_error(run_cli(db, "enqueue", input=""))
    assert _snapshot(db) == before


#: Values that pass the flags' types but not the job rules (a value of the wrong
#: type, like ``--priority high``, is click's usage error: exit 2).
BAD_FLAGS = {
    "empty-command": ["-c", ""],
    "blank-command": ["-c", "  "],
    "id-space": ["-c", "x", "--id", "a b"],
    "id-long": ["-c", "x", "--id", LONG_ID],
    "id-duplicate": ["-c", "x", "--id", "existing"],
    "retries-negative": ["-c", "x", "--max-retries", "-1"],
    "timeout-zero": ["-c", "x", "--timeout", "0"],
    "timeout-negative": ["-c", "x", "--timeout", "-3"],
    "timeout-nan": ["-c", "x", "--timeout", "nan"],
    "delay-negative": ["-c", "x", "--delay", "-1"],
    "delay-and-run-at": ["-c", "x", "--delay", "1", "--run-at", "2030-01-01T00:00:00Z"],
    "run-at-words": ["-c", "x", "--run-at", "soon"],
    "queue-empty": ["-c", "x", "--queue", ""],
}


@pytest.mark.parametrize("args", BAD_FLAGS.values(), ids=BAD_FLAGS.keys())
def test_a_bad_flag_value_is_refused(db: Path, args: list[str]):
    before = _snapshot(db)
    assert_one_error(run_cli_inproc(db, "enqueue", *args))
    assert _snapshot(db) == before


BAD_CONFIG = {
    "unknown-key": ("colour", "red", "valid keys"),
    "max-retries-negative": ("max-retries", "-1", "0 to"),
    "max-retries-text": ("max-retries", "abc", "0 to"),
    "max-retries-fraction": ("max_retries", "1.5", "0 to"),
    "backoff-base-below-one": ("backoff-base", "0.5", ">= 1"),
    "backoff-base-nan": ("back-off-base", "nan", ">= 1"),
    "backoff-base-inf": ("backoff-base", "inf", ">= 1"),
    "backoff-max-negative": ("backoff-max", "-1", ">= 0"),
    "job-timeout-negative": ("job-timeout", "-5", ">= 0"),
    "job-timeout-text": ("job-timeout", "long", ">= 0"),
    "output-limit-negative": ("output-limit", "-1", "0 to"),
    "output-limit-fraction": ("output-limit", "1.5", "0 to"),
    "lease-zero": ("lease", "0", ">= 1"),
    "reap-interval-zero": ("reap-interval", "0", ">= 0.1"),
    "kill-grace-negative": ("kill-grace", "-1", ">= 0"),
}


@pytest.mark.parametrize(("key", "value", "says"), BAD_CONFIG.values(), ids=BAD_CONFIG.keys())
def test_a_bad_config_key_or_value_is_refused(db: Path, key: str, value: str, says: str):
    before = _snapshot(db)
    line = assert_one_error(run_cli_inproc(db, "config", "set", key, value))
    assert says in line, line
    assert _snapshot(db) == before


@pytest.mark.parametrize(
    "args",
    [
        ("config", "get", "colour"),
        ("show", "missing"),
        ("logs", "missing"),
        ("logs", "waiting"),
        ("dlq", "retry", "missing"),
        ("dlq", "retry", "existing"),
        ("dlq", "retry", "waiting"),
    ],
    ids=" ".join,
)
def test_other_requests_that_fail_are_one_error_line(db: Path, args: tuple[str, ...]):
    before = _snapshot(db)
    assert_one_error(run_cli(db, *args))
    assert _snapshot(db) == before
