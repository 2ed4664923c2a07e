"""Worker processes: stopping from another terminal, listing, and several processes.

What a worker does with jobs (queues, heartbeats, wake-ups) is tested in-process in
``tests/integration/test_worker.py``; here the subject is the process and the CLI.
"""

from __future__ import annotations

import re
import signal
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import (
    QUEUECTL,
    WorkerProcess,
    cli_env,
    cli_json,
    db_rows,
    enqueue_lines,
    run_cli,
    run_worker,
    wait_for,
)
from tests.terminal import PtyProcess, strip_ansi


def state_of(db: Path, job_id: str) -> str:
    return cli_json(db, "show", job_id)["state"]


def test_worker_stop_with_none_running(db_path: Path) -> None:
    result = run_cli(db_path, "worker", "stop")
    assert (result.returncode, result.stdout) == (0, "No workers running.\n"), result.stderr


def test_worker_stop_lets_the_running_job_finish(db_path: Path, tmp_path: Path) -> None:
    started, release = tmp_path / "started", tmp_path / "release"
    # The running job ends only once the worker has taken the stop request, so the
    # waiting job is due (and would be claimed) however slowly the stop arrives.
    enqueue_lines(
        db_path,
        [
            {
                "id": "long",
                "command": f"touch {started}; until [ -e {release} ]; do sleep 0.05; done;"
                " echo finished",
            },
            {"id": "queued", "command": "true"},
        ],
    )
    log = tmp_path / "worker.log"
    with WorkerProcess(db_path, "--count", "1", log=log) as worker:
        wait_for(started.exists, timeout=30)
        stop = subprocess.Popen(
            [QUEUECTL, "worker", "stop"],
            env=cli_env(db_path),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for(lambda: "stopping: no new jobs" in worker.output(), timeout=30)
            release.touch()
            out, err = stop.communicate(timeout=30)
        finally:
            stop.kill()
            stop.wait()
        assert (stop.returncode, out) == (0, "Stopped 1 worker process.\n"), err
        # `worker stop` returns once the worker has exited.
        assert worker.wait(timeout=5) == 0
    long = cli_json(db_path, "show", "long")
    assert (long["state"], long["attempts"]) == ("completed", 1)
    assert run_cli(db_path, "logs", "long").stdout == "finished\n"
    # No new job was claimed after the stop request.
    assert state_of(db_path, "queued") == "pending"
    assert cli_json(db_path, "worker", "list") == []


def test_worker_stop_now_puts_the_job_back_without_using_an_attempt(
    db_path: Path, tmp_path: Path
) -> None:
    started = tmp_path / "started"
    enqueue_lines(
        db_path, [{"id": "long", "command": f"touch {started}; sleep 60", "max_retries": 0}]
    )
    with WorkerProcess(db_path) as worker:
        wait_for(started.exists, timeout=30)
        stop = run_cli(db_path, "worker", "stop", "--now", timeout=30)
        assert stop.returncode == 0, stop.stderr
        assert worker.wait(timeout=30) == 0
    long = cli_json(db_path, "show", "long")
    assert (long["state"], long["attempts"]) == ("pending", 0)
    [attempt] = long["history"]
    assert attempt["outcome"] == "interrupted"
    assert attempt["finished_at"] is not None


def test_worker_stop_stops_every_worker_process(db_path: Path, tmp_path: Path) -> None:
    logs = tmp_path / "one.log", tmp_path / "two.log"
    with (
        WorkerProcess(db_path, "--count", "2", log=logs[0]) as one,
        WorkerProcess(db_path, log=logs[1]) as two,
    ):
        workers = wait_for(lambda: len(cli_json(db_path, "worker", "list")) == 2 or None)
        assert workers
        listed = cli_json(db_path, "worker", "list")
        assert sorted(w["pid"] for w in listed) == sorted([one.pid, two.pid])
        assert cli_json(db_path, "status")["workers"] == 3
        stop = run_cli(db_path, "worker", "stop", timeout=30)
        assert (stop.returncode, stop.stdout) == (0, "Stopped 2 worker processes.\n"), stop.stderr
        assert one.wait(timeout=10) == 0
        assert two.wait(timeout=10) == 0
    for log in logs:
        said = log.read_text()
        # Idle: the stop line does not speak of waiting for 0 jobs.
        assert re.search(r"stopping: no new jobs$", said, re.MULTILINE), said
        assert "running job" not in said, said


def test_worker_stop_now_of_an_idle_worker_and_a_negative_timeout(
    db_path: Path, tmp_path: Path
) -> None:
    refused = run_cli(db_path, "worker", "stop", "--timeout", "-1")
    assert refused.returncode == 1 and refused.stderr.startswith("Error:"), refused
    assert "--timeout" in refused.stderr
    assert "Traceback" not in refused.stderr
    with WorkerProcess(db_path, log=tmp_path / "w.log") as worker:
        wait_for(lambda: cli_json(db_path, "worker", "list") or None)
        stop = run_cli(db_path, "worker", "stop", "--now", "--timeout", "30")
        assert (stop.returncode, stop.stdout) == (0, "Stopped 1 worker process.\n"), stop.stderr
        assert worker.wait(timeout=10) == 0
        said = worker.output()
    assert "forced stop: no job was running" in said and "killing 0" not in said, said


def test_processes_count_as_their_coroutines_and_stop_together(db_path: Path) -> None:
    with WorkerProcess(db_path, "--processes", "2", "--count", "3") as supervisor:
        seen: list[list[dict[str, object]]] = []

        def both_registered() -> bool:
            seen.append(cli_json(db_path, "worker", "list"))
            return len(seen[-1]) == 2

        try:
            wait_for(both_registered)
        except AssertionError:
            raise AssertionError(f"worker list never showed 2 processes: {seen[-1]}") from None
        workers = seen[-1]
        assert sorted(w["count"] for w in workers) == [1, 2]
        assert supervisor.pid not in {w["pid"] for w in workers}
        assert cli_json(db_path, "status")["workers"] == 3
        stop = run_cli(db_path, "worker", "stop", timeout=30)
        assert (stop.returncode, stop.stdout) == (0, "Stopped 2 worker processes.\n"), stop.stderr
        assert supervisor.wait(timeout=30) == 0
    assert cli_json(db_path, "status")["workers"] == 0


def test_three_processes_of_four_slots_run_300_jobs_exactly_once(
    db_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ran.txt"
    jobs = [
        {"id": f"job-{i:03d}", "command": f'echo "$QUEUECTL_JOB_ID" >> {out}'} for i in range(300)
    ]
    enqueue_lines(db_path, jobs)
    result = run_worker(db_path, "--processes", "3", "--count", "12", timeout=45)
    assert result.returncode == 0, result.stderr
    ran = Counter(out.read_text().split())
    assert len(ran) == 300
    assert set(ran) == {j["id"] for j in jobs}
    assert set(ran.values()) == {1}, [k for k, v in ran.items() if v > 1]
    assert cli_json(db_path, "status")["jobs"] == {
        "pending": 0,
        "processing": 0,
        "completed": 300,
        "failed": 0,
        "dead": 0,
        "cancelled": 0,
    }
    [row] = db_rows(db_path, "SELECT count(*), max(attempt) FROM attempts")
    assert tuple(row) == (300, 1)
    started = re.findall(r"worker \w+ started: (\d+) slot\(s\)", result.stderr)
    assert started == ["4", "4", "4"]


def _mapped(pid: int) -> set[str]:
    """The file names of the shared objects mapped into ``pid`` (``/proc/<pid>/maps``)."""
    lines = Path(f"/proc/{pid}/maps").read_text().splitlines()
    return {line.split()[-1].rsplit("/", 1)[-1] for line in lines if ".so" in line}


def _loaded(mapped: set[str], *prefixes: str) -> list[str]:
    return sorted(name for name in mapped if name.startswith(prefixes))


@pytest.mark.sqlite_only
def test_the_processes_parent_is_a_small_supervisor(db_path: Path) -> None:
    """Issue 15: once the children run, the parent keeps neither asyncio nor the store
    loaded (it replaced itself with ``queuectl/parent.py``, same pid), and children of
    a SQLite store load nothing of OpenSSL; ``pgrep -f 'worker start'`` still finds it."""
    with WorkerProcess(db_path, "--processes", "2", "--count", "2") as supervisor:
        assert supervisor.proc is not None
        wait_for(lambda: len(cli_json(db_path, "worker", "list")) == 2)
        children = [int(w["pid"]) for w in cli_json(db_path, "worker", "list")]
        argv = Path(f"/proc/{supervisor.pid}/cmdline").read_bytes().split(b"\0")
        assert argv[3].endswith(b"/queuectl/parent.py"), argv[:4]
        assert b"worker start " in b" ".join(argv), argv
        parent_libs = _mapped(supervisor.pid)
        assert _loaded(parent_libs, "_asyncio", "_sqlite3", "libsqlite3", "_ssl", "libssl") == []
        assert "_sqlite3" in " ".join(_mapped(children[0]))  # the same check sees a worker's
        for pid in children:
            assert _loaded(_mapped(pid), "_ssl", "_hashlib", "libssl", "libcrypto") == [], pid
        supervisor.signal(signal.SIGTERM)
        assert supervisor.wait(timeout=30) == 0


@pytest.mark.sqlite_only
def test_ctrl_c_in_a_terminal_stops_the_processes_like_a_single_worker(
    db_path: Path, tmp_path: Path
) -> None:
    """^C reaches the whole foreground group; the children ignore it and obey the
    parent: the first lets the running job finish, and everything exits 0."""
    started, release = tmp_path / "started", tmp_path / "release"
    command = f"touch {started}; while [ ! -e {release} ]; do sleep 0.05; done; echo done"
    enqueue_lines(db_path, [{"id": "long", "command": command, "max_retries": 0}])
    argv = [QUEUECTL, "worker", "start", "--processes", "2", "--count", "2"]
    with PtyProcess(argv, env=cli_env(db_path)) as term:
        wait_for(started.exists)
        term.type(b"\x03")
        term.wait_for(lambda text: "received SIGINT; forwarding to 2" in text)
        assert term.proc.poll() is None  # graceful: the job still runs
        release.touch()
        assert term.wait(timeout=30) == 0, strip_ansi(term.output)
    record = cli_json(db_path, "show", "long")
    assert (record["state"], record["attempts"]) == ("completed", 1), record
    assert cli_json(db_path, "worker", "list") == []
