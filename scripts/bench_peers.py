"""The systems ``bench.py`` compares: queuectl itself and its peers.

Each system can *drain* ``n`` copies of a shell command with ``count`` concurrent
runners (W2, W3), keep an *idle* consumer running (W5), and offer an ``enqueue``
callable while an idle consumer waits (W4):

* ``bare``: an asyncio loop with no database, spawning with the very call queuectl
  uses (``asyncio.create_subprocess_shell(start_new_session=True)``, output to a
  file, pidfd child watcher): the physical limit of a Python runner.
* ``huey``: Huey with its SQLite storage, ``huey_consumer -w N -k thread``, a task
  that runs ``subprocess.run(cmd, shell=True)``.
* ``rq``: RQ on Redis, ``rq worker --burst`` (N workers for N slots).
* ``tsp``: task-spooler (C, in-memory queue), ``tsp -S N``.

Python peers live in a throwaway virtualenv (default ``/tmp/bench-peers``, created
on first use), never in queuectl's dependencies.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from benchlib import (
    PY,
    QUEUECTL_ENQUEUE,
    THIS,
    BenchError,
    Build,
    Enqueue,
    create_store,
    line_enqueuer,
    queuectl_env,
    run,
    running,
    spawn,
    stop_group,
    timed,
    wait_for,
)

PEERS_VENV = Path(os.environ.get("QUEUECTL_BENCH_PEERS", "/tmp/bench-peers"))
PEER_PACKAGES = ("huey", "rq")
#: task-spooler keeps every queued job's client connected; past ~1000 it stalls.
TSP_BATCH = 900


@dataclass
class Drain:
    seconds: float
    ran: int
    exactly_once: bool
    #: queuectl only: first attempt start to last attempt end, as the store saw it.
    span_s: float | None = None


@dataclass
class PeerSetup:
    """What could be set up; a missing peer is skipped with the reason in ``notes``."""

    python: Path | None = None
    tsp: str | None = None
    redis_url: str | None = None
    notes: list[str] = field(default_factory=list)


def _bin(name: str) -> Path:
    return PEERS_VENV / "bin" / name


def ensure_python_peers() -> Path | None:
    """The peers' interpreter, creating the venv and installing Huey and RQ if needed."""
    python = _bin("python")
    if _bin("huey_consumer").exists() and _bin("rq").exists():
        return python
    if not python.exists():
        run([PY, "-m", "venv", PEERS_VENV], timeout=300)
    run([python, "-m", "pip", "install", "-q", *PEER_PACKAGES], timeout=600)
    return python


def ensure_tsp() -> str | None:
    """task-spooler's binary (``tsp`` on Debian, ``ts`` elsewhere), installing it with apt."""
    for name in ("tsp", "ts"):
        path = shutil.which(name)
        if path and b"task spooler" in _help_text(path).lower():
            return path
    if shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        try:
            run(["apt-get", "install", "-y", "-q", "task-spooler"], timeout=600, env=env)
        except BenchError:
            run(["apt-get", "update", "-q"], timeout=600, env=env)
            run(["apt-get", "install", "-y", "-q", "task-spooler"], timeout=600, env=env)
        return shutil.which("tsp")
    return None


def _help_text(path: str) -> bytes:
    try:
        out = run([path, "-h"], timeout=5, check=False)
    except (BenchError, OSError):
        return b""
    return out.stdout + out.stderr


def redis_ping(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_server(work: Path, url: str | None = None) -> Iterator[str | None]:
    """A Redis for RQ: ``url`` if given, else a private ``redis-server`` on 127.0.0.1
    started for this run (nobody else's FLUSHALL can empty its queues mid-run), else
    the local one at 127.0.0.1:6379."""
    if url is not None:
        yield url
        return
    server = shutil.which("redis-server")
    if server is None:
        yield "redis://127.0.0.1:6379/0" if redis_ping("127.0.0.1", 6379) else None
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", work]
    with running(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
        wait_for(lambda: redis_ping("127.0.0.1", port), 10, "redis-server")
        yield f"redis://127.0.0.1:{port}/0"


def timed_ns(fn: Callable[[], object]) -> tuple[int, int]:
    before = time.time_ns()
    fn()
    return before, time.time_ns()


class Queuectl:
    name = "queuectl"

    def __init__(self, processes: int = 1, build: Build = THIS) -> None:
        self.processes = processes
        self.build = build
        if processes > 1:
            self.name = f"queuectl -p{processes}"
        self.name += build.suffix

    @staticmethod
    def env(db: Path) -> dict[str, str]:
        return queuectl_env(db)

    def enqueue_many(self, db: Path, command: str, n: int) -> None:
        line = json.dumps({"command": command}) + "\n"
        run(
            [self.build.queuectl, "enqueue"],
            input=(line * n).encode(),
            env=self.env(db),
            timeout=600,
        )

    def worker_args(self, count: int, *, burst: bool) -> list[str | Path]:
        args: list[str | Path] = [self.build.queuectl, "worker", "start", "--count", str(count)]
        if self.processes > 1:
            args += ["--processes", str(self.processes)]
        return [*args, "--burst"] if burst else args

    def drain(self, work: Path, command: str, n: int, count: int) -> Drain:
        db = work / "q.db"
        self.enqueue_many(db, command, n)
        with (work / "worker.log").open("wb") as log:
            seconds = timed(
                lambda: run(
                    self.worker_args(count, burst=True),
                    env=self.env(db),
                    stdout=log,
                    stderr=log,
                    timeout=max(120.0, n * 0.1),
                )
            )
        ran, once = exactly_once(db, n)
        return Drain(seconds, ran, once, attempts_span(db))

    @contextlib.contextmanager
    def idle(self, work: Path, count: int, db: Path | None = None) -> Iterator[list[int]]:
        db = db or work / "q.db"
        create_store(self.env(db), timeout=60, python=self.build.python)
        with (
            (work / "idle-worker.log").open("wb") as log,
            running(
                self.worker_args(count, burst=False), env=self.env(db), stdout=log, stderr=log
            ) as proc,
        ):
            wait_for(lambda: _workers(db) >= self.processes, 60, "the worker to register")
            yield [proc.pid]

    @contextlib.contextmanager
    def latency(self, work: Path, db: Path | None = None) -> Iterator[Enqueue]:
        """Enqueue through the library (``Queue.enqueue``) in a helper process."""
        db = db or work / "q.db"
        helper = [self.build.python, "-c", QUEUECTL_ENQUEUE, db]
        with self.idle(work, 1, db), line_enqueuer(helper) as enqueue:
            yield enqueue


class QueuectlCli(Queuectl):
    """W4 through the ``queuectl enqueue -c`` command, one process per job."""

    name = "queuectl (CLI)"

    def __init__(self, build: Build = THIS) -> None:
        super().__init__(1, build)
        self.name = "queuectl (CLI)" + build.suffix

    @contextlib.contextmanager
    def latency(self, work: Path, db: Path | None = None) -> Iterator[Enqueue]:
        db = db or work / "q.db"
        env = self.env(db)

        def enqueue(command: str) -> tuple[int, int]:
            argv = [self.build.queuectl, "enqueue", "-c", command]
            return timed_ns(lambda: run(argv, env=env, timeout=60))

        with self.idle(work, 1, db):
            yield enqueue


def _workers(db: Path) -> int:
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            return int(conn.execute("SELECT count(*) FROM workers").fetchone()[0])
    except sqlite3.Error:
        return 0


def exactly_once(db: Path, n: int) -> tuple[int, bool]:
    """(jobs completed, whether each of the ``n`` jobs has exactly one attempt, and it passed)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        done = conn.execute(
            "SELECT count(*) FROM jobs WHERE state = 'completed' AND attempts = 1"
        ).fetchone()[0]
        attempts = conn.execute(
            "SELECT count(*), count(DISTINCT job_id) FROM attempts WHERE outcome = 'completed'"
        ).fetchone()
        total = conn.execute("SELECT count(*) FROM attempts").fetchone()[0]
    return int(done), done == n and attempts == (n, n) and total == n


def attempts_span(db: Path) -> float:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        first, last = conn.execute(
            "SELECT min(started_at), max(finished_at) FROM attempts"
        ).fetchone()
    return (last - first) / 1000 if first is not None and last is not None else float("nan")


BARE_LOOP = """
import asyncio, os, sys
n, count, command = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
spool = sys.argv[4]

async def main():
    if hasattr(asyncio, "PidfdChildWatcher") and sys.version_info < (3, 12):
        watcher = asyncio.PidfdChildWatcher()
        asyncio.set_child_watcher(watcher)
        watcher.attach_loop(asyncio.get_running_loop())
    left, ok = n, 0

    async def slot(i):
        nonlocal left, ok
        while left > 0:
            left -= 1
            fd = os.open(f"{spool}.{i}", os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
            proc = await asyncio.create_subprocess_shell(
                command, stdin=asyncio.subprocess.DEVNULL, stdout=fd,
                stderr=asyncio.subprocess.STDOUT, start_new_session=True, env=dict(os.environ))
            code = await proc.wait()
            ok += code == 0
            os.close(fd)

    await asyncio.gather(*(slot(i) for i in range(count)))
    print(ok)

asyncio.run(main())
"""


class Bare:
    name = "bare asyncio"

    def drain(self, work: Path, command: str, n: int, count: int) -> Drain:
        args = [PY, "-c", BARE_LOOP, str(n), str(count), command, str(work / "spool")]
        start = time.perf_counter()
        out = run(args, timeout=max(120.0, n * 0.1))
        seconds = time.perf_counter() - start
        ran = int(out.stdout.decode().strip() or 0)
        return Drain(seconds, ran, ran == n)


HUEY_TASKS = """
import os
import subprocess

from huey import SqliteHuey

huey = SqliteHuey(filename=os.environ["BENCH_HUEY_DB"])


@huey.task()
def run(cmd):
    subprocess.run(cmd, shell=True)
    return 1
"""

HUEY_ENQUEUE = """
import sys
from hueytasks import run
for _ in range(int(sys.argv[1])):
    run(sys.argv[2])
"""

HUEY_LINES = """
import sys, time
from hueytasks import run
for line in sys.stdin:
    before = time.time_ns()
    run(line.rstrip("\\n"))
    print(before, time.time_ns(), flush=True)
"""


class Huey:
    name = "huey"

    def __init__(self, python: Path) -> None:
        self.python = python

    def _env(self, work: Path) -> dict[str, str]:
        (work / "hueytasks.py").write_text(HUEY_TASKS)
        env = dict(os.environ)
        env["PYTHONPATH"] = str(work)
        env["BENCH_HUEY_DB"] = str(work / "huey.db")
        return env

    def _consumer(self, count: int) -> list[str | Path]:
        return [_bin("huey_consumer"), "hueytasks.huey", "-w", str(count), "-k", "thread"]

    def drain(self, work: Path, command: str, n: int, count: int) -> Drain:
        env = self._env(work)
        run([self.python, "-c", HUEY_ENQUEUE, str(n), command], env=env, cwd=work, timeout=600)
        db = work / "huey.db"
        with (work / "huey.log").open("wb") as log:
            start = time.perf_counter()
            with running(self._consumer(count), env=env, cwd=work, stdout=log, stderr=log):
                wait_for(lambda: _huey_results(db) >= n, max(120.0, n * 0.1), "huey", 0.005)
                seconds = time.perf_counter() - start
        ran = _huey_results(db)
        return Drain(seconds, ran, ran == n)

    @contextlib.contextmanager
    def idle(self, work: Path, count: int) -> Iterator[list[int]]:
        env = self._env(work)
        with (
            (work / "huey.log").open("wb") as log,
            running(self._consumer(count), env=env, cwd=work, stdout=log, stderr=log) as proc,
        ):
            time.sleep(1.0)
            yield [proc.pid]

    @contextlib.contextmanager
    def latency(self, work: Path) -> Iterator[Enqueue]:
        env = self._env(work)
        args: list[str | Path] = [self.python, "-c", HUEY_LINES]
        with self.idle(work, 1), line_enqueuer(args, env=env, cwd=work) as enqueue:
            yield enqueue


def _huey_results(db: Path) -> int:
    try:
        with contextlib.closing(sqlite3.connect(db, timeout=5)) as conn:
            return int(conn.execute("SELECT count(*) FROM kv").fetchone()[0])
    except sqlite3.Error:
        return 0


RQ_ENQUEUE = """
import subprocess, sys
from redis import Redis
from rq import Queue
url, name, n, command = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
q = Queue(name, connection=Redis.from_url(url))
q.enqueue_many([
    Queue.prepare_data(subprocess.run, (command,), {"shell": True}, result_ttl=600, failure_ttl=600)
    for _ in range(n)
])
"""

RQ_LINES = """
import subprocess, sys, time
from redis import Redis
from rq import Queue
q = Queue(sys.argv[2], connection=Redis.from_url(sys.argv[1]))
for line in sys.stdin:
    before = time.time_ns()
    q.enqueue(subprocess.run, line.rstrip("\\n"), shell=True, result_ttl=600)
    print(before, time.time_ns(), flush=True)
"""

RQ_COUNT = """
import sys
from redis import Redis
from rq import Queue
q = Queue(sys.argv[2], connection=Redis.from_url(sys.argv[1]))
print(q.finished_job_registry.count, q.failed_job_registry.count)
q.delete(delete_jobs=True)
"""


_RQ_QUEUES = itertools.count(1)


class RQ:
    name = "rq"

    def __init__(self, python: Path, url: str) -> None:
        self.python = python
        self.url = url

    def _queue(self) -> str:
        # Unique for the whole run: a reused name would count an earlier run's jobs.
        return f"queuectl-bench-{os.getpid()}-{next(_RQ_QUEUES)}"

    def drain(self, work: Path, command: str, n: int, count: int) -> Drain:
        name = self._queue()
        run([self.python, "-c", RQ_ENQUEUE, self.url, name, str(n), command], timeout=600)
        args = [_bin("rq"), "worker", "--burst", "--url", self.url, name]
        with (work / "rq.log").open("wb") as log:
            start = time.perf_counter()
            workers = [spawn(args, stdout=log, stderr=log) for _ in range(count)]
            try:
                for worker in workers:
                    worker.wait(max(120.0, n * 0.5))
            except subprocess.TimeoutExpired as exc:
                raise BenchError("rq workers did not finish") from exc
            finally:
                for worker in workers:
                    stop_group(worker)
            seconds = time.perf_counter() - start
        out = run([self.python, "-c", RQ_COUNT, self.url, name], timeout=60)
        finished, failed = (int(x) for x in out.stdout.split())
        if finished != n or failed:
            tail = (work / "rq.log").read_text(errors="replace")[-2000:]
            print(f"rq: {finished} of {n} finished, {failed} failed; log:\n{tail}", file=sys.stderr)
        return Drain(seconds, finished, finished == n and failed == 0)

    @contextlib.contextmanager
    def idle(self, work: Path, count: int, name: str | None = None) -> Iterator[list[int]]:
        name = name or self._queue()
        args = [_bin("rq"), "worker", "--url", self.url, name]
        with (work / "rq.log").open("wb") as log:
            workers = [spawn(args, stdout=log, stderr=log) for _ in range(count)]
            try:
                time.sleep(1.5)
                yield [w.pid for w in workers]
            finally:
                for worker in workers:
                    stop_group(worker)

    @contextlib.contextmanager
    def latency(self, work: Path) -> Iterator[Enqueue]:
        name = self._queue()
        args: list[str | Path] = [self.python, "-c", RQ_LINES, self.url, name]
        with self.idle(work, 1, name), line_enqueuer(args) as enqueue:
            yield enqueue
        run([self.python, "-c", RQ_COUNT, self.url, name], timeout=60, check=False)


class TaskSpooler:
    name = "task-spooler"

    def __init__(self, binary: str) -> None:
        self.binary = binary

    @contextlib.contextmanager
    def _server(self, work: Path, slots: int) -> Iterator[dict[str, str]]:
        out = work / "tsp"
        out.mkdir(exist_ok=True)
        env = dict(os.environ)
        env.update(TS_SOCKET=str(work / "tsp.sock"), TMPDIR=str(out), TS_MAXFINISHED="100000")
        env.pop("TS_SLOTS", None)
        try:
            self._tsp(env, "-S", str(slots))
            yield env
        finally:
            # The server answers on this run's private socket only.
            run([self.binary, "-K"], env=env, timeout=10, check=False)

    def _tsp(self, env: dict[str, str], *args: str) -> str:
        return run([self.binary, *args], env=env, timeout=60, check=False).stdout.decode().strip()

    def drain(self, work: Path, command: str, n: int, count: int) -> Drain:
        seconds, ran = 0.0, 0
        with self._server(work, 1) as env:
            done = 0
            while done < n:
                batch = min(TSP_BATCH, n - done)
                s, r = self._batch(work, env, command, batch, count)
                seconds, ran, done = seconds + s, ran + r, done + batch
        return Drain(seconds, ran, ran == n)

    def _batch(
        self, work: Path, env: dict[str, str], command: str, n: int, count: int
    ) -> tuple[float, int]:
        """Queue ``n`` jobs behind a gate job, open the gate, time until all finished."""
        gate = work / "tsp.gate"
        with contextlib.suppress(FileNotFoundError):
            gate.unlink()
        os.mkfifo(gate)
        self._tsp(env, "-C")
        self._tsp(env, "-S", "1")
        self._tsp(env, "sh", "-c", f"read x < {gate}")
        script = 'i=0; while [ "$i" -lt "$2" ]; do "$0" sh -c "$1"; i=$((i+1)); done'
        ids = run(["sh", "-c", script, self.binary, command, str(n)], env=env, timeout=600)
        last = int(ids.stdout.split()[-1])
        self._tsp(env, "-S", str(count))
        start = time.perf_counter()
        fd = os.open(gate, os.O_WRONLY)
        os.write(fd, b"go\n")
        os.close(fd)
        for job in range(last, max(last - count, 0) - 1, -1):
            self._tsp(env, "-w", str(job))
        seconds = time.perf_counter() - start
        listing = self._tsp(env, "-l").splitlines()[1:]
        finished = sum(1 for line in listing if line.split()[1:2] == ["finished"])
        return seconds, finished - 1

    @contextlib.contextmanager
    def latency(self, work: Path) -> Iterator[Enqueue]:
        with self._server(work, 1) as env:

            def enqueue(command: str) -> tuple[int, int]:
                return timed_ns(lambda: self._tsp(env, "sh", "-c", command))

            yield enqueue
