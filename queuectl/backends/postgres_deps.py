"""The PostgreSQL store's side of dependencies between jobs (reference §19.1).

Every function runs on the caller's connection, inside the transaction that
inserted, cancelled or retried the jobs it starts from. A worker's exchange and a
recovery settle dependents in their own statement (``queuectl_settle``). What each
step decides is in ``bookkeeping``; the statements are in
``sql/postgres/dependencies.sql``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import asyncpg

from queuectl.backends import bookkeeping
from queuectl.backends.postgres_conn import compile_query
from queuectl.models import JobState, NewJob
from queuectl.sql import queries

SQL = {name: compile_query(text) for name, text in queries("postgres", "dependencies").items()}


async def _run(conn: asyncpg.Connection, name: str, **values: Any) -> list[asyncpg.Record]:
    query = SQL[name]
    return await conn.fetch(query.text, *query.args(values))  # type: ignore[no-any-return]


async def plan(
    conn: asyncpg.Connection, jobs: Sequence[NewJob]
) -> tuple[list[int], list[dict[str, Any]]]:
    """Lock the batch's outside dependencies until commit and check them: each job's
    ``unmet`` and its edges. A worker that ends one of them meanwhile waits for this
    transaction, then settles the new dependents with a fresh snapshot."""
    outside = bookkeeping.outside_deps(jobs)
    rows = await _run(conn, "lock_deps", ids=outside) if outside else []
    return bookkeeping.plan_after(jobs, {r["id"]: JobState(r["state"]) for r in rows})


async def insert(conn: asyncpg.Connection, edges: Sequence[dict[str, Any]]) -> None:
    if edges:
        await _run(
            conn,
            "insert_deps",
            job_ids=[e["job_id"] for e in edges],
            depends_on=[e["depends_on"] for e in edges],
            met=[bool(e["met"]) for e in edges],
        )


async def settle(
    conn: asyncpg.Connection,
    ended: Iterable[tuple[str, str]],
    *,
    clock: int | None,
    channel: str,
) -> None:
    pairs = list(ended)
    if pairs:
        await _run(
            conn,
            "settle",
            ids=[i for i, _ in pairs],
            states=[s for _, s in pairs],
            clock=clock,
            why=bookkeeping.DEPENDENCY_ERROR,
            channel=channel,
        )


async def check_retry(conn: asyncpg.Connection, job_ids: Sequence[str]) -> None:
    rows = await _run(conn, "blockers", ids=list(job_ids))
    bookkeeping.check_retry_blockers(job_ids, ((r[0], r[1], r[2]) for r in rows))


async def revive(
    conn: asyncpg.Connection, job_ids: Sequence[str], *, clock: int | None, channel: str
) -> None:
    """After ``retry`` of ``job_ids``: bring back the jobs their end cancelled, count
    again what each waits for (one still held by a dead dependency is cancelled again)."""
    if not job_ids:
        return
    back = [r["id"] for r in await _run(conn, "revive", ids=list(job_ids), clock=clock)]
    ids = [*job_ids, *back]
    await _run(conn, "recount_edges", ids=ids)
    await _run(conn, "recount_jobs", ids=ids)
    gone = await _run(conn, "gone_deps", ids=ids)
    await settle(conn, ((r["id"], r["state"]) for r in gone), clock=clock, channel=channel)


async def check_remove(conn: asyncpg.Connection, job_ids: Sequence[str]) -> None:
    rows = await _run(conn, "waiting_on", ids=list(job_ids))
    bookkeeping.refuse_removal(job_ids, ((r[0], r[1], r[2]) for r in rows))


async def forget(conn: asyncpg.Connection, job_ids: Sequence[str]) -> None:
    await _run(conn, "delete_deps", ids=list(job_ids))
