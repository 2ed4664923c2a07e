"""The PostgreSQL store's queue settings (pause, limit) and the per-queue reads.

The claim in ``exchange`` reads ``queue_settings`` in the same statement, so a
committed pause holds for every worker on every host from its next claim; a limit
is checked under the queue row's lock (``queuectl_queue_slots``), so claims on many
hosts cannot together run more than it allows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from queuectl.backends.postgres_conn import compile_query
from queuectl.backends.rows import settings_from_rows
from queuectl.models import QueueSettings
from queuectl.sql import queries

SQL = {name: compile_query(text) for name, text in queries("postgres").items()}


class QueueControlPostgres:
    """Mixed into ``PostgresBackend``, which provides ``_fetch`` and ``_clock``."""

    async def _fetch(self, name: str, **values: Any) -> list[asyncpg.Record]:
        raise NotImplementedError

    def _clock(self, now: int) -> int | None:
        raise NotImplementedError

    async def queue_settings(self) -> QueueSettings:
        return settings_from_rows(await self._fetch("queue_settings"))

    async def set_paused(self, queues: Sequence[str], *, paused: bool) -> None:
        if queues:
            await self._fetch("queue_pause" if paused else "queue_resume", queues=list(queues))

    async def resume_all(self) -> None:
        await self._fetch("queue_resume_all")

    async def set_limit(self, queue: str, limit: int | None) -> None:
        if limit is None:
            await self._fetch("queue_unlimit", queue=queue)
        else:
            await self._fetch("queue_limit", queue=queue, lim=limit)

    async def due_ahead(self, job_id: str, *, queues: Sequence[str] | None, now: int) -> bool:
        rows = await self._fetch(
            "due_ahead",
            id=job_id,
            clock=self._clock(now),
            queues=list(queues) if queues is not None else None,
        )
        return bool(rows and rows[0]["ahead"])
