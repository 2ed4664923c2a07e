"""The CLI in the test's own process, for tests that check only words and exit codes.

Starting the real executable costs an interpreter and every import (about a quarter
of a second of CPU each time); a table of a hundred bad inputs pays it a hundred
times for nothing the process itself shows. ``run_cli_inproc`` runs the same entry
point (``queuectl.cli.main``: the same parsing, the same ``Error:`` line, the same
exit code) with asyncclick's test isolation of stdin, stdout, stderr and the
environment, and answers as ``tests.helpers.run_cli`` does, so the same assertions
apply. What only a process shows (signals, a terminal, a worker's own log, the
console script itself) stays with ``run_cli``; every suite that uses this one keeps
some of its cases on the real executable.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path

from asyncclick.testing import CliRunner

from queuectl.cli import main

#: Commands that install signal handlers, configure logging or serve: never in-process.
_PROCESS_ONLY = {("worker", "start"), ("web",)}


def run_cli_inproc(
    db: Path | str,
    *args: str,
    input: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``queuectl ARGS`` against ``db``, in this process; the finished "process"."""
    assert tuple(args[:2]) not in _PROCESS_ONLY and tuple(args[:1]) not in _PROCESS_ONLY, args
    overrides: dict[str, str | None] = {"QUEUECTL_DB": str(db), "QUEUECTL_DEBUG": None}
    overrides.update(env or {})
    # stdin is empty when no input is given, as /dev/null is for run_cli.
    runner = CliRunner()
    code: list[int] = []

    def invoke() -> None:
        with runner.isolation(input=input or "", env=overrides) as (out, err, _):
            try:
                main(list(args))
                code.append(0)
            except SystemExit as exc:
                code.append(_exit_code(exc.code))
            # What the command wrote but did not flush, as a process's exit would.
            sys.stdout.flush()
            sys.stderr.flush()
            outputs.extend([out.getvalue(), err.getvalue()])

    outputs: list[bytes] = []
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        invoke()
    else:
        # An async test: the CLI runs its own event loop, so it needs a thread.
        thread = threading.Thread(target=invoke)
        thread.start()
        thread.join()
    stdout, stderr = (o.decode("utf-8", "replace") for o in outputs)
    return subprocess.CompletedProcess(["queuectl", *args], code[0], stdout, stderr)


def _exit_code(value: object) -> int:
    """What ``sys.exit(value)`` makes the process's exit status."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    return 1
