"""Pick a store from a target: a file path is SQLite, a ``postgresql://`` URL PostgreSQL.

Drivers are imported lazily, so the SQLite default never pays for asyncpg and a
missing extra is a clear error instead of an ``ImportError``.
"""

from __future__ import annotations

from pathlib import Path

from queuectl.backends.base import Backend
from queuectl.exceptions import BackendError, NoDatabase

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(target: str) -> bool:
    return target.startswith(POSTGRES_SCHEMES)


async def open_backend(
    target: str, *, durable: bool = True, busy_deadline_s: float = 15.0, create: bool = True
) -> Backend:
    """Open the store at ``target``, creating and migrating it as needed.

    ``create=False`` (read-only commands) raises ``NoDatabase`` instead of creating
    a database file, its folders or a PostgreSQL schema that does not exist yet, so
    a mistyped path is not shown as an empty queue. ``durable`` asks for commits
    that survive power loss (what a confirmed enqueue promises); workers open with
    ``False`` and trade that for speed on their own transitions, where a lost write
    means a re-run.
    """
    if is_postgres(target):
        try:
            from queuectl.backends.postgres import PostgresBackend  # type: ignore[import-untyped,unused-ignore]
        except ImportError as exc:
            raise BackendError(
                "the PostgreSQL store needs the extra: pip install 'queuectl[postgres]'"
            ) from exc
        return await PostgresBackend.open(target, durable=durable, create=create)  # type: ignore[no-any-return,unused-ignore]
    if "://" in target:
        raise BackendError(f"unsupported database URL {target!r}; use a file path or postgresql://")
    from queuectl.backends.sqlite import SqliteBackend

    if not create and not Path(target).expanduser().exists():
        raise NoDatabase(f"no database exists at {Path(target).expanduser()} yet")
    return await SqliteBackend.open(target, durable=durable, busy_deadline_s=busy_deadline_s)


__all__ = ["Backend", "is_postgres", "open_backend"]
