"""The executor with real subprocesses: exit codes, signals, environment, timeouts, output."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from queuectl import procs
from queuectl.executor import Command, Execution, KillReason, job_environment
from queuectl.models import ExecutionResult, Outcome
from tests.helpers import wait_for


def command(tmp_path: Path, cmd: str, **kw: object) -> Command:
    fields: dict = {
        "command": cmd,
        "env": dict(os.environ),
        "cwd": None,
        "timeout_s": None,
        "output_limit": 65536,
        "kill_grace_s": 1.0,
        "spool_path": tmp_path / "spool.out",
    }
    fields.update(kw)
    return Command(**fields)


async def run(tmp_path: Path, cmd: str, **kw: object) -> ExecutionResult:
    async with asyncio.timeout(30):
        return await Execution(command(tmp_path, cmd, **kw)).run()


async def wait_file(path: Path, timeout: float = 20) -> str:
    deadline = asyncio.get_running_loop().time() + timeout
    while not (path.exists() and path.read_text().strip()):
        assert asyncio.get_running_loop().time() < deadline, f"{path} never written"
        await asyncio.sleep(0.02)
    return path.read_text().strip()


@pytest.mark.parametrize("code", [0, 1, 3, 127, 255])
async def test_exit_codes(tmp_path: Path, code: int) -> None:
    result = await run(tmp_path, f"exit {code}")
    assert (result.exit_code, result.signal, result.timed_out) == (code, None, False)
    assert result.ok is (code == 0)
    assert result.outcome is (Outcome.COMPLETED if code == 0 else Outcome.FAILED)
    assert result.describe() == (None if code == 0 else f"exit code {code}")


async def test_unknown_command_is_exit_127_from_the_shell(tmp_path: Path) -> None:
    result = await run(tmp_path, "no-such-command-queuectl-test")
    assert result.exit_code == 127
    assert b"not found" in result.output_tail


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL, signal.SIGSEGV])
async def test_death_by_signal_is_reported_as_the_signal(tmp_path: Path, sig: int) -> None:
    result = await run(tmp_path, f"kill -{int(sig)} $$")
    assert (result.exit_code, result.signal) == (None, int(sig))
    assert not result.ok
    assert result.outcome is Outcome.FAILED
    assert result.describe() == f"killed by signal {int(sig)}"


async def test_stdin_is_dev_null(tmp_path: Path) -> None:
    result = await run(tmp_path, "readlink /proc/self/fd/0; cat; echo rc=$?")
    assert result.output_tail == b"/dev/null\nrc=0\n"


async def test_the_command_runs_under_sh_in_its_own_session(tmp_path: Path) -> None:
    pids: list[int] = []
    execution = Execution(
        command(tmp_path, "echo $$ $(cut -d' ' -f5,6 /proc/$$/stat); readlink /proc/$$/exe")
    )
    result = await execution.run(pids.append)
    pid_, pgid, sid, exe = result.output_tail.decode().split()
    assert int(pid_) == int(pgid) == int(sid) == pids[0] == execution.pid
    assert os.path.realpath("/bin/sh") == exe
    assert os.getpgid(0) != int(pgid)


async def test_environment_is_the_given_one(tmp_path: Path) -> None:
    base = {"PATH": os.environ["PATH"], "KEEP": "base"}
    env = job_environment(base, {"EXTRA": "x y"}, "j-1", 3, "5t0re")
    result = await run(
        tmp_path,
        'printf "%s|%s|%s|%s|%s|%s" "$KEEP" "$EXTRA" "$QUEUECTL_JOB_ID" "$QUEUECTL_ATTEMPT" '
        '"$QUEUECTL_STORE" "${HOME-unset}"',
        env=env,
    )
    assert result.output_tail == b"base|x y|j-1|3|5t0re|unset"


def test_job_environment_layers_worker_then_job_then_queuectl() -> None:
    env = job_environment(
        {"A": "worker", "B": "worker", "QUEUECTL_JOB_ID": "stale", "QUEUECTL_STORE": "outer"},
        {"B": "job", "QUEUECTL_ATTEMPT": "forged"},
        "real-id",
        2,
        "inner",
    )
    assert env == {
        "A": "worker",
        "B": "job",
        "QUEUECTL_STORE": "inner",
        "QUEUECTL_JOB_ID": "real-id",
        "QUEUECTL_ATTEMPT": "2",
    }


async def test_cwd(tmp_path: Path) -> None:
    where = tmp_path / "work dir"
    where.mkdir()
    result = await run(tmp_path, "pwd", cwd=str(where))
    assert result.output_tail == f"{where}\n".encode()


async def test_a_missing_cwd_is_a_spawn_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    result = await run(tmp_path, "echo should-not-run", cwd=str(missing))
    assert result.spawn_error is not None
    assert str(missing) in result.spawn_error
    assert "does not exist" in result.spawn_error
    assert (result.exit_code, result.ok, result.outcome) == (None, False, Outcome.SPAWN_FAILED)
    assert result.describe() == f"could not start: {result.spawn_error}"
    assert result.output_tail == b""


async def test_a_cwd_that_is_a_file_is_a_spawn_error(tmp_path: Path) -> None:
    afile = tmp_path / "file"
    afile.write_text("x")
    result = await run(tmp_path, "true", cwd=str(afile))
    assert result.outcome is Outcome.SPAWN_FAILED


async def test_the_spool_file_is_removed(tmp_path: Path) -> None:
    await run(tmp_path, "echo hi")
    assert not (tmp_path / "spool.out").exists()


@pytest.fixture
def leftovers() -> Iterator[list[tuple[int, str | None]]]:
    """Processes a test saw; any still alive at the end (the test failed) are killed."""
    seen: list[tuple[int, str | None]] = []
    yield seen
    for pid, started in seen:
        if procs.is_alive(pid, started):
            os.kill(pid, signal.SIGKILL)


async def run_with_grandchild(
    tmp_path: Path, cmd: str, pidfile: Path, leftovers: list, **kw: object
) -> tuple[ExecutionResult, int, str]:
    """Run ``cmd``; return its result and the pid and start time the grandchild wrote."""
    task = asyncio.create_task(Execution(command(tmp_path, cmd, **kw)).run())
    pid = int(await wait_file(pidfile))
    # The start time makes "gone" exact even if the pid is reused later.
    started = procs.proc_start(pid)
    assert started is not None
    leftovers.append((pid, started))
    result = await asyncio.wait_for(task, 30)
    return result, pid, started


async def test_timeout_kills_the_whole_group_including_grandchildren(
    tmp_path: Path, leftovers: list
) -> None:
    pidfile = tmp_path / "grandchild.pid"
    # The grandchild is a shell of its own that keeps the group alive after its parent.
    cmd = f"sh -c 'echo $$ > {pidfile}; while :; do sleep 1; done' & wait"
    result, grandchild, started = await run_with_grandchild(
        tmp_path, cmd, pidfile, leftovers, timeout_s=1.0, kill_grace_s=1.0
    )
    assert result.timed_out
    assert result.outcome is Outcome.TIMED_OUT
    assert (result.describe() or "").startswith("timed out after")
    assert result.exit_code is None
    assert result.signal == signal.SIGTERM
    assert result.duration_s >= 1.0
    wait_for(lambda: not procs.is_alive(grandchild, started), timeout=10)


async def test_a_grandchild_that_ignores_sigterm_is_killed_after_the_grace(
    tmp_path: Path, leftovers: list
) -> None:
    pidfile = tmp_path / "stubborn.pid"
    cmd = f"sh -c 'trap \"\" TERM; echo $$ > {pidfile}; while :; do sleep 0.2; done' & wait"
    result, stubborn, started = await run_with_grandchild(
        tmp_path, cmd, pidfile, leftovers, timeout_s=0.5, kill_grace_s=0.5
    )
    assert result.timed_out
    wait_for(lambda: not procs.is_alive(stubborn, started), timeout=10)


async def test_a_command_that_ignores_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    result = await run(tmp_path, "trap '' TERM; sleep 30", timeout_s=0.5, kill_grace_s=0.5)
    assert result.timed_out
    assert result.signal == signal.SIGKILL
    assert result.duration_s < 20


async def test_no_timeout_when_the_command_is_quick_enough(tmp_path: Path) -> None:
    result = await run(tmp_path, "echo fast", timeout_s=30)
    assert (result.ok, result.timed_out, result.output_tail) == (True, False, b"fast\n")


async def test_a_background_process_left_by_a_successful_command_is_not_waited_for(
    tmp_path: Path, leftovers: list
) -> None:
    # stdout is inherited by the daemon; the worker waits for the shell, not the pipe.
    pidfile = tmp_path / "daemon.pid"
    result = await run(tmp_path, f"sleep 30 & echo $! > {pidfile}; echo started")
    daemon = int(pidfile.read_text())
    leftovers.append((daemon, procs.proc_start(daemon)))
    assert procs.is_alive(*leftovers[0])
    assert result.ok
    assert result.output_tail == b"started\n"


@pytest.mark.parametrize("reason", [KillReason.INTERRUPT, KillReason.LOST])
async def test_kill_from_outside_ends_the_command_with_that_reason(
    tmp_path: Path, reason: KillReason, leftovers: list
) -> None:
    pidfile = tmp_path / "child.pid"
    execution = Execution(
        command(tmp_path, f"sleep 30 & echo $! > {pidfile}; wait", kill_grace_s=0.5)
    )
    task = asyncio.create_task(execution.run())
    child = int(await wait_file(pidfile))
    started = procs.proc_start(child)
    leftovers.append((child, started))
    execution.kill(reason)
    result = await asyncio.wait_for(task, 20)
    assert result.interrupted is (reason is KillReason.INTERRUPT)
    assert result.lost_lease is (reason is KillReason.LOST)
    assert result.outcome is (
        Outcome.INTERRUPTED if reason is KillReason.INTERRUPT else Outcome.LOST
    )
    assert not result.ok
    wait_for(lambda: not procs.is_alive(child, started), timeout=10)


async def test_stdout_and_stderr_are_combined_in_order(tmp_path: Path) -> None:
    result = await run(tmp_path, "echo one; echo two >&2; echo three")
    assert result.output_tail == b"one\ntwo\nthree\n"
    assert result.output_size == len(b"one\ntwo\nthree\n")
    assert not result.output_truncated


async def test_only_the_last_output_limit_bytes_are_kept(tmp_path: Path) -> None:
    full = "".join(f"{i}\n" for i in range(1, 5001)).encode()
    result = await run(tmp_path, "seq 1 5000", output_limit=1000)
    assert result.output_size == len(full)
    assert result.output_tail == full[-1000:]
    assert result.output_truncated


async def test_output_limit_zero_keeps_nothing_but_counts(tmp_path: Path) -> None:
    result = await run(tmp_path, "echo hello", output_limit=0)
    assert (result.output_tail, result.output_size) == (b"", 6)


async def test_output_exactly_at_the_limit_is_not_truncated(tmp_path: Path) -> None:
    result = await run(tmp_path, "printf 0123456789", output_limit=10)
    assert (result.output_tail, result.output_size, result.output_truncated) == (
        b"0123456789",
        10,
        False,
    )


async def test_a_spool_past_its_cap_is_cut_to_the_tail_while_running(tmp_path: Path) -> None:
    # More than spool_max is written at once, then the command sleeps through two
    # spool checks (one per second): the file must shrink while it runs.
    cmd = "seq 1 20000; sleep 2.5; seq 20001 20100"
    full = "".join(f"{i}\n" for i in range(1, 20101)).encode()
    spool = tmp_path / "spool.out"
    execution = Execution(command(tmp_path, cmd, output_limit=1000, spool_max=10_000))
    task = asyncio.create_task(execution.run())
    sizes: list[int] = []
    async with asyncio.timeout(30):
        while not task.done():
            with contextlib.suppress(FileNotFoundError):
                sizes.append(spool.stat().st_size)
            await asyncio.sleep(0.05)
    result = await task
    biggest = max(sizes)
    assert biggest > 100_000
    assert min(sizes[sizes.index(biggest) :]) < 10_000, "the spool was never cut"
    assert result.output_size == len(full)
    assert result.output_tail == full[-1000:]


async def test_non_utf8_output_is_kept_as_bytes(tmp_path: Path) -> None:
    result = await run(tmp_path, r"printf '\377\376ok\200\n'")
    assert result.output_tail == b"\xff\xfeok\x80\n"


async def test_a_command_writing_a_lot_does_not_hold_it_in_memory(tmp_path: Path) -> None:
    # 8 MB through the spool; only the tail comes back.
    result = await run(tmp_path, "head -c 8000000 /dev/zero", output_limit=100)
    assert result.output_size == 8_000_000
    assert result.output_tail == b"\0" * 100


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
async def test_on_start_gets_the_pid_while_the_command_runs(tmp_path: Path) -> None:
    seen: list[bool] = []
    await Execution(command(tmp_path, "sleep 0.2")).run(
        lambda pid: seen.append(procs.is_alive(pid, None))
    )
    assert seen == [True]


async def test_leader_start_is_the_live_shell_then_gone_once_reaped(tmp_path: Path) -> None:
    """The start record is read when it is sent: the shell's own while it runs,
    and ``gone_start`` (which no live process matches) once this worker reaped it."""
    execution = Execution(command(tmp_path, "sleep 30"))
    assert execution.leader_start() is None  # not spawned yet
    seen: list[int] = []
    task = asyncio.create_task(execution.run(seen.append))
    await wait_for_async(lambda: bool(seen))
    live = execution.leader_start()
    assert live is not None and live == procs.proc_start(seen[0])
    assert live != procs.gone_start()
    execution.kill(KillReason.CANCEL)
    result = await asyncio.wait_for(task, 30)
    assert result.cancelled
    assert execution.leader_start() == procs.gone_start()


async def test_gone_start_never_matches_a_live_leader() -> None:
    """A pid reused by a new group leader is never signalled for a reaped shell."""
    other = await asyncio.create_subprocess_exec("sleep", "30", start_new_session=True)
    try:
        assert not procs.kill_group(other.pid, procs.gone_start(), signal.SIGKILL)
        assert procs.is_alive(other.pid, procs.proc_start(other.pid))
    finally:
        other.kill()
        await other.wait()


async def wait_for_async(check: object, timeout: float = 20) -> None:
    assert callable(check)
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition never met"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize(
    ("reason", "flag"),
    [
        (KillReason.LOST, "lost_lease"),
        (KillReason.CANCEL, "cancelled"),
        (KillReason.INTERRUPT, "interrupted"),
    ],
)
async def test_a_command_killed_before_it_starts_is_never_spawned(
    tmp_path: Path, reason: KillReason, flag: str
) -> None:
    """A job claimed ahead and lost (or cancelled, or a forced stop) before its turn:
    no process at all, so it cannot run beside the worker that took the job over."""
    ran = tmp_path / "ran"
    cmd = command(tmp_path, f"touch {ran}")
    execution = Execution(cmd)
    execution.kill(reason)
    starts: list[int] = []
    result = await execution.run(starts.append)
    assert getattr(result, flag) is True
    assert (result.exit_code, result.signal) == (None, None)
    assert starts == [] and execution.pid is None
    assert not ran.exists()
    assert not Path(cmd.spool_path).exists()
