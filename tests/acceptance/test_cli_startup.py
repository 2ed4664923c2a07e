"""A command that only enqueues or reads imports only what it needs (issue 15, W4).

``python -X importtime`` lists every module a process imports; the real
``queuectl`` executable runs on a real SQLite file, piped (not a terminal), and
the test fails when a heavy module shows up: the terminal renderer, the
PostgreSQL driver for a file path, the web stack, the worker's machinery, or
anyio (the CLI runs on ``asyncio.run``).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import QUEUECTL, cli_env, run_cli

pytestmark = pytest.mark.sqlite_only

#: Modules (and their submodules) that no enqueue or plain read may import.
HEAVY = (
    "rich",
    "asyncpg",
    "starlette",
    "uvicorn",
    "jinja2",
    "prometheus_client",
    "cronsim",
    "anyio",
    "multiprocessing",
    "queuectl.worker",
    "queuectl.pump",
    "queuectl.executor",
    "queuectl.supervisor",
    "queuectl.schedules",
    "queuectl.web",
    "queuectl.cli.worker",
    "queuectl.cli.web",
    "queuectl.cli.render",
    "queuectl.backends.postgres",
)

_IMPORT_LINE = re.compile(r"import time:\s+\d+ \|\s+\d+ \|\s*(\S+)")


def imported(db: Path, *args: str, input: str | None = None, code: int = 0) -> set[str]:
    """Every module the ``queuectl ARGS`` process imported; it must exit with ``code``."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", QUEUECTL, *args],
        input=input,
        capture_output=True,
        text=True,
        env=cli_env(db),
        timeout=30,
        stdin=None if input is not None else subprocess.DEVNULL,
    )
    assert result.returncode == code, result.stderr[-2000:]
    modules = {m.group(1) for m in map(_IMPORT_LINE.match, result.stderr.splitlines()) if m}
    assert "queuectl.cli.main" in modules, "importtime printed nothing useful"
    return modules


#: What an enqueue does not build either: the records of workers, operators and reads.
NOT_FOR_ENQUEUE = ("queuectl.models_late", "queuectl.backends.base_late")


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def enqueue_heavy(modules: set[str]) -> list[str]:
    return heavy(modules) + sorted(modules.intersection(NOT_FOR_ENQUEUE))


def test_enqueue_imports_only_what_it_needs(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    modules = imported(db, "enqueue", "-c", "true", "--id", "light")
    assert enqueue_heavy(modules) == []
    shown = run_cli(db, "show", "light", "--json")
    assert shown.returncode == 0, shown.stderr


def test_enqueue_from_stdin_imports_only_what_it_needs(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    lines = "".join(f'{{"id":"j{i}","command":"true"}}\n' for i in range(3))
    assert enqueue_heavy(imported(db, "enqueue", input=lines)) == []


@pytest.mark.parametrize(
    "args",
    [
        ("status", "--json"),
        ("list", "--json"),
        ("show", "j", "--json"),
        ("logs", "j"),
        ("wait", "j"),
    ],
    ids=" ".join,
)
def test_reads_import_only_what_they_need(tmp_path: Path, args: tuple[str, ...]) -> None:
    """Those that print no table (a table is drawn by rich, terminal or not)."""
    db = tmp_path / "q.db"
    created = run_cli(db, "enqueue", "-c", "true", "--id", "j")
    assert created.returncode == 0, created.stderr
    # The job never runs: `wait` is bounded and exits 1 (not finished), `logs` exits
    # 1 (has not run yet).
    code = 1 if args[0] in ("wait", "logs") else 0
    if args[0] == "wait":
        args = (*args, "--timeout", "0")
    assert heavy(imported(db, *args, code=code)) == []


def test_the_lazy_commands_are_all_there(tmp_path: Path) -> None:
    """Commands loaded on first use still show in --help and run (cli.lazy)."""
    result = run_cli(tmp_path / "q.db", "--help")
    assert result.returncode == 0, result.stderr
    for name in ("worker", "web", "schedule", "queue", "why", "cancel", "rm", "config", "wait"):
        assert re.search(rf"^\s+{name}\s", result.stdout, re.M), name
    # `schedule add` still takes enqueue's job flags (taken when its module loads).
    add = run_cli(tmp_path / "q.db", "schedule", "add", "--help")
    assert "--max-retries" in add.stdout and "--unique-key" in add.stdout, add.stdout
