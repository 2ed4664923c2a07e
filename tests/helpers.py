"""Shared test helpers: run the real ``queuectl`` executable, manage worker processes.

Every process a test starts leads its own session and is stopped by its process
group id, never by name, so a failing test cannot leave workers or jobs behind.

``run_cli`` is the real executable. A test's own set-up and read-back through the
CLI (``enqueue_lines``, ``set_config``, ``cli_json`` and what is built on it:
``job_record``, ``job_counts``, ``worker_ids``) go through the same entry point
in-process (``tests.clirun``), unless they need an environment of their own: they
are polled and repeated hundreds of times, and an interpreter per call bought
nothing the commands under test do not already show.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from queuectl.models import JobState
from tests.clirun import run_cli_inproc

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
    timeout: float = 30,
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


def _setup_cli(
    db: Path | str, *args: str, env: dict[str, str] | None = None, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """A set-up or read-back command: in-process unless it needs an environment."""
    if env is not None:
        return run_cli(db, *args, env=env, **kwargs)
    kwargs.pop("timeout", None)
    return run_cli_inproc(db, *args, **kwargs)


def cli_json(db: Path | str, *args: str, **kwargs: Any) -> Any:
    """Run a read command with ``--json``; assert it succeeded; return the document.

    In-process, unless ``env`` asks for an environment of its own.
    """
    result = _setup_cli(db, *args, "--json", **kwargs)
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
    """``queuectl worker start ...`` in its own session; stopped by process group on exit.

    ``log``: send its output to this file instead of pipes (long runs would fill a
    pipe and block the worker). ``hostname``: run it in its own UTS namespace under
    that host name, so other workers treat it as a worker of another host.
    """

    def __init__(
        self,
        db: Path | str,
        *args: str,
        env: dict[str, str] | None = None,
        log: Path | None = None,
        hostname: str | None = None,
    ) -> None:
        self.db = db
        self.args = args
        self.env = env
        self.log = log
        self.hostname = hostname
        self.proc: subprocess.Popen[str] | None = None
        self._left = ""

    def start(self) -> WorkerProcess:
        argv = [QUEUECTL, "worker", "start", *self.args]
        if self.hostname is not None:
            argv = [
                "unshare",
                "--uts",
                "sh",
                "-c",
                'hostname "$0" && exec "$@"',
                self.hostname,
                *argv,
            ]
        out: Any = subprocess.PIPE
        if self.log is not None:
            out = open(self.log, "a")  # noqa: SIM115 - handed to the child, closed below
        try:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT if self.log is not None else subprocess.PIPE,
                text=True,
                env=cli_env(self.db, self.env),
                start_new_session=True,
            )
        finally:
            if self.log is not None:
                out.close()
        return self

    def output(self) -> str:
        """What it logged so far (``log`` mode only)."""
        assert self.log is not None
        return self.log.read_text() if self.log.exists() else ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def wait(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def communicate(self, timeout: float = 30) -> tuple[str, str]:
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
            out, err = self.proc.communicate(timeout=10)
            self._left = (out or "") + (err or "")

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self._left = ""
        self.kill_group()
        if exc_type is not None:
            # A test failed inside the block: show what the worker said (pytest
            # prints captured stdout beside the failure).
            said = self.output() if self.log is not None else self._left
            print(f"--- output of queuectl worker start {' '.join(self.args)}:\n{said}")


def run_worker(
    db: Path | str, *args: str, timeout: float = 40, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``queuectl worker start --burst ARGS`` to completion."""
    return run_cli(db, "worker", "start", "--burst", *args, timeout=timeout, env=env)


def enqueue_lines(db: Path | str, jobs: Sequence[dict[str, Any]]) -> list[str]:
    text = "\n".join(json.dumps(j) for j in jobs) + "\n"
    result = _setup_cli(db, "enqueue", input=text)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def job_record(db: Path | str, job_id: str) -> dict[str, Any]:
    """``show JOB_ID --json``: the record with its ``history``."""
    return cli_json(db, "show", job_id)  # type: ignore[no-any-return]


def job_counts(db: Path | str) -> dict[str, int]:
    return cli_json(db, "status")["jobs"]  # type: ignore[no-any-return]


def total_jobs(db: Path | str) -> int:
    return sum(job_counts(db).values())


def set_config(db: Path | str, **values: object) -> None:
    for key, value in values.items():
        result = _setup_cli(db, "config", "set", key.replace("_", "-"), str(value))
        assert result.returncode == 0, result.stderr


def assert_one_error(
    result: subprocess.CompletedProcess[str], code: int = 1, *, logs: bool = False
) -> str:
    """Exit ``code`` with exactly one ``Error:`` line on stderr and no traceback.

    ``logs``: a worker's log lines may come before it (they are not errors).
    """
    lines = result.stderr.splitlines()
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1, result.stderr
    if not logs:
        assert lines == errors, result.stderr
    return errors[0]


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie counts as dead: it runs nothing)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != b"Z"


def read_pids(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def wait_for_file(path: Path, timeout: float = 20) -> str:
    return wait_for(lambda: path.exists() and path.read_text().strip(), timeout=timeout)


def kill_pids(pids: Sequence[int]) -> None:
    """Clean-up for processes a test recorded by pid (never by name)."""
    for pid in pids:
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def vm_hwm_kib(pid: int) -> int:
    """Peak resident set size of ``pid`` (``VmHWM``), in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmHWM for pid {pid}")


#: Shell snippets that wrap a job's work so tests can see every execution:
#: ``start``/``end`` lines with timestamps in ``$MARKS/log``, and an ``flock`` on a
#: per-job file held by the whole execution (grandchildren inherit fd 9), so an
#: execution that starts while any process of an earlier one still runs records
#: ``OVERLAP``. The lock is freed by the kernel when the last holder dies, so a
#: killed execution or a lingering zombie never causes a false alarm.
MARK_START = (
    'exec 9>>"$MARKS/$QUEUECTL_JOB_ID.lock"; '
    'flock -n 9 || echo "OVERLAP $QUEUECTL_JOB_ID $QUEUECTL_ATTEMPT" >> "$MARKS/overlaps"; '
    'echo "start $QUEUECTL_JOB_ID $QUEUECTL_ATTEMPT $$ $(date +%s.%N)" >> "$MARKS/log"; '
)
MARK_END = 'echo "end $QUEUECTL_JOB_ID $QUEUECTL_ATTEMPT $$ $(date +%s.%N)" >> "$MARKS/log"; '


def marked(command: str) -> str:
    """``command`` (in a subshell, so it may ``exit``) between the execution markers.

    ``$MARKS`` is set by the test.
    """
    return f"{MARK_START}( {command} ); rc=$?; {MARK_END}exit $rc"


@dataclass
class Execution:
    job_id: str
    attempt: int
    pid: int
    start: float
    end: float | None = None


def read_executions(marks: Path) -> list[Execution]:
    """Parse ``$MARKS/log`` into executions (``end`` is None for a killed one)."""
    runs: dict[tuple[str, int], Execution] = {}
    log = marks / "log"
    for line in log.read_text().splitlines() if log.exists() else []:
        kind, job_id, attempt, pid, stamp = line.split()
        key = (job_id, int(pid))
        if kind == "start":
            runs[key] = Execution(job_id, int(attempt), int(pid), float(stamp))
        else:
            runs[key].end = float(stamp)
    return list(runs.values())


def assert_no_overlap(marks: Path) -> list[Execution]:
    """No two executions of one job ran at the same time; returns the executions."""
    overlaps = marks / "overlaps"
    assert not overlaps.exists(), overlaps.read_text()
    runs = read_executions(marks)
    by_job: dict[str, list[Execution]] = {}
    for run in runs:
        by_job.setdefault(run.job_id, []).append(run)
    for job_runs in by_job.values():
        job_runs.sort(key=lambda r: r.start)
        for before, after in itertools.pairwise(job_runs):
            if before.end is not None:
                assert before.end <= after.start, (before, after)
    return runs


def job_state(db: Path | str, job_id: str) -> tuple[str, int] | None:
    """``(state, claims)`` read straight from the store: cheap enough to poll tightly.

    Only for timing measurements; assertions go through the CLI.
    """
    rows = db_rows(db, "SELECT state, claims FROM jobs WHERE id = ?", job_id)
    return None if not rows else (str(rows[0][0]), int(rows[0][1]))


def worker_ids(db: Path | str) -> set[str]:
    return {w["id"] for w in cli_json(db, "worker", "list")}


_HOLD_LOCK = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=60)
conn.execute("BEGIN IMMEDIATE")
print("locked", time.time(), flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("ROLLBACK")
print("released", time.time(), flush=True)
"""


class WriteLock:
    """Another process holding SQLite's write lock (``BEGIN IMMEDIATE``) for a while."""

    def __init__(self, db: Path | str, seconds: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _HOLD_LOCK, str(db), str(seconds)],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        assert line[:1] == ["locked"], line
        self.locked_at = float(line[1])
        self.released_at: float | None = None

    def wait(self, timeout: float = 30) -> float:
        """Wait for the release; returns its time (``time.time()``)."""
        out, _ = self.proc.communicate(timeout=timeout)
        self.released_at = float(out.split()[1])
        return self.released_at

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.communicate()

    def __enter__(self) -> WriteLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


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
    return {s.value: found.get(s.value, 0) for s in JobState}


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

    from queuectl.backends.postgres_conn import parse_target, settings
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
