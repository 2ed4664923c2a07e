"""Every CLI test here runs on both stores, unless marked ``sqlite_only``.

``db_path`` is the ``--db`` target of a fresh queue: a file for SQLite, a
``postgresql://…?schema=…`` URL of a schema of its own for PostgreSQL (a test that
needs it to be a file is about SQLite, and says so with ``sqlite_only``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture
def db_path(
    store: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Path | str:
    if store == "sqlite":
        return tmp_path / "queue.db"
    # With a URL, running commands spool under $XDG_DATA_HOME: keep that in the test.
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    request.addfinalizer(_no_sqlite_file_named_like_the_url)
    url: str = request.getfixturevalue("pg_url")
    return url


def _no_sqlite_file_named_like_the_url() -> None:
    """sqlite3.connect(url) quietly makes a file called "postgresql:/…" in the cwd."""
    litter = Path("postgresql:")
    if litter.exists():
        shutil.rmtree(litter)
        pytest.fail("a test opened the PostgreSQL URL as a SQLite file: mark it sqlite_only")
