"""``--unique-key`` and ``enqueue --skip-duplicates`` through the real executable."""

from __future__ import annotations

import json

from tests.helpers import assert_error, cli_json, run_cli


def test_unique_key_flag_field_record_and_errors(db: str) -> None:
    made = run_cli(db, "enqueue", "-c", "true", "--id", "a1", "--unique-key", "nightly")
    assert made.returncode == 0, made.stderr
    assert cli_json(db, "show", "a1")["unique_key"] == "nightly"
    plain = run_cli(db, "enqueue", "-c", "true")
    assert cli_json(db, "show", plain.stdout.strip())["unique_key"] is None
    assert_error(
        run_cli(db, "enqueue", "-c", "true", "--unique-key", "nightly"),
        1,
        "unique_key 'nightly' is held by job 'a1'",
    )
    batch = '{"command":"x","unique_key":"z"}\n{"command":"y"}\n{"command":"y","unique_key":"z"}\n'
    assert_error(run_cli(db, "enqueue", input=batch), 1, "job 3", "job 1")
    assert len(cli_json(db, "list")) == 2


def test_skip_duplicates_skips_and_says_so(db: str) -> None:
    run_cli(db, "enqueue", "-c", "true", "--id", "a1", "--unique-key", "k1")
    lines = [
        {"command": "x", "unique_key": "k1"},
        {"id": "a1", "command": "y"},
        {"id": "n1", "command": "y", "unique_key": "k2"},
        {"command": "y", "unique_key": "k2"},
        {"id": "n2", "command": "y"},
    ]
    result = run_cli(
        db, "enqueue", "--skip-duplicates", input="".join(json.dumps(x) + "\n" for x in lines)
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "n1\nn2\n"
    assert result.stderr.splitlines() == [
        "skipped #1 (exists as a1)",
        "skipped a1 (exists as a1)",
        "skipped #4 (exists as n1)",
    ]
    again = run_cli(db, "enqueue", "-c", "true", "--unique-key", "k1", "--skip-duplicates")
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "skipped #1 (exists as a1)\n")
