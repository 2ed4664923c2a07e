"""Hosts on a private PostgreSQL server, and the record the jobs keep of their own runs.

Every job of these tests is wrapped by ``stamped``: it appends ``start``, ``end``
(or ``killed``, from a SIGTERM trap) lines with the job id, attempt, host, pid
and the real time to ``$MARKS/log``, and holds an ``flock`` on a per-job file for
as long as any process of the execution lives, so an execution that starts while
an earlier one of the same job still runs writes ``OVERLAP``. Overlaps and losses
are counted from this record, not from what the store says.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from queuectl import procs
from tests.helpers import QUEUECTL, cli_env, wait_for
from tests.pgserver import PrivateServer

STAMP = (
    'echo "$1 $QUEUECTL_JOB_ID $QUEUECTL_ATTEMPT ${QUEUECTL_HOST:-?} $$ $(date +%s.%N)"'
    ' >> "$MARKS/log"'
)


def stamped(command: str) -> str:
    """``command`` between the execution stamps (see the module docstring).

    ``LD_PRELOAD``/``FAKETIME`` are dropped first so a host whose clock is faked
    still stamps real time.
    """
    return (
        "unset LD_PRELOAD FAKETIME; "
        f"stamp() {{ {STAMP}; }}; "
        'exec 9>>"$MARKS/$QUEUECTL_JOB_ID.lock"; '
        'flock -n 9 || echo "OVERLAP $QUEUECTL_JOB_ID $QUEUECTL_ATTEMPT" >> "$MARKS/overlaps"; '
        "trap 'stamp killed; exit 143' TERM; "
        "stamp start; "
        f"( {command} ) & wait $!; rc=$?; "
        "stamp end; exit $rc"
    )


@dataclass
class Run:
    """One execution of a job, as the job itself recorded it."""

    job_id: str
    attempt: int
    host: str
    pid: int
    start: float
    end: float | None = None
    killed: bool = False


@dataclass
class Record:
    runs: list[Run]
    overlaps: list[str] = field(default_factory=list)

    def by_job(self) -> dict[str, list[Run]]:
        found: dict[str, list[Run]] = {}
        for run in sorted(self.runs, key=lambda r: r.start):
            found.setdefault(run.job_id, []).append(run)
        return found

    def overlapping(self) -> list[tuple[Run, Run]]:
        """Pairs of executions of one job that ran at the same time (by stamps)."""
        pairs = []
        for runs in self.by_job().values():
            for i, before in enumerate(runs):
                for after in runs[i + 1 :]:
                    if before.end is None or after.start < before.end:
                        pairs.append((before, after))
        return pairs

    def completed(self) -> set[str]:
        return {r.job_id for r in self.runs if r.end is not None and not r.killed}


class Host:
    """``queuectl worker start`` as host ``name``; its log goes to a file."""

    def __init__(
        self,
        name: str,
        url: str,
        folder: Path,
        args: tuple[str, ...],
        env: dict[str, str],
        prefix: list[str],
    ) -> None:
        self.name = name
        self.log_path = folder / f"{name}-{len(list(folder.glob(name + '-*.log')))}.log"
        self._log: IO[bytes] = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*prefix, QUEUECTL, "worker", "start", "--log-format", "plain", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            env=cli_env(url, {"QUEUECTL_HOST": name, "XDG_DATA_HOME": str(folder / "xdg"), **env}),
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float = 120) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self._log.close()


class Cluster:
    """One queue (a schema) on the private server, and the hosts that work it."""

    def __init__(self, server: PrivateServer, schema: str, folder: Path) -> None:
        self.server = server
        self.schema = schema
        self.folder = folder
        self.marks = folder / "marks"
        self.marks.mkdir()
        #: The tests' own URL: the ``postgres`` role, so terminating the workers'
        #: sessions never hits the test's commands.
        self.url = server.url(schema, user="postgres")
        self.hosts: list[Host] = []
        #: Commands left running (``start_cli``): killed and collected by ``close``,
        #: so a failed test leaves no process (nor an unclosed pipe) to a later one.
        self.started: list[subprocess.Popen[str]] = []

    def worker_url(self, port: int | None = None) -> str:
        return self.server.url(self.schema, port=port)

    def host(
        self, name: str, *args: str, port: int | None = None, faketime: str | None = None
    ) -> Host:
        """Start a worker as host ``name`` (through a proxy on ``port``, if given)."""
        prefix = ["faketime", "-f", faketime] if faketime else []
        env = {"MARKS": str(self.marks)}
        made = Host(name, self.worker_url(port), self.folder, args, env, prefix)
        self.hosts.append(made)
        return made

    def cli(
        self, *args: str, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [QUEUECTL, *args],
            input=input,
            capture_output=True,
            text=True,
            env=cli_env(self.url, {"XDG_DATA_HOME": str(self.folder / "xdg")}),
            timeout=timeout,
            stdin=None if input is not None else subprocess.DEVNULL,
        )

    def start_cli(self, *args: str) -> subprocess.Popen[str]:
        """A command left running (``communicate`` collects it)."""
        started = subprocess.Popen(
            [QUEUECTL, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(self.url, {"XDG_DATA_HOME": str(self.folder / "xdg")}),
        )
        self.started.append(started)
        return started

    def json(self, *args: str) -> Any:
        result = self.cli(*args, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def configure(self, **settings: object) -> None:
        for key, value in settings.items():
            result = self.cli("config", "set", key.replace("_", "-"), str(value))
            assert result.returncode == 0, result.stderr

    def enqueue(self, jobs: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
        text = "\n".join(json.dumps(j) for j in jobs) + "\n"
        return self.cli("enqueue", input=text, timeout=120)

    def fetch(self, sql: str) -> list[str]:
        """Rows of one query on the schema, as ``psql`` prints them (``|``-separated)."""
        out = self.server.sql(f'SET search_path TO "{self.schema}"; {sql}')
        return out.splitlines() if out else []

    def counts(self) -> dict[str, int]:
        rows = self.fetch("SELECT state, count(*) FROM jobs GROUP BY state")
        return {state: int(n) for state, n in (r.split("|") for r in rows)}

    def wait_done(self, total: int, timeout: float) -> None:
        wait_for(lambda: self.counts().get("completed", 0) == total, timeout=timeout, interval=0.2)

    def record(self) -> Record:
        runs: dict[tuple[str, int], Run] = {}
        log = self.marks / "log"
        for line in log.read_text().splitlines() if log.exists() else []:
            kind, job_id, attempt, host, pid, stamp = line.split()
            key = (job_id, int(pid))
            if kind == "start":
                runs[key] = Run(job_id, int(attempt), host, int(pid), float(stamp))
            else:
                runs[key].end = float(stamp)
                runs[key].killed = kind == "killed"
        overlaps = self.marks / "overlaps"
        found = overlaps.read_text().splitlines() if overlaps.exists() else []
        return Record(list(runs.values()), found)

    def close(self) -> None:
        for command in self.started:
            if command.poll() is None:
                command.kill()
            command.communicate()
        for host in self.hosts:
            host.stop()
        with contextlib.suppress(AssertionError):
            for row in self.fetch("SELECT pgid, proc_start FROM attempts WHERE pgid IS NOT NULL"):
                pgid, proc_start = row.split("|")
                procs.kill_group(int(pgid), proc_start)
        with contextlib.suppress(AssertionError):
            self.server.sql(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
