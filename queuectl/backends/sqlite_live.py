"""The SQLite store's reads for the live view and shell completion.

Kept apart from ``sqlite.py`` (the store's write paths) because these only read:
each is one indexed query, run on every refresh of ``status --watch`` or on every
Tab press, so none may cost in proportion to the size of the tables.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TypeVar

from queuectl.backends.rows import job_from_row, running_from_row
from queuectl.models import Job, JobState, Outcome, RunningJob
from queuectl.sql import queries

T = TypeVar("T")
SQL = queries("sqlite")

#: Ids of a prefix that completion looks at when it also filters by state.
_COMPLETION_SCAN = 2000
#: Above every code point: ``prefix <= id < prefix + _TOP`` is "id starts with prefix".
_TOP = "\U0010ffff"


class LiveViewReads:
    """Mixed into ``SqliteBackend``, which provides ``_call`` (one hop to the DB thread)."""

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    async def running_jobs(self, *, limit: int) -> list[RunningJob]:
        rows = await self._call(
            lambda c: c.execute(SQL["running_jobs"], {"limit": limit}).fetchall()
        )
        return [running_from_row(r) for r in rows]

    async def finished_since(self, since: int) -> dict[Outcome, int]:
        rows = await self._call(
            lambda c: c.execute(SQL["finished_since"], {"since": since}).fetchall()
        )
        return {Outcome(r[0]): int(r[1]) for r in rows if r[0]}

    async def next_retry(self) -> Job | None:
        row = await self._call(lambda c: c.execute(SQL["next_retry"]).fetchone())
        return None if row is None else job_from_row(row)

    async def recent_dead(self, *, limit: int) -> list[Job]:
        rows = await self._call(
            lambda c: c.execute(SQL["recent_dead"], {"limit": limit}).fetchall()
        )
        return [job_from_row(r) for r in rows]

    async def job_ids(
        self, prefix: str, *, state: JobState | None = None, limit: int = 50
    ) -> list[str]:
        args = {"lo": prefix, "hi": prefix + _TOP, "limit": limit}
        if state is None:
            sql = SQL["ids_by_prefix"]
        else:
            sql = SQL["ids_by_prefix_state"]
            args.update(state=state.value, scan=_COMPLETION_SCAN)
        rows = await self._call(lambda c: c.execute(sql, args).fetchall())
        return [r[0] for r in rows]
