"""The SQLite store's side of dependencies between jobs (reference §19.1).

Every function runs inside the caller's ``BEGIN IMMEDIATE`` transaction, the one
that inserted, finished, cancelled or retried the jobs it starts from, so a
dependency's end and its dependents' release commit together. What each step
decides is in ``bookkeeping``; the statements are in ``sql/sqlite/dependencies.sql``.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterable, Sequence

from queuectl.backends import bookkeeping
from queuectl.models import JobState, NewJob
from queuectl.sql import queries

SQL = queries("sqlite", "dependencies")
_COUNT_CANCELLED = queries("sqlite", "operations")["count_cancelled_waiting"]


def _ids(ids: Iterable[str]) -> str:
    return json.dumps(list(ids))


def plan(conn: sqlite3.Connection, jobs: Sequence[NewJob]) -> list[int]:
    """Check the batch's dependencies under the write lock; each job's ``unmet``.

    Writes nothing: ``insert`` stores the edges once the jobs are in.
    """
    outside = bookkeeping.outside_deps(jobs)
    rows = conn.execute(SQL["dep_states"], {"ids": _ids(outside)}) if outside else []
    unmet, _ = bookkeeping.plan_after(jobs, {r[0]: JobState(r[1]) for r in rows})
    return unmet


def insert(conn: sqlite3.Connection, jobs: Sequence[NewJob]) -> None:
    """The ``job_deps`` rows of jobs just inserted (``plan`` checked them)."""
    outside = bookkeeping.outside_deps(jobs)
    rows = conn.execute(SQL["dep_states"], {"ids": _ids(outside)}) if outside else []
    _, edges = bookkeeping.plan_after(jobs, {r[0]: JobState(r[1]) for r in rows})
    conn.executemany(SQL["insert_deps"], edges)


def settle(conn: sqlite3.Connection, ended: Iterable[tuple[str, str]], now: int) -> None:
    """Jobs that just ended (id, state): cancel the dependents that can no longer run,
    down the chain, and let the others stop waiting on them.

    The jobs it cancels never ran: they count once as ``cancelled`` in the
    finished-job counters, as a cancelled waiting job does.
    """
    done: list[str] = []
    gone: list[str] = []
    for job_id, state in ended:
        if JobState(state) in bookkeeping.ENDED_STATES:
            done.append(job_id)
            if JobState(state) in bookkeeping.GONE_STATES:
                gone.append(job_id)
    if not done:
        return
    if gone:
        args = {"gone": _ids(gone), "now": now, "why": bookkeeping.DEPENDENCY_ERROR}
        cancelled: Counter[str] = Counter()
        for row in conn.execute(SQL["doom"], args).fetchall():
            done.append(row[0])
            cancelled[row[1]] += 1
        conn.executemany(_COUNT_CANCELLED, [{"queue": q, "n": n} for q, n in cancelled.items()])
    met = conn.execute(SQL["meet"], {"done": _ids(done)}).fetchall()
    if met:
        conn.executemany(SQL["lower_unmet"], bookkeeping.lowered(met))


def check_retry(conn: sqlite3.Connection, job_ids: Sequence[str]) -> None:
    rows = conn.execute(SQL["blockers"], {"ids": _ids(job_ids)}).fetchall()
    bookkeeping.check_retry_blockers(job_ids, ((r[0], r[1], r[2]) for r in rows))


def revive(conn: sqlite3.Connection, job_ids: Sequence[str], now: int) -> None:
    """After ``retry`` of ``job_ids``: bring back the jobs their end cancelled, and
    count again what each of them waits for (a dependency still dead or cancelled
    cancels it again)."""
    if not job_ids:
        return
    back = [r[0] for r in conn.execute(SQL["revive"], {"ids": _ids(job_ids), "now": now})]
    ids = _ids([*job_ids, *back])
    conn.execute(SQL["recount_edges"], {"ids": ids})
    conn.execute(SQL["recount_jobs"], {"ids": ids})
    gone = [r[0] for r in conn.execute(SQL["gone_deps"], {"ids": ids})]
    if not gone:
        return
    states = conn.execute(
        "SELECT id, state FROM jobs WHERE id IN (SELECT value FROM json_each(:ids))",
        {"ids": _ids(gone)},
    ).fetchall()
    settle(conn, [(r[0], r[1]) for r in states], now)


def check_remove(conn: sqlite3.Connection, job_ids: Sequence[str]) -> None:
    rows = conn.execute(SQL["waiting_on"], {"ids": _ids(job_ids)}).fetchall()
    bookkeeping.refuse_removal(job_ids, ((r[0], r[1], r[2]) for r in rows))


def forget(conn: sqlite3.Connection, job_ids: Sequence[str]) -> None:
    """The edges of removed jobs (edges to them stay: ``show`` says "removed")."""
    conn.execute(SQL["delete_deps"], {"ids": _ids(job_ids)})
