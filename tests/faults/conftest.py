"""Fixtures of the PostgreSQL fault tests: a private server, fault proxies, hosts."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faultproxy import FaultProxy
from tests.faults.cluster import Cluster
from tests.pgserver import PrivateServer, require


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PrivateServer]:
    """One private server for the session (restarted by tests, never the shared one)."""
    require()
    server = PrivateServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def cluster(pg_server: PrivateServer, tmp_path: Path) -> Iterator[Cluster]:
    """A queue of its own (a fresh schema) on the private server, and hosts to run on it."""
    made = Cluster(pg_server, "qf_" + secrets.token_hex(5), tmp_path)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def proxy(pg_server: PrivateServer) -> Iterator[FaultProxy]:
    with FaultProxy(pg_server.port) as made:
        yield made
