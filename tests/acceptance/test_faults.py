"""SQLite faults: locks, read-only files and folders, full disks, foreign and corrupt files.

Reference §5.8: nothing enqueued is lost and nothing half-written remains; a command
that cannot use the database exits 1 with one ``Error:`` line, never a traceback;
a file that is not ours (or is newer than this queuectl) is never modified.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from queuectl.backends.sqlite import APPLICATION_ID, SCHEMA_VERSION, migrate
from tests.conftest import Mounts
from tests.helpers import (
    QUEUECTL,
    WorkerProcess,
    WriteLock,
    assert_one_error,
    cli_env,
    enqueue_lines,
    job_record,
    run_cli,
    run_worker,
    set_config,
    wait_for,
    wait_for_file,
)

#: SQLite's own faults (locks, files, mounts); PostgreSQL's are in test_postgres_store.
pytestmark = pytest.mark.sqlite_only

#: One write, one read and the worker: each must refuse an unusable database.
COMMANDS = [
    ("enqueue", "-c", "echo hi"),
    ("status",),
    ("list", "--json"),
    ("config", "set", "max-retries", "2"),
    ("worker", "start", "--burst"),
    ("worker", "start", "--burst", "--count", "2", "--processes", "2"),
]


def _all_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_a_finished_job_is_recorded_while_another_process_holds_the_write_lock(
    db_path: Path, tmp_path: Path
):
    enqueue_lines(
        db_path, [{"id": "j", "command": f"echo 1 > {tmp_path}/started; sleep 1.5; echo result"}]
    )
    with WorkerProcess(db_path, log=tmp_path / "w.log") as worker:
        wait_for_file(tmp_path / "started", timeout=30)
        with WriteLock(db_path, 3) as lock:
            assert job_record(db_path, "j")["state"] == "processing"  # reads still work
            released = lock.wait()
        wait_for(lambda: job_record(db_path, "j")["state"] == "completed", timeout=30)
        log = worker.output()
    record = job_record(db_path, "j")
    finished = record["history"][0]["finished_at"]
    assert finished is not None
    # The command ended (about 1.5 s in) while the lock was held; its result was
    # written once the lock went away.
    assert run_cli(db_path, "logs", "j").stdout == "result\n"
    assert lock.released_at == released
    assert "Traceback" not in log and "ERROR" not in log, log


def test_a_heartbeat_that_cannot_get_the_write_lock_says_why(db_path: Path, tmp_path: Path):
    set_config(db_path, lease=3)  # a heartbeat every 0.75 s, each given 0.6 of the lease
    with WorkerProcess(db_path, log=tmp_path / "w.log") as worker:
        wait_for(lambda: "started" in worker.output(), timeout=30)
        with WriteLock(db_path, 4):
            wait_for(lambda: "heartbeat failed" in worker.output(), timeout=30)
        log = worker.output()
    failed = [line for line in log.splitlines() if "heartbeat failed" in line]
    assert all(re.search(r"heartbeat failed: \S", line) for line in failed), failed
    assert "did not answer within 1.8s" in failed[0], failed


def test_a_command_gives_up_on_a_long_lock_with_one_error_line(db_path: Path):
    enqueue_lines(db_path, [{"id": "before", "command": "true"}])
    with WriteLock(db_path, 60):
        started = time.monotonic()
        result = run_cli(db_path, "enqueue", "-c", "echo x", env={"QUEUECTL_BUSY_TIMEOUT": "1"})
        took = time.monotonic() - started
        line = assert_one_error(result)
        assert "locked" in line and "nothing was changed" in line, line
        assert took < 1 + 20, took
        # Reads do not need the write lock.
        assert run_cli(db_path, "status", "--json").returncode == 0
    assert [j["id"] for j in json.loads(run_cli(db_path, "list", "--json").stdout)] == ["before"]


@pytest.mark.parametrize("value", ["abc", "0", "-1", "nan"])
def test_a_bad_busy_timeout_is_one_error_line(db_path: Path, value: str):
    result = run_cli(db_path, "status", env={"QUEUECTL_BUSY_TIMEOUT": value})
    assert "QUEUECTL_BUSY_TIMEOUT" in assert_one_error(result)


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_a_folder_as_the_database_path(tmp_path: Path, args: tuple[str, ...]):
    folder = tmp_path / "a-folder.db"
    folder.mkdir()
    line = assert_one_error(run_cli(folder, *args))
    assert "folder" in line
    assert list(folder.iterdir()) == []


def _foreign(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.execute("INSERT INTO notes VALUES ('mine')")
    conn.commit()
    conn.close()


def _garbage(path: Path) -> None:
    path.write_bytes(bytes(range(256)) * 64)


def _text(path: Path) -> None:
    path.write_text("not a database, just some notes\n")


def _newer(path: Path) -> None:
    assert run_cli(path, "enqueue", "-c", "echo old").returncode == 0
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


@pytest.mark.parametrize(
    ("make", "expect"),
    [
        (_foreign, "not a queuectl database"),
        (_garbage, "not a usable queuectl database"),
        (_text, "not a usable queuectl database"),
        (_newer, "newer than this queuectl"),
    ],
    ids=["foreign-sqlite", "garbage", "text", "newer-schema"],
)
@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_a_file_that_is_not_ours_is_refused_and_never_modified(
    tmp_path: Path, make, expect: str, args: tuple[str, ...]
):

    folder = tmp_path / "data"
    folder.mkdir()
    db = folder / "queue.db"
    make(db)
    before = _all_files(folder)
    line = assert_one_error(run_cli(db, *args))
    assert expect in line, line
    assert _all_files(folder) == before


def test_a_worker_stops_on_a_database_corrupted_under_it(db_path: Path):
    """Corruption found mid-run is not "busy": the worker exits 1 instead of retrying forever.

    Only the index the claim walks is smashed, so the worker starts, registers and
    then meets the damage in its claim.
    """
    enqueue_lines(db_path, [{"command": f"echo {i}"} for i in range(50)])
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'jobs_claim_pending'")
    page = root.fetchone()[0]
    conn.close()
    with open(db_path, "r+b") as f:
        f.seek(page_size * (page - 1))
        f.write(b"\xff" * page_size)
    result = run_worker(db_path, timeout=30)
    line = assert_one_error(result, logs=True)
    assert "malformed" in line, line


class TestReadOnly:
    def test_read_only_file(self, db_path: Path):
        enqueue_lines(db_path, [{"id": "kept", "command": "true"}])
        subprocess.run(["chattr", "+i", str(db_path)], check=True)
        try:
            for args in COMMANDS[:1] + COMMANDS[3:]:
                line = assert_one_error(run_cli(db_path, *args))
                assert "read-only" in line, line
            # Reading an immutable file still works.
            listed = json.loads(run_cli(db_path, "list", "--json").stdout)
            assert [j["id"] for j in listed] == ["kept"]
        finally:
            subprocess.run(["chattr", "-i", str(db_path)], check=True)

    def test_read_only_folder(self, tmp_path: Path, mounts: Mounts):
        folder = tmp_path / "data"
        folder.mkdir()
        db = folder / "queue.db"
        enqueue_lines(db, [{"id": "kept", "command": "true"}])
        mounts.read_only(folder)
        before = _all_files(folder)
        for args in COMMANDS:
            line = assert_one_error(run_cli(db, *args))
            assert "read-only" in line, line
        assert _all_files(folder) == before
        for missing in (folder / "new.db", folder / "sub" / "queue.db"):
            # A writer must create it, and cannot (a read never tries: reference §2.6).
            line = assert_one_error(run_cli(missing, "config", "set", "max-retries", "1"))
            assert "read-only" in line, line


def test_full_disk_enqueue_fails_whole_and_keeps_what_was_there(tmp_path: Path, mounts: Mounts):
    folder = mounts.tmpfs(tmp_path / "small", "512k")
    db = folder / "queue.db"
    enqueue_lines(db, [{"id": "first", "command": "echo first"}])
    big = [{"id": f"big-{i}", "command": "echo " + "x" * 400} for i in range(3000)]
    text = "\n".join(json.dumps(j) for j in big) + "\n"
    result = run_cli(db, "enqueue", input=text)
    line = assert_one_error(result)
    assert "disk full" in line, line
    assert result.stdout == ""
    listed = json.loads(run_cli(db, "list", "--limit", "0", "--json").stdout)
    assert [j["id"] for j in listed] == ["first"]
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    # The queue still works: the job that was there runs.
    assert run_worker(db).returncode == 0
    assert job_record(db, "first")["state"] == "completed"


def _old_database(path: Path, jobs: int) -> None:
    """A file as version 1 of the schema wrote it, in rollback-journal mode."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    migrate(conn, target=1)
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    for i in range(jobs):
        conn.execute(
            "INSERT INTO jobs (id, command, state, max_retries, next_run_at, created_at,"
            " updated_at) VALUES (?, 'true', 'pending', 0, 0, 0, 0)",
            (f"old-{i}",),
        )
    conn.close()


def test_an_older_schema_is_migrated_once_by_three_workers_starting_together(tmp_path: Path):
    db = tmp_path / "old.db"
    _old_database(db, 30)
    workers = [
        subprocess.Popen(
            [QUEUECTL, "worker", "start", "--burst"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(db),
            start_new_session=True,
        )
        for _ in range(3)
    ]
    results = [(w.wait(timeout=40), w.stderr.read()) for w in workers]  # type: ignore[union-attr]
    for w in workers:
        w.stdout.close()  # type: ignore[union-attr]
        w.stderr.close()  # type: ignore[union-attr]
    assert [code for code, _ in results] == [0, 0, 0], results
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()
    status = json.loads(run_cli(db, "status", "--json").stdout)
    # The counts table was built once from the old rows (twice would double them).
    assert status["jobs"] == {
        "pending": 0,
        "processing": 0,
        "completed": 30,
        "failed": 0,
        "dead": 0,
        "cancelled": 0,
    }
