from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from queuectl.backends.sqlite import SqliteBackend


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "queue.db"


@pytest.fixture
async def sqlite_backend(db_path: Path) -> AsyncIterator[SqliteBackend]:
    backend = await SqliteBackend.open(str(db_path))
    try:
        yield backend
    finally:
        await backend.aclose()


class FrozenClock:
    """A clock that only moves when told to; ``now`` in epoch milliseconds."""

    def __init__(self, start: int = 1_800_000_000_000) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> int:
        self.now += round(seconds * 1000)
        return self.now


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


class Mounts:
    """Mounts made by one test (tmpfs, read-only binds), always undone afterwards.

    Tests run as root, which ignores permission bits, so a read-only folder or a
    full disk has to be real: a read-only bind mount or a small tmpfs.
    """

    def __init__(self) -> None:
        self.points: list[Path] = []

    def _mount(self, *args: str) -> None:
        result = subprocess.run(["mount", *args], capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount here (needs root with CAP_SYS_ADMIN): {result.stderr}")

    def tmpfs(self, point: Path, size: str) -> Path:
        point.mkdir(parents=True, exist_ok=True)
        self._mount("-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(point))
        self.points.append(point)
        return point

    def read_only(self, folder: Path) -> Path:
        """Make ``folder`` read-only in place (a bind mount of itself, remounted ``ro``)."""
        self._mount("--bind", str(folder), str(folder))
        self.points.append(folder)
        self._mount("-o", "remount,bind,ro", str(folder))
        return folder

    def undo(self) -> None:
        for point in reversed(self.points):
            subprocess.run(["umount", "-l", str(point)], check=False)
        self.points.clear()


@pytest.fixture
def mounts() -> Iterator[Mounts]:
    made = Mounts()
    try:
        yield made
    finally:
        made.undo()
