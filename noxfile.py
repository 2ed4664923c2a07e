"""Automation: `nox` runs lint, typecheck and tests; CI then runs `nox -s slow` too."""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = False

PYTHONS = ["3.11", "3.12", "3.13"]

#: pytest-xdist workers for the default run: twice the cores (at least 3, at most 8),
#: since most tests spend their time waiting on subprocesses and timers. The
#: browser tests, which share one Chromium, stay in one worker (``--dist loadgroup``;
#: tests/conftest.py). ``nox -s tests -- -n 0`` runs them in one process.
PARALLEL = ["-n", str(min(8, max(3, 2 * (os.cpu_count() or 1)))), "--dist", "loadgroup"]


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff lint and format check."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package."""
    session.install("-e", ".[dev]")
    session.run("mypy")


@nox.session
def tests(session: nox.Session) -> None:
    """Unit, integration and acceptance tests on SQLite and, when reachable, PostgreSQL.

    Everything but the tests marked ``slow`` (the soak and the slowest fault and
    benchmark checks; ``nox -s slow``), in parallel (``PARALLEL``). The PostgreSQL
    server is $QUEUECTL_TEST_PG (default: 127.0.0.1:5432, database test); PostgreSQL
    tests are skipped with the reason when it cannot be reached.
    """
    session.install(".[test,postgres]")
    session.run("pytest", "-m", "not slow", *PARALLEL, *session.posargs)


@nox.session
def slow(session: nox.Session) -> None:
    """The tests marked ``slow``: the soak, the slowest fault tests, the benchmark script.

    Not in the default sessions, to keep the everyday run short; `.ci/run` runs it
    after them, so CI checks everything.
    """
    session.install(".[test,postgres]")
    session.run("pytest", "-m", "slow", *session.posargs)


@nox.session(name="tests_postgres")
def tests_postgres(session: nox.Session) -> None:
    """Only the tests that need PostgreSQL, failing (not skipping) if it is unreachable."""
    session.install(".[test,postgres]")
    session.run(
        "pytest", "-m", "postgres", *session.posargs, env={"QUEUECTL_TEST_PG_REQUIRED": "1"}
    )


@nox.session(python=PYTHONS, name="tests-matrix")
def tests_matrix(session: nox.Session) -> None:
    """The tests on every supported Python that is installed."""
    session.install(".[test,postgres]")
    session.run("pytest", "-m", "not slow", *PARALLEL, *session.posargs)
