"""A throwaway PostgreSQL server of the tests' own, for faults the shared one must not see.

Restarting a server or killing its sessions would break every other test (and
every other user) of the shared server on 5432, so the fault tests start their
own: ``initdb`` into a temporary folder, on a free port, run as the ``postgres``
user (``initdb`` refuses root), with ``fsync`` off (its data is thrown away).
It is stopped (``pg_ctl stop -m immediate``) and removed by the fixture that made it.

Workers connect as the role ``qt_worker``; the tests connect as ``postgres``,
so ``pg_terminate_backend`` can aim at the workers' sessions only.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

#: The role the workers log in as (a superuser: it creates its own schema).
WORKER_ROLE = "qt_worker"


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def unavailable() -> str | None:
    """Why a private server cannot be started here, or ``None``."""
    if _bindir() is None:
        return "no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb)"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "no 'postgres' user to run a private server as"
    if os.geteuid() != 0:
        return "starting a private PostgreSQL server as 'postgres' needs root"
    return None


def require() -> None:
    reason = unavailable()
    if reason is not None:
        if os.environ.get("QUEUECTL_TEST_PG_REQUIRED") == "1":
            pytest.fail(reason)
        pytest.skip(reason)


class PrivateServer:
    def __init__(self) -> None:
        bindir = _bindir()
        assert bindir is not None
        self.bindir = bindir
        self.folder = Path(tempfile.mkdtemp(prefix="queuectl-pg-"))
        self.data = self.folder / "data"
        self.port = _free_port()
        os.chown(self.folder, pwd.getpwnam("postgres").pw_uid, -1)

    def _as_postgres(self, *argv: str, timeout: float = 120) -> None:
        result = subprocess.run(
            ["runuser", "-u", "postgres", "--", *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.folder,
        )
        assert result.returncode == 0, (argv, result.stdout, result.stderr)

    def _pg_ctl(self, *args: str) -> None:
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
            " -c fsync=off -c full_page_writes=off -c max_connections=200"
        )
        self._as_postgres(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.folder / "server.log"),
            "-w",
            "-t",
            "60",
            *args,
        )

    def start(self) -> PrivateServer:
        self._as_postgres(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        )
        self._pg_ctl("start")
        self.sql(f"CREATE ROLE {WORKER_ROLE} LOGIN SUPERUSER")
        return self

    def restart(self, *, down_s: float = 0.0) -> float:
        """A fast-mode restart; returns when (``time.time()``) it accepts connections again.

        ``down_s``: stay down that long between the stop and the start.
        """
        if down_s:
            self._pg_ctl("stop", "-m", "fast")
            time.sleep(down_s)
            self._pg_ctl("start")
        else:
            self._pg_ctl("restart", "-m", "fast")
        return self.wait_ready()

    def wait_ready(self, timeout: float = 60) -> float:
        deadline = time.monotonic() + timeout
        while True:
            result = subprocess.run(
                ["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.port)], check=False
            )
            if result.returncode == 0:
                return time.time()
            assert time.monotonic() < deadline, "the private server did not come back"
            time.sleep(0.02)

    def stop(self) -> None:
        with contextlib.suppress(AssertionError, subprocess.SubprocessError):
            self._pg_ctl("stop", "-m", "immediate")
        shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, schema: str, *, port: int | None = None, user: str = WORKER_ROLE) -> str:
        """A queue URL; ``port``: go through a proxy on that port instead."""
        return f"postgresql://{user}@127.0.0.1:{port or self.port}/postgres?schema={schema}"

    def sql(self, statement: str) -> str:
        """Run one statement as ``postgres`` with ``psql``; returns its unaligned output."""
        result = subprocess.run(
            [
                "psql",
                "-X",
                "-qAt",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                statement,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, (statement, result.stderr)
        return result.stdout.strip()

    def terminate_workers(self) -> int:
        """``pg_terminate_backend`` on every session of the workers' role; how many."""
        return int(
            self.sql(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                f" WHERE usename = '{WORKER_ROLE}'"
            )
            or 0
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
