"""Several hosts on one PostgreSQL queue, simulated on this machine.

Each "host" is a real ``queuectl worker start`` process with its own
``QUEUECTL_HOST``: workers of different names never check each other's pids (as
on separate machines) and can only learn about each other through the database.
Their commands run in sessions of their own, so ``kill -9`` of a worker leaves
its commands running, as a crashed worker process would.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from queuectl import procs
from tests import pg
from tests.helpers import QUEUECTL, cli_env, cli_json, run_cli, wait_for

pytestmark = pytest.mark.postgres


class Host:
    """One worker process under a host name of its own; its log goes to a file."""

    def __init__(self, name: str, url: str, folder: Path, *args: str) -> None:
        self.name = name
        self.url = url
        self.args = args
        self.folder = folder
        self.log_path = folder / f"{name}-{len(list(folder.glob(name + '-*.log')))}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> Host:
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [QUEUECTL, "worker", "start", "--log-format", "plain", *self.args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            # Spool files go to $XDG_DATA_HOME for a URL: keep them in the test's folder.
            env=cli_env(
                self.url, {"QUEUECTL_HOST": self.name, "XDG_DATA_HOME": str(self.folder / "xdg")}
            ),
            start_new_session=True,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def wait(self, timeout: float = 120) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        """Kill the worker's process group (its commands have sessions of their own)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGCONT)
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        if self._log is not None:
            self._log.close()


@pytest.fixture
def hosts(pg_schema: pg.Schema, tmp_path: Path) -> Iterator[Any]:
    """Start hosts with ``hosts(name, *args)``; at the end every worker and every command
    it recorded (found by pid and start time, never by name) is killed."""
    started: list[Host] = []

    def start(name: str, *args: str) -> Host:
        host = Host(name, pg_schema.url, tmp_path, *args).start()
        started.append(host)
        return host

    try:
        yield start
    finally:
        for host in started:
            host.stop()
        for row in pg_schema.fetch("SELECT pgid, proc_start FROM attempts WHERE pgid IS NOT NULL"):
            procs.kill_group(row["pgid"], row["proc_start"])


def configure(url: str, **settings: str) -> None:
    for key, value in settings.items():
        result = run_cli(url, "config", "set", key, value)
        assert result.returncode == 0, result.stderr


def enqueue(url: str, jobs: list[dict[str, Any]]) -> None:
    text = "\n".join(json.dumps(j) for j in jobs) + "\n"
    result = run_cli(url, "enqueue", input=text, timeout=30)
    assert result.returncode == 0, result.stderr


def running_on(schema: pg.Schema, host: str) -> list[Any]:
    """Attempts on ``host`` whose command has started and not finished."""
    return schema.fetch(
        "SELECT job_id, attempt, pid, pgid, proc_start FROM attempts"
        f" WHERE host = '{host}' AND pgid IS NOT NULL AND finished_at IS NULL"
    )


def history(url: str, job_id: str) -> list[dict[str, Any]]:
    return list(cli_json(url, "show", job_id)["history"])


@pytest.mark.slow
@pytest.mark.timeout(660)
def test_three_hosts_drain_three_thousand_jobs_exactly_once(
    pg_schema: pg.Schema, hosts: Any, tmp_path: Path
) -> None:
    url = pg_schema.url
    ran = tmp_path / "ran.txt"
    enqueue(
        url,
        [{"id": f"j{i:04d}", "command": f"echo $QUEUECTL_JOB_ID >> {ran}"} for i in range(3000)],
    )
    workers = [hosts(name, "--count", "4", "--burst") for name in ("h1", "h2", "h3")]
    for worker in workers:
        assert worker.wait(timeout=600) == 0, worker.log()
    lines = Counter(ran.read_text().split())
    assert len(lines) == 3000
    assert max(lines.values()) == 1
    assert cli_json(url, "status")["jobs"]["completed"] == 3000
    rows = pg_schema.fetch(
        "SELECT host, count(*) AS n, max(attempt) AS most FROM attempts GROUP BY host"
    )
    by_host = {r["host"]: r["n"] for r in rows}
    assert sum(by_host.values()) == 3000, by_host
    assert max(r["most"] for r in rows) == 1
    # Not a fairness promise, but all three took part.
    assert set(by_host) == {"h1", "h2", "h3"}, by_host


def test_a_killed_hosts_jobs_are_recovered_by_the_others(
    pg_schema: pg.Schema, hosts: Any, tmp_path: Path
) -> None:
    url = pg_schema.url
    configure(url, lease="2", **{"reap-interval": "0.5", "backoff-base": "1"})
    log = tmp_path / "runs.txt"
    command = f"echo $QUEUECTL_JOB_ID:$QUEUECTL_ATTEMPT >> {log}; sleep 2"
    enqueue(url, [{"id": f"j{i}", "command": command, "max_retries": 5} for i in range(12)])
    doomed = hosts("h1", "--count", "4")
    taken = wait_for(lambda: len(running_on(pg_schema, "h1")) == 4 and running_on(pg_schema, "h1"))
    doomed.signal(signal.SIGKILL)
    assert doomed.wait() == -signal.SIGKILL
    survivors = [hosts(name, "--count", "4", "--burst") for name in ("h2", "h3")]
    for worker in survivors:
        assert worker.wait(timeout=40) == 0, worker.log()
    assert cli_json(url, "status")["jobs"]["completed"] == 12
    for row in taken:
        first, *rest = history(url, row["job_id"])
        assert (first["host"], first["outcome"]) == ("h1", "lost")
        assert "worker lost" in first["error"]
        assert rest[-1]["outcome"] == "completed"
        assert rest[-1]["host"] in ("h2", "h3")
    assert "recovered from lost worker" in survivors[0].log() + survivors[1].log()


def test_a_restarted_host_kills_what_its_crashed_worker_left_running(
    pg_schema: pg.Schema, hosts: Any
) -> None:
    url = pg_schema.url
    configure(url, lease="2", **{"reap-interval": "0.5", "backoff-base": "1"})
    enqueue(url, [{"id": "long", "command": "sleep 300", "max_retries": 5}])
    first = hosts("h1")
    [orphan] = wait_for(lambda: running_on(pg_schema, "h1"))
    first.signal(signal.SIGKILL)
    first.wait()
    # Another host takes the job over after the lease; it cannot reach h1's process.
    other = hosts("h2")
    [rerun] = wait_for(lambda: running_on(pg_schema, "h2"), timeout=30)
    assert procs.is_alive(orphan["pid"], orphan["proc_start"])
    # h1 comes back: before taking any job it kills what its crash left behind.
    again = hosts("h1")
    wait_for(lambda: not procs.is_alive(orphan["pid"], orphan["proc_start"]), timeout=30)
    assert procs.is_alive(rerun["pid"], rerun["proc_start"])
    wait_for(lambda: "stray attempt" in again.log(), timeout=30)
    stop = run_cli(url, "worker", "stop", "--now", env={"QUEUECTL_HOST": "h4"}, timeout=30)
    assert (stop.returncode, stop.stdout) == (0, "Stopped 2 worker processes.\n"), stop.stderr
    assert other.wait() == 0 and again.wait() == 0
    assert not procs.is_alive(rerun["pid"], rerun["proc_start"])


def test_worker_stop_from_a_fourth_host_stops_every_host(pg_schema: pg.Schema, hosts: Any) -> None:
    url = pg_schema.url
    enqueue(
        url, [{"id": f"long-{h}", "command": "sleep 300", "queue": h} for h in ("h1", "h2", "h3")]
    )
    workers = [hosts(name, "--count", "4", "--queue", name) for name in ("h1", "h2", "h3")]
    listed = wait_for(
        lambda: len(cli_json(url, "worker", "list")) == 3 and cli_json(url, "worker", "list")
    )
    assert sorted(w["host"] for w in listed) == ["h1", "h2", "h3"]
    status = cli_json(url, "status", env={"QUEUECTL_HOST": "h4"})
    assert (status["workers"], status["hosts"]) == (12, {"h1": 4, "h2": 4, "h3": 4})
    shown = run_cli(url, "status").stdout
    assert "workers: 12 (in 3 processes); by host: h1 4, h2 4, h3 4" in shown
    wait_for(lambda: cli_json(url, "status")["jobs"]["processing"] == 3)
    # A graceful stop would wait for the 300 s commands; --now kills them.
    stop = run_cli(url, "worker", "stop", "--now", env={"QUEUECTL_HOST": "h4"}, timeout=30)
    assert (stop.returncode, stop.stdout) == (0, "Stopped 3 worker processes.\n"), stop.stderr
    for worker in workers:
        assert worker.wait(timeout=30) == 0, worker.log()
    assert cli_json(url, "status")["jobs"]["pending"] == 3
    for h in ("h1", "h2", "h3"):
        [attempt] = history(url, f"long-{h}")
        assert (attempt["host"], attempt["outcome"]) == (h, "interrupted")
    assert cli_json(url, "worker", "list") == []


def test_a_paused_worker_cannot_overwrite_the_newer_attempt(
    pg_schema: pg.Schema, hosts: Any, tmp_path: Path
) -> None:
    url = pg_schema.url
    configure(url, lease="2", **{"reap-interval": "0.5", "backoff-base": "1"})
    log = tmp_path / "runs.txt"
    enqueue(
        url,
        [
            {
                "id": "p",
                "command": "sleep 2; echo attempt $QUEUECTL_ATTEMPT;"
                f" echo $QUEUECTL_ATTEMPT >> {log}",
            }
        ],
    )
    paused = hosts("h1")
    wait_for(lambda: running_on(pg_schema, "h1"))
    paused.signal(signal.SIGSTOP)
    try:
        # Its lease runs out; h2 recovers the job and runs it again to the end,
        # while the paused worker's own command finishes unobserved.
        other = hosts("h2")
        wait_for(lambda: cli_json(url, "show", "p")["state"] == "completed", timeout=40)
        wait_for(lambda: sorted(log.read_text().split()) == ["1", "2"], timeout=30)
    finally:
        paused.signal(signal.SIGCONT)
    # Awake again, the worker reports attempt 1's result: the fence turns it away.
    wait_for(lambda: re.search(r"p lease lost .*result discarded", paused.log()), timeout=30)
    job = cli_json(url, "show", "p")
    assert (job["state"], job["attempts"], job["exit_code"], job["last_error"]) == (
        "completed",
        2,
        0,
        None,
    )
    first, second = job["history"]
    assert (first["host"], first["outcome"], first["exit_code"]) == ("h1", "lost", None)
    assert (second["host"], second["outcome"], second["exit_code"]) == ("h2", "completed", 0)
    assert run_cli(url, "logs", "p").stdout == "attempt 2\n"
    stop = run_cli(url, "worker", "stop", env={"QUEUECTL_HOST": "h4"}, timeout=30)
    assert stop.returncode == 0, stop.stderr
    assert paused.wait() == 0 and other.wait() == 0
