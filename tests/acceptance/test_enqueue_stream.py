"""``enqueue < jobs.jsonl`` streams: all or none across chunks, the bad line named.

The stream is validated and written ``STREAM_CHUNK`` jobs at a time (reference
§4.2); these inputs are longer than two chunks so that a duplicate meets its twin
in an earlier, already written chunk, which must still be rolled back.
"""

from __future__ import annotations

import json
from pathlib import Path

from queuectl.queue import STREAM_CHUNK
from tests.helpers import assert_error, cli_json, run_cli

N = 2 * STREAM_CHUNK + 100


def _lines(jobs: list[dict[str, object]], blank_after: int | None = None) -> str:
    out = []
    for i, job in enumerate(jobs, 1):
        out.append(json.dumps(job))
        if i == blank_after:
            out.append("")
    return "\n".join(out) + "\n"


def _nothing_enqueued(db: Path | str, *keep: str) -> None:
    listed = cli_json(db, "list", "--limit", "0")
    assert sorted(j["id"] for j in listed) == sorted(keep)


def test_a_long_stream_is_enqueued_in_order(db_path: Path | str):
    jobs: list[dict[str, object]] = [{"id": f"s{i}", "command": "true"} for i in range(N)]
    result = run_cli(db_path, "enqueue", input=_lines(jobs))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [f"s{i}" for i in range(N)]
    status = cli_json(db_path, "status")
    assert status["jobs"]["pending"] == N
    # Stored in input order too (many rows go in per INSERT): `list` is newest first.
    listed = cli_json(db_path, "list", "--limit", "0")
    assert [j["id"] for j in listed] == [f"s{i}" for i in reversed(range(N))]


def test_an_id_twice_across_chunks_names_both_and_enqueues_nothing(db_path: Path | str):
    jobs: list[dict[str, object]] = [{"command": "true"} for _ in range(N)]
    jobs[2] = {"id": "twin", "command": "true"}
    jobs[-1] = {"id": "twin", "command": "true"}
    # A blank line after job 1: every later job's line is its position + 1.
    result = run_cli(db_path, "enqueue", input=_lines(jobs, blank_after=1))
    assert_error(
        result, 1, f"job {N} (line {N + 1}): id 'twin' is used twice in this input (job 3 (line 4))"
    )
    assert result.stdout == ""
    _nothing_enqueued(db_path)


def test_a_key_twice_across_chunks_names_both(db_path: Path | str):
    jobs: list[dict[str, object]] = [{"command": "true"} for _ in range(N)]
    jobs[0] = {"command": "true", "unique_key": "k"}
    jobs[-1] = {"command": "true", "unique_key": "k"}
    result = run_cli(db_path, "enqueue", input=_lines(jobs))
    assert_error(
        result, 1, f"job {N}: unique_key 'k' is used twice in this input (job 1 has it too)"
    )
    _nothing_enqueued(db_path)


def test_an_existing_id_late_in_the_stream_rolls_back_every_chunk(db_path: Path | str):
    assert run_cli(db_path, "enqueue", "-c", "true", "--id", "old").returncode == 0
    jobs: list[dict[str, object]] = [{"command": "true"} for _ in range(N)]
    jobs[-1] = {"id": "old", "command": "true"}
    result = run_cli(db_path, "enqueue", input=_lines(jobs))
    assert_error(result, 1, f"job {N}: a job with id 'old' already exists")
    _nothing_enqueued(db_path, "old")


def test_a_bad_last_line_rolls_back_every_chunk(db_path: Path | str):
    text = _lines([{"command": "true"} for _ in range(N)]) + "{not json\n"
    result = run_cli(db_path, "enqueue", input=text)
    assert_error(result, 1, f"job {N + 1}: invalid JSON")
    _nothing_enqueued(db_path)
