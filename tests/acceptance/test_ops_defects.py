"""Defects found by using queuectl as a new user would (issue 11), on the real CLI.

* Closing the worker's terminal (SIGHUP) is a stop like SIGTERM, and a worker
  whose terminal or output pipe is gone keeps working instead of dying silently.
* Read-only commands never create a database (a mistyped ``--db`` is not shown as
  an empty queue without a word).
* What queuectl creates is private (0600/0700); a PostgreSQL password is never printed.
* ``worker start --queue ''`` (an unset ``$QUEUE``) is refused as ``enqueue`` refuses it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from queuectl.config import spool_dir
from tests import pg
from tests.helpers import (
    QUEUECTL,
    WorkerProcess,
    assert_one_error,
    cli_env,
    cli_json,
    enqueue_lines,
    iso_ms,
    job_record,
    kill_pids,
    pid_alive,
    read_pids,
    run_cli,
    set_config,
    wait_for,
)
from tests.terminal import PtyProcess


@pytest.fixture
def pids_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "pids"
    yield path
    kill_pids(read_pids(path))


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# --- SIGHUP and a lost terminal ------------------------------------------------------


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    "args",
    [
        pytest.param((), id="rich-log"),
        pytest.param(("--log-format", "plain"), id="plain-log"),
        pytest.param(("--burst",), id="burst-bar"),
        pytest.param(("--processes", "2", "--count", "2"), id="processes"),
    ],
)
def test_closing_the_terminal_lets_the_running_job_finish(
    db_path: Path, tmp_path: Path, pids_file: Path, args: tuple[str, ...]
) -> None:
    """The terminal window is closed while a job runs: the job completes, once, is
    recorded, and the worker exits 0 instead of dying and leaving it ``processing``."""
    done = tmp_path / "done"
    command = f"echo $$ >> {pids_file}; sleep 2; echo finished; touch {done}"
    enqueue_lines(db_path, [{"id": "long", "command": command, "max_retries": 0}])
    with PtyProcess([QUEUECTL, "worker", "start", *args], env=cli_env(db_path)) as term:
        wait_for(lambda: read_pids(pids_file))
        os.close(term.master)  # the window closes: the kernel hangs the terminal up
        code = term.proc.wait(timeout=60)
    assert code == 0
    assert done.exists()
    record = job_record(db_path, "long")
    assert (record["state"], record["attempts"]) == ("completed", 1), record
    assert run_cli(db_path, "logs", "long").stdout == "finished\n"
    assert cli_json(db_path, "worker", "list") == []


def test_a_second_sighup_interrupts_the_running_job(db_path: Path, pids_file: Path) -> None:
    """SIGHUP is a stop signal like SIGTERM: the second one kills the job's group, and
    the job goes back to ``pending`` without using up an attempt."""
    set_config(db_path, kill_grace=0.5)
    enqueue_lines(db_path, [{"id": "slow", "command": f"echo $$ >> {pids_file}; exec sleep 300"}])
    log = pids_file.with_name("worker.log")
    with WorkerProcess(db_path, "--log-format", "plain", log=log) as worker:
        wait_for(lambda: read_pids(pids_file))
        worker.signal(signal.SIGHUP)
        wait_for(lambda: "received SIGHUP" in worker.output())
        assert worker.proc is not None and worker.proc.poll() is None  # graceful: still waiting
        worker.signal(signal.SIGHUP)
        assert worker.wait(timeout=30) == 0
    assert not [p for p in read_pids(pids_file) if pid_alive(p)]
    record = job_record(db_path, "slow")
    assert (record["state"], record["attempts"]) == ("pending", 0), record


@pytest.mark.sqlite_only
def test_under_nohup_a_sighup_is_ignored(db_path: Path, tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["nohup", QUEUECTL, "worker", "start", "--log-format", "plain"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=cli_env(db_path),
            start_new_session=True,
        )
    try:
        wait_for(lambda: "started" in log.read_text())
        proc.send_signal(signal.SIGHUP)
        enqueue_lines(db_path, [{"id": "after-hup", "command": "true"}])
        wait_for(lambda: job_record(db_path, "after-hup")["state"] == "completed")
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.mark.sqlite_only
def test_a_closed_log_pipe_does_not_stop_the_worker(db_path: Path) -> None:
    """``queuectl worker start 2>&1 | head -1``: the reader leaves, the worker works on."""
    proc = subprocess.Popen(
        [QUEUECTL, "worker", "start", "--log-format", "plain", "-v"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=cli_env(db_path),
        start_new_session=True,
    )
    try:
        assert proc.stderr is not None
        assert b"started" in proc.stderr.readline()
        proc.stderr.close()
        ids = enqueue_lines(db_path, [{"command": "echo x"} for _ in range(5)])
        for job_id in ids:
            wait_for(lambda job_id=job_id: job_record(db_path, job_id)["state"] == "completed")
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


# --- read-only commands never create a database --------------------------------------

READERS = {
    "status": (["status"], "pending"),
    "status-json": (["status", "--json"], '"pending": 0'),
    "list": (["list", "--json"], "[]"),
    "dlq-list": (["dlq", "list", "--json"], "[]"),
    "config-get": (["config", "get", "max-retries"], "3"),
    "config-list": (["config", "list", "--json"], '"max-retries": 3'),
    "worker-list": (["worker", "list", "--json"], "[]"),
    "worker-stop": (["worker", "stop"], "No workers running."),
}


@pytest.mark.sqlite_only
@pytest.mark.parametrize(("args", "shows"), READERS.values(), ids=READERS.keys())
def test_a_read_on_a_mistyped_path_creates_nothing(
    tmp_path: Path, args: list[str], shows: str
) -> None:
    typo = tmp_path / "typo" / "q.db"
    result = run_cli(typo, *args)
    assert result.returncode == 0, result.stderr
    assert shows in result.stdout
    [note] = result.stderr.splitlines()
    assert "no database exists" in note and str(typo) in note
    assert not typo.parent.exists()


@pytest.mark.sqlite_only
def test_status_of_a_missing_database_counts_zeros(tmp_path: Path) -> None:
    typo = tmp_path / "typo" / "q.db"
    status = json.loads(run_cli(typo, "status", "--json").stdout)
    assert set(status["jobs"].values()) == {0} and status["workers"] == 0
    assert not typo.parent.exists()


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    "args",
    [["show", "job1"], ["logs", "job1"], ["why", "job1"], ["wait", "job1"]],
    ids=["show", "logs", "why", "wait"],
)
def test_an_unknown_job_stays_an_error_where_no_database_exists(
    tmp_path: Path, args: list[str]
) -> None:
    typo = tmp_path / "typo" / "q.db"
    result = run_cli(typo, *args)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert [line for line in lines if line.startswith("Error:")] == ["Error: no job with id 'job1'"]
    assert any("no database exists" in line for line in lines)
    assert not typo.parent.exists()


@pytest.mark.sqlite_only
def test_status_watch_opened_before_the_database_sees_it_once_created(tmp_path: Path) -> None:
    """``status --watch`` in one terminal, then the first ``enqueue`` in another."""
    target = tmp_path / "later" / "q.db"
    proc = subprocess.Popen(
        [QUEUECTL, "status", "--watch", "--interval", "0.2"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(target),
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        assert "no database exists" in proc.stderr.readline()
        assert not target.parent.exists()
        assert run_cli(target, "enqueue", "-c", "true").returncode == 0
        deadline = time.monotonic() + 30
        while not re.search(r"pending\s+1\b", proc.stdout.readline()):
            assert time.monotonic() < deadline and proc.poll() is None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)


@pytest.mark.sqlite_only
def test_a_writer_still_creates_the_database(tmp_path: Path) -> None:
    target = tmp_path / "new" / "q.db"
    assert run_cli(target, "config", "set", "max-retries", "1").returncode == 0
    result = run_cli(target, "status")
    assert result.returncode == 0 and result.stderr == ""
    assert target.exists()


@pytest.mark.postgres
def test_a_read_never_creates_a_postgresql_schema() -> None:
    schema = pg.Schema(pg.require())
    try:
        result = run_cli(schema.url, "status", "--json")
        assert result.returncode == 0, result.stderr
        assert set(json.loads(result.stdout)["jobs"].values()) == {0}
        assert "no queuectl schema" in result.stderr
        exists = schema.fetch(f"SELECT 1 FROM pg_namespace WHERE nspname = '{schema.name}'")
        assert exists == []
        assert run_cli(schema.url, "enqueue", "-c", "true").returncode == 0
        assert run_cli(schema.url, "status").stderr == ""
    finally:
        schema.drop()


# --- private files, hidden passwords --------------------------------------------------


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask, under which SQLite alone would create 0644 files."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.sqlite_only
@pytest.mark.usefixtures("umask_022")
def test_what_queuectl_creates_is_private(tmp_path: Path, pids_file: Path) -> None:
    db = tmp_path / "made" / "by" / "queuectl" / "q.db"
    tmp_mode = _mode(tmp_path)
    enqueue_lines(db, [{"id": "run", "command": f"echo $$ >> {pids_file}; echo s3cret; sleep 30"}])
    with WorkerProcess(db, "--log-format", "plain"):
        wait_for(lambda: read_pids(pids_file))
        spool = db.with_name("q.db.d") / "spool"
        files = [db, db.with_name("q.db-wal"), db.with_name("q.db-shm"), *spool.iterdir()]
        assert len(files) == 4
        assert {str(f): _mode(f) for f in files} == {str(f): 0o600 for f in files}
        folders = [tmp_path / "made", tmp_path / "made" / "by", db.parent, spool.parent, spool]
        assert {str(d): _mode(d) for d in folders} == {str(d): 0o700 for d in folders}
    assert _mode(tmp_path) == tmp_mode  # it existed: untouched


@pytest.mark.sqlite_only
@pytest.mark.usefixtures("umask_022")
def test_modes_of_existing_files_and_folders_are_left_alone(tmp_path: Path) -> None:
    db = tmp_path / "shared" / "q.db"
    db.parent.mkdir(mode=0o755)
    assert run_cli(db, "enqueue", "-c", "true").returncode == 0
    os.chmod(db, 0o640)
    assert run_cli(db, "enqueue", "-c", "true").returncode == 0
    assert run_cli(db, "worker", "start", "--burst").returncode == 0
    assert _mode(db) == 0o640
    assert _mode(db.parent) == 0o755


@pytest.mark.postgres
def test_the_spool_of_a_postgresql_worker_is_private(
    pg_url: str, tmp_path: Path, pids_file: Path, umask_022: None
) -> None:
    xdg = tmp_path / "xdg"
    enqueue_lines(pg_url, [{"command": f"echo $$ >> {pids_file}; sleep 30"}])
    with WorkerProcess(pg_url, env={"XDG_DATA_HOME": str(xdg)}):
        wait_for(lambda: read_pids(pids_file))
        spool = xdg / "queuectl" / "spool"
        # One folder per store inside it (a start-up sweep keeps to its own store's).
        [store] = spool.iterdir()
        assert store == spool_dir(pg_url, {"XDG_DATA_HOME": str(xdg)})
        assert (_mode(xdg / "queuectl"), _mode(spool), _mode(store)) == (0o700,) * 3
        assert [_mode(f) for f in store.iterdir()] == [0o600]


PASSWORD = "Pa55-w0rd-not-shown"


@pytest.mark.postgres
def test_a_postgresql_password_is_never_printed(pg_schema: pg.Schema, tmp_path: Path) -> None:
    # The test server trusts local logins, so any password gets in.
    url = pg_schema.url.replace("postgresql://postgres@", f"postgresql://postgres:{PASSWORD}@")
    assert PASSWORD in url
    env = {"XDG_DATA_HOME": str(tmp_path / "xdg")}
    said: list[str] = []

    def run(target: str, *args: str) -> subprocess.CompletedProcess[str]:
        result = run_cli(target, *args, env=env)
        said.append(result.stdout + result.stderr)
        return result

    assert run(url, "enqueue", "-c", "sleep 30", "--id", "slow").returncode == 0
    with WorkerProcess(url, "-v", "--log-format", "plain", env=env, log=tmp_path / "w.log") as w:
        wait_for(lambda: job_record(url, "slow")["state"] == "processing")
        run(url, "worker", "list")
        run(url, "worker", "list", "--json")
        run(url, "status")
        said.append(w.output())
    said.append(w.output())
    server = pg_schema.server.replace("postgresql://postgres@", "")
    for bad in (
        f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/test",  # nobody listens
        f"postgresql://postgres:{PASSWORD}@127.0.0.1:port/test",  # not a port
        f"postgresql://postgres:{PASSWORD}@{server.split('?')[0]}_missing_db",
        f"postgresql://postgres@127.0.0.1:port/test?password={PASSWORD}",
        f"postgresql://nobody_here:{PASSWORD}@{server}",
        f"postgresql://postgres:{PASSWORD}@[::1/test",
    ):
        result = run(bad, "status")
        assert_one_error(result)
    assert not [text for text in said if PASSWORD in text], said


# --- an empty queue name for a worker ------------------------------------------------


@pytest.mark.sqlite_only
@pytest.mark.parametrize("name", ["", " "])
def test_a_worker_refuses_an_empty_queue_name_as_enqueue_does(tmp_path: Path, name: str) -> None:
    db = tmp_path / "q.db"
    worker = run_cli(db, "worker", "start", "--queue", name, "--burst", timeout=30)
    line = assert_one_error(worker)
    assert "--queue" in line and "non-empty queue name" in line
    assert not db.exists()
    enqueue = run_cli(db, "enqueue", "-c", "true", "--queue", name)
    assert "non-empty queue name" in assert_one_error(enqueue)


# --- durations on the command line -----------------------------------------------------


def test_durations_with_units_on_the_command_line(db_path: Path) -> None:
    [job] = cli_json(db_path, "enqueue", "-c", "true", "--delay", "2h", "--timeout", "15m")
    assert job["timeout"] == 900
    assert iso_ms(job["next_run_at"]) - iso_ms(job["created_at"]) == 7_200_000
    [typed] = cli_json(db_path, "enqueue", '{"command": "true", "delay": "1.5h", "timeout": "90s"}')
    assert typed["timeout"] == 90
    assert iso_ms(typed["next_run_at"]) - iso_ms(typed["created_at"]) == 5_400_000
    assert run_cli(db_path, "config", "set", "job-timeout", "1h").returncode == 0
    assert run_cli(db_path, "config", "set", "backoff_max", "15m").returncode == 0
    settings = cli_json(db_path, "config", "list")
    assert (settings["job-timeout"], settings["backoff-max"]) == (3600, 900)
    assert settings["retention"] == 604800
    [later] = cli_json(db_path, "enqueue", "-c", "true")
    assert later["timeout"] == 3600


BAD_DURATIONS = {
    "delay-unit": (["enqueue", "-c", "x", "--delay", "5x"], "--delay"),
    "delay-negative": (["enqueue", "-c", "x", "--delay", "-3m"], "--delay"),
    "timeout-two-dots": (["enqueue", "-c", "x", "--timeout", "1.5.h"], "--timeout"),
    "timeout-empty": (["enqueue", "-c", "x", "--timeout", ""], "--timeout"),
    "json-delay": (["enqueue", '{"command": "x", "delay": "5x"}'], "delay"),
    "json-timeout": (["enqueue", '{"command": "x", "timeout": "-3m"}'], "timeout"),
    "config-job-timeout": (["config", "set", "job-timeout", "5x"], "job-timeout"),
    "config-backoff-max": (["config", "set", "backoff-max", "1.5.h"], "backoff-max"),
    "config-retention": (["config", "set", "retention", ""], "retention"),
    "worker-stop-timeout": (["worker", "stop", "--timeout", "5x"], "--timeout"),
}


@pytest.mark.parametrize(("args", "names"), BAD_DURATIONS.values(), ids=BAD_DURATIONS.keys())
def test_a_bad_duration_is_one_error_naming_the_field_and_the_forms(
    db_path: Path, args: list[str], names: str
) -> None:
    enqueue_lines(db_path, [{"id": "existing", "command": "true"}])
    before = (cli_json(db_path, "config", "list"), cli_json(db_path, "list"))
    line = assert_one_error(run_cli(db_path, *args))
    assert names in line and "15m" in line and "number of seconds" in line, line
    assert (cli_json(db_path, "config", "list"), cli_json(db_path, "list")) == before
