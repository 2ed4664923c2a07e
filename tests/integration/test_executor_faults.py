"""The executor under faults, in-process with real subprocesses.

Output that would exhaust memory, a command cancelled with its worker, and a
background grandchild that keeps the output open.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from queuectl.executor import Command, Execution, KillReason
from tests.helpers import pid_alive, read_pids, wait_for


def _command(tmp_path: Path, command: str, **kwargs: object) -> Command:
    options: dict[str, object] = {
        "env": dict(os.environ),
        "cwd": None,
        "timeout_s": None,
        "output_limit": 1024,
        "kill_grace_s": 1.0,
        "spool_path": tmp_path / "spool.out",
    }
    options.update(kwargs)
    return Command(command=command, **options)  # type: ignore[arg-type]


async def _until(predicate, timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def test_a_cancelled_execution_kills_its_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    pids = tmp_path / "pids"
    started: list[asyncio.subprocess.Process] = []
    spawn = asyncio.create_subprocess_shell

    async def recorded(*args: Any, **kwargs: Any) -> asyncio.subprocess.Process:
        started.append(await spawn(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(asyncio, "create_subprocess_shell", recorded)
    execution = Execution(_command(tmp_path, f"echo $$ > {pids}; exec sleep 300"))
    task = asyncio.create_task(execution.run())
    await _until(lambda: pids.exists() and pids.read_text().strip())
    (pid,) = read_pids(pids)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await _until(lambda: not pid_alive(pid))
    assert not (tmp_path / "spool.out").exists()
    # The cancelled run leaves collecting the killed shell to its loop: do it before
    # this test's loop closes, or its transport is reported (as a ResourceWarning,
    # an error here) in whichever later test the garbage collector runs.
    (proc,) = started
    assert await asyncio.wait_for(proc.wait(), 10) == -signal.SIGKILL


async def test_a_lost_lease_kills_the_whole_group(tmp_path: Path):
    pids = tmp_path / "pids"
    command = f'(trap "" TERM; exec sleep 300) & echo $! >> {pids}; echo $$ >> {pids}; wait'
    execution = Execution(_command(tmp_path, command))
    task = asyncio.create_task(execution.run())
    await _until(lambda: len(read_pids(pids)) == 2)
    execution.kill(KillReason.LOST)
    result = await asyncio.wait_for(task, 30)
    assert result.lost_lease
    assert not any(pid_alive(p) for p in read_pids(pids))


async def test_a_grandchild_holding_the_output_open_does_not_hang(tmp_path: Path):
    pids = tmp_path / "pids"
    command = f"sleep 300 & echo $! > {pids}; echo parent done"
    try:
        result = await asyncio.wait_for(Execution(_command(tmp_path, command)).run(), 30)
        assert result.exit_code == 0
        assert result.output_tail == b"parent done\n"
        # The grandchild still runs (a command may start a daemon on purpose).
        assert all(pid_alive(p) for p in read_pids(pids))
    finally:
        for pid in read_pids(pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not any(pid_alive(p) for p in read_pids(pids)))
