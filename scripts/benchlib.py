"""Plumbing shared by ``bench.py`` and its peer drivers: processes, timing, the machine.

Every process the benchmark starts leads its own session and is stopped by its
process group id (never by name), also when a run fails or times out.
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

PY = Path(sys.executable)
#: The installed console script of the interpreter running the benchmark.
QUEUECTL = PY.with_name("queuectl")
DEVNULL = subprocess.DEVNULL


class BenchError(RuntimeError):
    """A run failed in a way that makes its number meaningless."""


def loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return [float("nan")] * 3


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100): p99 of 50 samples is the largest but one."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return float(ordered[int(rank) - 1])


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


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, step: float = 0.01) -> None:
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
