"""The SQLite store's queue settings (pause, limit) and the per-queue reads.

The settings are a few rows in ``queue_settings``; the claim statement reads them
itself (see ``claim_any``), so nothing here has to tell a worker anything: the
next claim after a commit obeys. Resuming or raising a limit wakes the idle
workers (``Queue`` does, through ``notify``).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from queuectl.backends.rows import settings_from_rows
from queuectl.backends.sqlite_conn import transaction
from queuectl.sql import queries

if TYPE_CHECKING:
    from queuectl.models import QueueSettings

T = TypeVar("T")
SQL = queries("sqlite")


class QueueControlSqlite:
    """Mixed into ``SqliteBackend``, which provides ``_call`` (one hop to the DB thread)."""

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    async def queue_settings(self) -> QueueSettings:
        rows = await self._call(lambda c: c.execute(SQL["queue_settings"]).fetchall())
        return settings_from_rows(rows)

    async def set_paused(self, queues: Sequence[str], *, paused: bool) -> None:
        sql = SQL["queue_pause" if paused else "queue_resume"]
        rows = [{"queue": q} for q in queues]

        def body(conn: sqlite3.Connection) -> None:
            conn.executemany(sql, rows)
            conn.execute(SQL["queue_prune"])

        await self._call(lambda c: transaction(c, body))

    async def resume_all(self) -> None:
        def body(conn: sqlite3.Connection) -> None:
            conn.execute(SQL["queue_resume_all"])
            conn.execute(SQL["queue_prune"])

        await self._call(lambda c: transaction(c, body))

    async def set_limit(self, queue: str, limit: int | None) -> None:
        def body(conn: sqlite3.Connection) -> None:
            conn.execute(SQL["queue_limit"], {"queue": queue, "lim": limit})
            conn.execute(SQL["queue_prune"])

        await self._call(lambda c: transaction(c, body))

    async def due_ahead(self, job_id: str, *, queues: Sequence[str] | None, now: int) -> bool:
        def read(conn: sqlite3.Connection) -> bool:
            job = conn.execute(SQL["job_order"], {"id": job_id}).fetchone()
            if job is None:
                return False
            args = {
                "priority": job[0],
                "seq": job[1],
                "now": now,
                "queues": None if queues is None else json.dumps(list(queues)),
            }
            return bool(conn.execute(SQL["due_ahead"], args).fetchone()[0])

        return await self._call(read)
