"""Property: whatever JSON reaches ``queuectl enqueue``, it answers 0 or 1, never a traceback.

Generated documents mix arbitrary JSON with job-shaped objects whose fields hold
arbitrary values, and arrays of both. The job count changes only on exit 0, and
then by exactly the number of jobs in the document. Most examples run the CLI
in-process (``queuectl.cli.main``: the same parsing, store and error handling as
the executable, minus interpreter start-up); a smaller sample runs the real
executable.
"""

from __future__ import annotations

import contextlib
import io
import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from queuectl.cli import main
from tests.helpers import run_cli

FIELDS = ["id", "command", "max_retries", "priority", "run_at", "delay", "timeout"]
FIELDS += ["queue", "env", "cwd", "state", "attempts", "colour"]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(["", " ", "a b", "\x00", "x" * 129, "2030-01-01T00:00:00Z", "1e100"])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
names = st.text("abcXYZ019-_.:", min_size=1, max_size=12)
#: Values a field accepts, so a good share of documents is valid (and enqueued).
valid = {
    "id": names,
    "max_retries": st.integers(0, 10),
    "priority": st.integers(-(2**31), 2**31 - 1),
    "run_at": st.sampled_from(["2030-01-01T00:00:00Z", "2020-02-02 10:00", 1_900_000_000]),
    "delay": st.floats(0, 1e6),
    "timeout": st.floats(0.001, 1e6),
    "queue": names,
    "env": st.dictionaries(st.text("ABC_", min_size=1, max_size=4), st.text(max_size=5)),
    "cwd": st.just("/tmp"),
    "state": json_values,
    "attempts": json_values,
    "colour": json_values,
}
fuzzy_jobs = st.fixed_dictionaries(
    {"command": st.text(min_size=1, max_size=12) | json_values},
    optional={name: valid[name] | json_values for name in FIELDS if name != "command"},
)
likely_jobs = st.fixed_dictionaries(
    {"command": st.text(min_size=1, max_size=12)},
    optional={name: valid[name] for name in FIELDS[2:10]},
)
jobs = likely_jobs | fuzzy_jobs
documents = (
    jobs
    | st.lists(jobs, min_size=0, max_size=4)
    | json_values
    | st.lists(jobs, min_size=1, max_size=3).map(lambda items: {"lines": items})
)


def _encode(document: Any) -> tuple[str, int | None]:
    """The text to send and how many jobs it holds if accepted (None: not jobs)."""
    if isinstance(document, dict) and set(document) == {"lines"}:
        lines = document["lines"]
        return "\n".join(json.dumps(j) for j in lines) + "\n", len(lines)
    text = json.dumps(document)
    if isinstance(document, list):
        return text, len(document)
    return text, 1 if isinstance(document, dict) else None


def _count(db: Path) -> int:
    if not db.exists():
        return 0
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT count(*) FROM jobs").fetchone()[0])
    finally:
        conn.close()


def _in_process(db: Path, text: str) -> tuple[int, str, str]:
    """``echo TEXT | queuectl --db DB enqueue``, run by ``main`` in this process."""
    out, err = io.StringIO(), io.StringIO()
    code: Any = 0
    with (
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        _stdin(io.StringIO(text)),
    ):
        try:
            main(["--db", str(db), "enqueue"])
        except SystemExit as exc:
            code = exc.code
    return (0 if code is None else int(code)), out.getvalue(), err.getvalue()


@contextlib.contextmanager
def _stdin(stream: io.StringIO) -> Iterator[None]:
    saved, sys.stdin = sys.stdin, stream
    try:
        yield
    finally:
        sys.stdin = saved


def _check(before: int, after: int, size: int | None, code: int, out: str, err: str) -> None:
    assert code in (0, 1), (code, err)
    assert "Traceback" not in err and "internal error" not in err, err
    if code == 0:
        assert size is not None and after == before + size, (before, after, size)
        assert len(out.split()) == size
        assert err == ""
    else:
        assert after == before
        assert out == ""
        assert len(err.splitlines()) == 1 and err.startswith("Error: "), err


@settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(document=documents)
def test_enqueue_in_process_answers_0_or_1_and_counts_match(tmp_path: Path, document: Any):
    db = tmp_path / "queue.db"
    text, size = _encode(document)
    before = _count(db)
    code, out, err = _in_process(db, text)
    event(f"exit {code}")
    _check(before, _count(db), size, code, out, err)


@pytest.mark.slow
@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(document=documents)
def test_enqueue_executable_answers_0_or_1_and_counts_match(tmp_path: Path, document: Any):
    db = tmp_path / "queue.db"
    text, size = _encode(document)
    before = _count(db)
    result: subprocess.CompletedProcess[str] = run_cli(db, "enqueue", input=text)
    _check(before, _count(db), size, result.returncode, result.stdout, result.stderr)
