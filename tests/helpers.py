"""Shared test helpers: run the real ``queuectl`` executable, manage worker processes.

Every process a test starts leads its own session and is stopped by its process
group id, never by name, so a failing test cannot leave workers or jobs behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

#: The installed console script of the interpreter running the tests.
QUEUECTL = str(Path(sys.executable).with_name("queuectl"))


def cli_env(db: Path | str, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["QUEUECTL_DB"] = str(db)
    env.pop("QUEUECTL_DEBUG", None)
    if extra:
        env.update(extra)
    return env


def run_cli(
    db: Path | str,
    *args: str,
    input: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run ``queuectl ARGS`` against ``db`` and return the finished process."""
    return subprocess.run(
        [QUEUECTL, *args],
        input=input,
        capture_output=True,
        text=True,
        env=cli_env(db, env),
        timeout=timeout,
        stdin=None if input is not None else subprocess.DEVNULL,
    )


def cli_json(db: Path | str, *args: str, **kwargs: Any) -> Any:
    """Run a read command with ``--json``; assert it succeeded; return the document."""
    result = run_cli(db, *args, "--json", **kwargs)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def assert_error(result: subprocess.CompletedProcess[str], code: int, *fragments: str) -> str:
    """The command failed with ``code`` and one ``Error:`` line naming ``fragments``."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    if code == 1:
        # A failed request prints that one line and nothing else.
        assert result.stderr.strip() == errors[0], result.stderr
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


#: ISO-8601 UTC with ``Z``, as every time in ``--json`` output is written.
ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")


def iso_ms(text: str) -> int:
    """Epoch milliseconds of an ISO-8601 ``...Z`` time from ``--json`` output."""
    assert ISO_Z.match(text), text
    return round(datetime.fromisoformat(text).timestamp() * 1000)


def wait_for(predicate: Callable[[], T], timeout: float = 20, interval: float = 0.05) -> T:
    """Poll ``predicate`` until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value: {value!r})")
        time.sleep(interval)


class WorkerProcess:
    """``queuectl worker start ...`` in its own session; stopped by process group on exit."""

    def __init__(self, db: Path | str, *args: str, env: dict[str, str] | None = None) -> None:
        self.db = db
        self.args = args
        self.env = env
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> WorkerProcess:
        self.proc = subprocess.Popen(
            [QUEUECTL, "worker", "start", *self.args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(self.db, self.env),
            start_new_session=True,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def wait(self, timeout: float = 60) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def communicate(self, timeout: float = 60) -> tuple[str, str]:
        assert self.proc is not None
        return self.proc.communicate(timeout=timeout)

    def kill_group(self) -> None:
        """Stop the worker and everything in its process group (not the jobs' own sessions)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired, ValueError):
            self.proc.communicate(timeout=10)

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill_group()


def run_worker(
    db: Path | str, *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``queuectl worker start --burst ARGS`` to completion."""
    return run_cli(db, "worker", "start", "--burst", *args, timeout=timeout, env=env)


def enqueue_lines(db: Path | str, jobs: Sequence[dict[str, Any]]) -> list[str]:
    text = "\n".join(json.dumps(j) for j in jobs) + "\n"
    result = run_cli(db, "enqueue", input=text)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


# Store-level helpers for the integration tests (a real SQLite file, no CLI).


def new_job(job_id: str, *, now: int = 0, **fields: Any) -> Any:
    """A valid ``NewJob`` due at ``now`` unless ``next_run_at`` is given."""
    from queuectl.models import NewJob

    fields.setdefault("command", "true")
    fields.setdefault("max_retries", 3)
    fields.setdefault("next_run_at", now)
    return NewJob(id=job_id, **fields)


def db_counts(db: Path | str) -> dict[str, int]:
    """Jobs per state counted with a real ``GROUP BY`` (not the trigger-kept table)."""
    rows = db_rows(db, "SELECT state, count(*) FROM jobs GROUP BY state")
    found = {row[0]: row[1] for row in rows}
    return {s: found.get(s, 0) for s in ("pending", "processing", "completed", "failed", "dead")}


def db_rows(db: Path | str, sql: str, *args: Any) -> list[Any]:
    """Run one read query on a fresh connection (what another process would see).

    ``db`` may be a ``postgresql://…?schema=…`` URL; the query's ``?`` placeholders
    then become ``$1, $2, …``.
    """
    if str(db).startswith(("postgresql://", "postgres://")):
        return _pg_rows(str(db), sql, *args)
    import sqlite3

    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def _pg_rows(url: str, sql: str, *args: Any) -> list[Any]:
    import re

    from queuectl.backends.pgconn import parse_target, settings
    from tests.pg import run_sync

    counter = iter(range(1, len(args) + 1))
    sql = re.sub(r"\?", lambda _: f"${next(counter)}", sql)
    target = parse_target(url)

    async def fetch() -> list[Any]:
        import asyncpg

        conn = await asyncpg.connect(target.dsn, server_settings=settings(target.schema))
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    return list(run_sync(fetch))
