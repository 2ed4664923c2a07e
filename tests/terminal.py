"""Drive the real ``queuectl`` in a pseudo-terminal: with the stdlib ``pty``, or in tmux.

Both start their process in its own session and stop it by process group (or the
private tmux server by its socket), never by name. Reads poll with a deadline.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import select
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ANSI = re.compile(rb"\x1b(\[[0-9;?]*[ -/]*[@-~]|\][^\x07]*\x07|[()][0-9A-B]|[=>78])")

#: Make the pty our controlling terminal after ``setsid``, then exec: so a ^C typed
#: into the pty reaches the program as SIGINT, exactly as in a terminal window.
_CTTY = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execvp(sys.argv[1], sys.argv[1:])"
)


def strip_ansi(data: bytes) -> str:
    return ANSI.sub(b"", data).decode("utf-8", "replace").replace("\r", "")


class PtyProcess:
    """A command whose stdin, stdout and stderr (or only some) are a pseudo-terminal."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str],
        rows: int = 40,
        cols: int = 100,
        stdout_pipe: bool = False,
    ) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        env = dict(env, TERM="xterm-256color", COLUMNS=str(cols), LINES=str(rows))
        env.pop("NO_COLOR", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _CTTY, *argv],
            stdin=slave,
            stdout=subprocess.PIPE if stdout_pipe else slave,
            stderr=slave,
            env=env,
            start_new_session=True,
        )
        os.close(slave)
        self.output = b""

    def read(self, timeout: float = 0.1) -> bytes:
        """Whatever the terminal received within ``timeout``; also kept in ``output``."""
        got = b""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self.master], [], [], left)
            if not ready:
                break
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: every process let go of the terminal
                break
            if not chunk:
                break
            got += chunk
        self.output += got
        return got

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = 30) -> str:
        """Read until ``predicate(screen text so far)`` holds; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            self.read(0.1)
            text = strip_ansi(self.output)
            if predicate(text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"terminal never showed it; last output:\n{text[-3000:]}")

    def type(self, data: bytes) -> None:
        os.write(self.master, data)

    def wait(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            self.read(0.05)
            if time.monotonic() > deadline:
                raise AssertionError(f"process still running after {timeout}s")
        self.read(0.05)
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        with contextlib.suppress(OSError):
            os.close(self.master)

    def __enter__(self) -> PtyProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Tmux:
    """A private tmux server (its own socket) with one window of a fixed size."""

    def __init__(self, socket: Path, *, cols: int = 100, rows: int = 40) -> None:
        if shutil.which("tmux") is None:
            raise RuntimeError("tmux is not installed")
        self.socket = socket
        self.cols = cols
        self.rows = rows

    def _tmux(self, *args: str) -> str:
        result = subprocess.run(
            ["tmux", "-S", str(self.socket), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return result.stdout

    def start(self, command: str, env: dict[str, str]) -> None:
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        # COLUMNS/LINES from the test run's environment (tmux passes them on) would
        # override the window's real size for rich.
        exports = f"-u COLUMNS -u LINES {exports}"
        self._tmux(
            "new-session",
            "-d",
            "-x",
            str(self.cols),
            "-y",
            str(self.rows),
            f"env {exports} sh -c {shlex.quote(command)}",
        )

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p")

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", *keys)

    def alternate_screen(self) -> bool:
        return self._tmux("display-message", "-p", "#{alternate_on}").strip() == "1"

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            if predicate(text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"screen never showed it; last screen:\n{text}")
            time.sleep(0.1)

    def kill(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            subprocess.run(
                ["tmux", "-S", str(self.socket), "kill-server"], capture_output=True, timeout=30
            )
