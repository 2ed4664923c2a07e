from __future__ import annotations

from collections.abc import AsyncIterator
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
