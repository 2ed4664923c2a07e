"""What every benchmark script shares: processes, timing, the machine, the sizes of a
run, the one percentile and latency summary, and the workloads' common steps.

``bench.py`` (SQLite and the peers) and ``bench_postgres.py`` (PostgreSQL beside SQLite)
both build on this module, so their figures are computed the same way and can be set
side by side. Every process the benchmark starts leads its own session and is stopped
by its process group id (never by name), also when a run fails or times out.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import random
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PY = Path(sys.executable)
#: The installed console script of the interpreter running the benchmark.
QUEUECTL = PY.with_name("queuectl")
DEVNULL = subprocess.DEVNULL


@dataclass(frozen=True)
class Build:
    """One queuectl build: the interpreter of its venv and the ``queuectl`` beside it.

    ``bench.py --baseline VENV`` runs a second build next to the one under test, so
    each workload's queuectl rows come twice, interleaved in the same rounds; every
    system name of the baseline carries :attr:`suffix` so the two never share a cell.
    """

    label: str
    python: Path
    queuectl: Path

    @property
    def suffix(self) -> str:
        return f" ({self.label})" if self.label else ""

    @classmethod
    def from_venv(cls, venv: Path, label: str = "baseline") -> Build:
        """The build installed in the virtualenv ``venv`` (its ``bin/python``)."""
        python = Path(venv) / "bin" / "python"
        queuectl = python.with_name("queuectl")
        for path in (python, queuectl):
            if not path.exists():
                raise BenchError(f"{path} not found: --baseline wants a venv with queuectl")
        return cls(label, python, queuectl)


#: The build under test: the one installed beside the interpreter running the bench.
THIS = Build("", PY, QUEUECTL)


class BenchError(RuntimeError):
    """A run failed in a way that makes its number meaningless."""


def loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return [float("nan")] * 3


def note(message: str) -> None:
    """A progress line on stderr (stdout carries the report)."""
    print(f"  {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), interpolated linearly between the two nearest
    ranks (NumPy's default): with few samples a nearest-rank p99 is just the maximum,
    which says nothing a ``max`` column does not. Every script's latencies use this."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return float(ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo))


def latency_stats(values: Sequence[float]) -> dict[str, float]:
    """p50, p99 and max of latencies in ms: the one shape every latency figure takes."""
    return {
        "p50": round(percentile(values, 50), 2),
        "p99": round(percentile(values, 99), 2),
        "max": round(max(values), 2) if values else float("nan"),
    }


@dataclass(frozen=True)
class Sizes:
    """How big one run is; ``FULL`` and ``QUICK`` serve every script."""

    rounds: int
    w1a_runs: int
    w1b_jobs: int
    w2_jobs: int
    w2_counts: tuple[int, ...]
    w3_jobs: int
    w4_samples: int
    w5_seconds: float
    w6_jobs: int
    w6_samples: int


FULL = Sizes(3, 21, 100_000, 2_000, (1, 4, 16), 200, 50, 10.0, 1_000_000, 20)
QUICK = Sizes(1, 3, 2_000, 60, (1, 4), 16, 5, 1.0, 20_000, 3)


class Bench:
    """One run of some workloads: its sizes, its scratch folder, and a fresh empty
    folder per measurement. A subclass has one method per workload (``w2`` for W2)."""

    def __init__(self, sizes: Sizes, work: Path) -> None:
        self.sizes = sizes
        self.work = work
        self._seq = 0

    def fresh(self, label: str) -> Path:
        """An empty folder for one run."""
        self._seq += 1
        path = self.work / f"{self._seq:04d}-{re.sub(r'[^A-Za-z0-9]+', '-', label)}"
        path.mkdir()
        return path

    def clean(self, path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)

    def measure(self, only: Sequence[str], load: dict[str, Any] | None = None) -> dict[str, Any]:
        """Each workload of ``only`` in turn; ``load`` gets the load average after each."""
        found: dict[str, Any] = {}
        for name in only:
            note(f"{name} ...")
            started = time.monotonic()
            found[name] = getattr(self, name.lower())()
            note(f"{name} done in {time.monotonic() - started:.0f} s")
            if load is not None:
                load[name] = loadavg()
        return found


def stop_group(proc: subprocess.Popen[Any], timeout: float = 5.0) -> None:
    """SIGTERM the process group led by ``proc``, then SIGKILL it after ``timeout``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout)
            break
        except subprocess.TimeoutExpired:
            continue
    # The leader is gone; whatever is left in its group goes too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def spawn(args: Sequence[str | os.PathLike[str]], **kwargs: Any) -> subprocess.Popen[Any]:
    kwargs.setdefault("stdin", DEVNULL)
    return subprocess.Popen([str(a) for a in args], start_new_session=True, **kwargs)


@contextlib.contextmanager
def running(
    args: Sequence[str | os.PathLike[str]], **kwargs: Any
) -> Iterator[subprocess.Popen[Any]]:
    """A background process for the length of a ``with`` block, stopped by its group."""
    proc = spawn(args, **kwargs)
    try:
        yield proc
    finally:
        stop_group(proc)


def run(
    args: Sequence[str | os.PathLike[str]],
    *,
    timeout: float = 600.0,
    check: bool = True,
    input: bytes | None = None,
    **kwargs: Any,
) -> subprocess.CompletedProcess[bytes]:
    """Run to completion in its own session; on timeout the whole group is killed."""
    if input is None:
        kwargs.setdefault("stdin", DEVNULL)
    else:
        kwargs["stdin"] = subprocess.PIPE
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    proc = subprocess.Popen([str(a) for a in args], start_new_session=True, **kwargs)
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        stop_group(proc, 1.0)
        raise BenchError(f"{' '.join(map(str, args))[:120]} timed out after {timeout:g}s") from exc
    finally:
        if proc.poll() is None:
            stop_group(proc, 1.0)
    if check and proc.returncode != 0:
        detail = (err or b"").decode(errors="replace").strip().splitlines()[-3:]
        raise BenchError(
            f"{Path(str(args[0])).name} exited {proc.returncode}: {' | '.join(detail)}"
        )
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def timed(fn: Callable[[], object]) -> float:
    """Wall seconds of ``fn()``."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def wait_for(
    predicate: Callable[[], object], timeout: float, what: str, step: float = 0.01
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(step)


def wait_for_file(path: Path, timeout: float = 10.0) -> str:
    """The content of ``path`` once a complete line has been written to it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            text = path.read_text()
        except FileNotFoundError:
            text = ""
        if text.endswith("\n"):
            return text
        if time.monotonic() > deadline:
            raise BenchError(f"{path} was not written within {timeout:g}s")
        time.sleep(0.0005)


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (and of its reaped children) from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_bytes()
    fields = stat[stat.rindex(b")") + 2 :].split()
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def proc_rss_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of ``pid`` in MiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values.get("VmRSS", float("nan")), values.get("VmHWM", float("nan"))


def group_pids(pgid: int) -> list[int]:
    """Every live process of the process group ``pgid``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        if int(fields[2]) == pgid:
            pids.append(int(entry.name))
    return pids


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = float("nan")
    with contextlib.suppress(OSError, ValueError):
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem_gib = round(mem_kib / 1024 / 1024, 1)
    return {
        "host": platform.node(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
    }


#: Prints the folder of the ``queuectl`` package an interpreter imports.
_PACKAGE_DIR = "import os, queuectl; print(os.path.dirname(queuectl.__file__))"


def warm_bytecode(build: Build) -> str:
    """Compile ``build``'s package to ``__pycache__`` as an installed copy would have it,
    and let the processes the bench starts write bytecode: with ``PYTHONDONTWRITEBYTECODE``
    set (some shells and CI images set it) an editable install recompiles every module in
    every process, which adds tens of ms to each start and is not what users run."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    out = run([build.python, "-c", _PACKAGE_DIR], timeout=60)
    package = out.stdout.decode().strip()
    run([build.python, "-m", "compileall", "-q", package], timeout=300, check=False)
    return package


def git_revision(root: Path) -> str:
    try:
        out = run(["git", "-C", root, "describe", "--always", "--dirty"], timeout=10)
    except (BenchError, OSError):
        return "unknown"
    return out.stdout.decode().strip()


#: A helper process that enqueues one command per stdin line through the library
#: and answers the times just before and after ``Queue.enqueue`` (ns).
QUEUECTL_ENQUEUE = """
import asyncio, sys, time
from queuectl.queue import Queue

async def main():
    async with Queue.open(sys.argv[1]) as q:
        loop = asyncio.get_running_loop()
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            before = time.time_ns()
            await q.enqueue({"command": line.rstrip("\\n")})
            print(before, time.time_ns(), flush=True)

asyncio.run(main())
"""


async def time_claims(target: str, n: int) -> list[float]:
    """Seconds of ``n`` single-job claims through the store's own ``exchange`` call; the
    claimed jobs are completed right after (untimed) so the latency worker finds none."""
    from queuectl.backends import open_backend
    from queuectl.clock import now_ms
    from queuectl.models import ExecutionResult, Finish, NewJob

    backend = await open_backend(target, durable=False)
    try:
        now = now_ms()
        jobs = [
            NewJob(id=f"claim-{i}", command="true", max_retries=0, next_run_at=now)
            for i in range(n)
        ]
        await backend.enqueue(jobs, now=now)
        found = []
        for _ in range(n):
            start = time.perf_counter()
            out = await backend.exchange(worker_id="bench-claim", claim=1, now=now_ms())
            found.append(time.perf_counter() - start)
            if len(out.claims) != 1:
                raise BenchError("a claim found no job")
            (c,) = out.claims
            done = Finish(
                c.job.id, c.token, c.job.attempts, c.job.max_retries, ExecutionResult(exit_code=0)
            )
            await backend.exchange(worker_id="bench-claim", finishes=[done], now=now_ms())
    finally:
        await backend.aclose()
    return found


#: Enqueues one command and answers ``time.time_ns()`` just before and just after.
Enqueue = Callable[[str], tuple[int, int]]


class LineEnqueuer:
    """A helper process that enqueues one job per line of stdin and answers with the
    ``time.time_ns()`` just before and just after the enqueue call returned."""

    def __init__(self, args: Sequence[str | os.PathLike[str]], **kwargs: Any) -> None:
        self.proc = spawn(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, **kwargs)

    def __call__(self, command: str) -> tuple[int, int]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().split()
        if len(answer) != 2:
            raise BenchError(f"the enqueue helper died (exit {self.proc.poll()})")
        return int(answer[0]), int(answer[1])

    def close(self) -> None:
        stop_group(self.proc)


@contextlib.contextmanager
def line_enqueuer(args: Sequence[str | os.PathLike[str]], **kwargs: Any) -> Iterator[Enqueue]:
    helper = LineEnqueuer(args, **kwargs)
    try:
        yield helper
    finally:
        helper.close()


def latency_samples(enqueue: Enqueue, work: Path, n: int) -> list[tuple[float, float]]:
    """(start - enqueue returned, start - enqueue called) in ms, for ``n`` jobs.

    Each job writes its own start time (``date +%s%N``, CLOCK_REALTIME, the clock of
    ``time.time_ns``) into a file; the worker is idle before each enqueue.
    """
    found = []
    for i in range(n):
        out = work / f"start-{i}"
        before, after = enqueue(f"date +%s%N > {out}")
        started = int(wait_for_file(out, 30.0))
        found.append(((started - after) / 1e6, (started - before) / 1e6))
        time.sleep(random.uniform(0.05, 0.15))
    return found


def latency_summary(values: Sequence[tuple[float, float]]) -> dict[str, Any]:
    """W4's figure for one system, from :func:`latency_samples`."""
    return {
        "samples": len(values),
        "after_return_ms": latency_stats([v[0] for v in values]),
        "from_call_ms": latency_stats([v[1] for v in values]),
    }


#: W6's history: finished jobs (1 in 100 dead, 1 in 100 failed and due tomorrow, the
#: rest completed; 1 in 10 on queue ``other``), one attempt each; then pending jobs due
#: tomorrow. Plain SQL into the schema queuectl itself created; the PostgreSQL twin is
#: ``bench_postgres.W6_POSTGRES``.
W6_SQLITE = """
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :h)
INSERT INTO jobs (id, command, state, queue, priority, attempts, max_retries,
                  next_run_at, created_at, updated_at, exit_code, claims)
SELECT 'old-' || i, 'echo ' || i,
       CASE WHEN i % 100 = 0 THEN 'dead' WHEN i % 100 = 1 THEN 'failed' ELSE 'completed' END,
       CASE WHEN i % 10 = 0 THEN 'other' ELSE 'default' END,
       0, 1, 3, CASE WHEN i % 100 = 1 THEN :later END, :now - :h + i, :now - :h + i, 0, 1
  FROM n
"""


#: Creates and migrates the store at ``$QUEUECTL_DB`` (either kind), as a writing command
#: would: read-only commands such as ``status`` no longer create a store.
CREATE_STORE = """
import asyncio, os
from queuectl.backends import open_backend

async def main():
    backend = await open_backend(os.environ["QUEUECTL_DB"])
    await backend.aclose()

asyncio.run(main())
"""


def create_store(env: dict[str, str], timeout: float = 60.0, python: Path = PY) -> None:
    """An empty store at ``env["QUEUECTL_DB"]``, so that what is timed next does not create it
    (with the schema of the build whose interpreter is ``python``)."""
    run([python, "-c", CREATE_STORE], env=env, timeout=timeout)


def queuectl_env(target: str | os.PathLike[str]) -> dict[str, str]:
    """This process's environment with ``QUEUECTL_DB`` set to ``target``."""
    env = dict(os.environ)
    env["QUEUECTL_DB"] = str(target)
    env.pop("QUEUECTL_DEBUG", None)
    return env


def build_sqlite_history(db: Path, history: int, pending: int = 1000) -> None:
    """A queuectl SQLite database with ``history`` finished jobs and ``pending`` jobs due
    tomorrow (see ``W6_SQLITE``)."""
    create_store(queuectl_env(db))
    now = time.time_ns() // 1_000_000
    later = now + 86_400_000
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA synchronous = OFF")
        with conn:
            conn.execute(W6_SQLITE, {"h": history, "now": now, "later": later})
            conn.execute(
                "INSERT INTO attempts (job_id, attempt, worker_id, started_at, finished_at,"
                " outcome, exit_code, output, output_size)"
                " SELECT id, 1, 'w-old', created_at, created_at + 5, 'completed', 0, X'6F6B0A', 3"
                " FROM jobs WHERE id LIKE 'old-%'"
            )
            conn.executemany(
                "INSERT INTO jobs (id, command, state, max_retries, next_run_at, created_at,"
                " updated_at) VALUES (?, 'true', 'pending', 3, ?, ?, ?)",
                [(f"later-{i}", later, now, now) for i in range(1, pending + 1)],
            )
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def w6_measure(
    target: str, samples: int, latency: Callable[[int], Sequence[tuple[float, float]]]
) -> dict[str, float]:
    """W6's figures on the store at ``target``: ``status``, ``list --state pending``,
    ``queue list`` and ``why`` of a pending job (the reads that must stay flat, issue 11),
    one claim, and W4 through ``latency(n)`` (which returns :func:`latency_samples`)."""
    env = queuectl_env(target)
    reps = max(3, samples // 4)
    status = [timed(lambda: run([QUEUECTL, "status", "--json"], env=env)) for _ in range(reps)]
    listing = [
        timed(lambda: run([QUEUECTL, "list", "--state", "pending"], env=env)) for _ in range(reps)
    ]
    queues = [
        timed(lambda: run([QUEUECTL, "queue", "list", "--json"], env=env)) for _ in range(reps)
    ]
    why = [timed(lambda: run([QUEUECTL, "why", "later-1"], env=env)) for _ in range(reps)]
    claims = asyncio.run(time_claims(target, samples))
    lat = latency_summary(latency(samples))
    return {
        "status_ms": round(1000 * median(status), 1),
        "list_pending_ms": round(1000 * median(listing), 1),
        "queue_list_ms": round(1000 * median(queues), 1),
        "why_ms": round(1000 * median(why), 1),
        "claim_ms": round(1000 * median(claims), 3),
        "w4_p50_ms": lat["after_return_ms"]["p50"],
        "w4_p99_ms": lat["after_return_ms"]["p99"],
    }


def w6_ratio(figures: dict[str, dict[str, float]]) -> dict[str, float]:
    """Each W6 figure of the full store over the empty one's."""
    return {
        key: round(figures["full"][key] / figures["empty"][key], 2)
        for key in figures["full"]
        if key != "build_s" and figures["empty"].get(key)
    }
