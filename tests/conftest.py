from __future__ import annotations

import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from queuectl.backends.sqlite import SqliteBackend
from tests import pg

# Started under ``nohup`` (a CI runner, a detached shell), this process and every
# worker the tests start would inherit SIGHUP ignored, and a worker keeps ignoring a
# SIGHUP that was ignored when it started (reference §5: nohup works). The SIGHUP
# tests check the default disposition, so the tests always start from it.
if signal.getsignal(signal.SIGHUP) == signal.SIG_IGN:
    signal.signal(signal.SIGHUP, signal.SIG_DFL)

#: The stores every store-agnostic test runs on.
STORES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def store_target(request: pytest.FixtureRequest, folder: Path) -> Path | str:
    """A fresh ``--db`` target for a module- or class-scoped fixture parametrised by
    ``STORES``: a file in ``folder``, or a schema of its own dropped at teardown."""
    if request.param == "sqlite":
        return folder / "queue.db"
    schema = pg.Schema(pg.require())
    request.addfinalizer(schema.drop)
    return schema.url


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


@pytest.fixture
def pg_schema() -> Iterator[pg.Schema]:
    """A fresh schema on the test server (skips when there is none); dropped afterwards."""
    schema = pg.Schema(pg.require())
    try:
        yield schema
    finally:
        schema.drop()


@pytest.fixture
def pg_url(pg_schema: pg.Schema) -> str:
    """A ``postgresql://…?schema=…`` URL of a queue of its own."""
    return pg_schema.url


#: ``slow_on_postgres``: the PostgreSQL run of a long process test is also ``slow``.
SLOW_ON_POSTGRES = [
    "sqlite",
    pytest.param("postgres", marks=[pytest.mark.postgres, pytest.mark.slow]),
]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that depends on ``store`` runs once per store (``sqlite_only``: once).

    ``slow_on_postgres``: its PostgreSQL run is left to the ``slow`` session.
    """
    if "store" in metafunc.fixturenames:
        marked = metafunc.definition.get_closest_marker
        stores = STORES
        if marked("sqlite_only") is not None:
            stores = ["sqlite"]
        elif marked("slow_on_postgres") is not None:
            stores = SLOW_ON_POSTGRES
        metafunc.parametrize("store", stores, indirect=True)


#: Fixtures costly to start once per xdist worker: Chromium (memory and a few seconds
#: of CPU for each) keeps its tests in one worker (``--dist loadgroup``). The private
#: PostgreSQL server of tests/faults is not among them: it starts in about two seconds,
#: and its tests are the longest of the run, so they spread over the workers, each
#: worker restarting and cutting off only a server of its own.
SHARED_STARTS = {"browser": "chromium"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for fixture, group in SHARED_STARTS.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture
def store(request: pytest.FixtureRequest) -> str:
    """The name of the store a store-agnostic test runs on."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
def db(store: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The ``--db`` target of a fresh queue on each store: a file path or a URL."""
    if store == "sqlite":
        return str(tmp_path / "queue.db")
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
async def backend(store: str, request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    """A fresh store of each kind, its ``now`` arguments being its clock (``FrozenClock``)."""
    opened: Any
    if store == "sqlite":
        opened = await SqliteBackend.open(str(tmp_path / "queue.db"))
    else:
        from queuectl.backends.postgres import PostgresBackend

        opened = await PostgresBackend.open(request.getfixturevalue("pg_url"), caller_clock=True)
    try:
        yield opened
    finally:
        await opened.aclose()


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
