"""Opening a SQLite file safely: checks, pragmas, migrations, and readable errors.

Everything here runs on the connection's own thread (see ``sqlite.py``). A file is
recognised by its ``PRAGMA application_id`` before anything writes to it, so a
foreign or damaged file is refused untouched, and its schema version decides
which numbered migrations still apply.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from queuectl.exceptions import BackendError, NotAQueueDatabase, SchemaTooNew
from queuectl.private import create_file, make_dirs
from queuectl.sql import migrations

T = TypeVar("T")

#: ``PRAGMA application_id`` of every queuectl file ("QCTL"), to recognise foreign ones.
APPLICATION_ID = 0x5143544C
MIGRATIONS = migrations("sqlite")
SCHEMA_VERSION = MIGRATIONS[-1][0]
MIN_SQLITE = (3, 35, 0)  # UPDATE … RETURNING


def split_script(script: str) -> list[str]:
    """Split a migration into statements; ``executescript`` would commit midway."""
    statements: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        if not current and (not line.strip() or line.lstrip().startswith("--")):
            continue
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip():
        statements.append(current.strip())
    return statements


def begin(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")


def transaction(conn: sqlite3.Connection, body: Callable[[sqlite3.Connection], T]) -> T:
    begin(conn)
    try:
        result = body(conn)
    except BaseException:
        conn.rollback()
        raise
    conn.commit()
    return result


def migrate(conn: sqlite3.Connection, *, target: int = SCHEMA_VERSION) -> int:
    """Bring the file to ``target``; returns the version it had. Runs in one transaction.

    The version is read again after ``BEGIN IMMEDIATE``, so several processes
    opening an old file at once migrate it exactly once.
    """
    app_id, version = header(conn)
    if app_id == APPLICATION_ID and version == target:
        return version

    def body(c: sqlite3.Connection) -> int:
        app_id, version = header(c)
        fresh = app_id == 0 and version == 0 and not has_tables(c)
        if not fresh and app_id != APPLICATION_ID:
            raise NotAQueueDatabase(
                f"{db_name(c)} is not a queuectl database (refusing to change it)"
            )
        if version > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"{db_name(c)} has schema version {version}, newer than this queuectl "
                f"understands ({SCHEMA_VERSION}); upgrade queuectl"
            )
        for number, script in MIGRATIONS:
            if version < number <= target:
                for statement in split_script(script):
                    c.execute(statement)
                c.execute(f"PRAGMA user_version = {int(number)}")
        c.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        return version

    return transaction(conn, body)


def header(conn: sqlite3.Connection) -> tuple[int, int]:
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    return int(app_id), int(version)


def has_tables(conn: sqlite3.Connection) -> bool:
    return bool(conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] > 0)


def db_name(conn: sqlite3.Connection) -> str:
    row = conn.execute("PRAGMA database_list").fetchone()
    return str(row[2]) if row else "the database"


def is_busy(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def prepare_path(path: Path) -> None:
    """Make the missing folders and an empty database file, private to the owner.

    SQLite gives ``-wal`` and ``-shm`` the mode of the database file, so creating
    the file 0600 here, before SQLite would create it 0644, keeps all three private.
    """
    if path.is_dir():
        raise BackendError(f"cannot use {path} as the database: it is a folder")
    try:
        make_dirs(path.parent)
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise BackendError(f"cannot create the folder for {path}: {reason}") from exc
    if path.exists():
        if not os.access(path, os.R_OK):
            raise BackendError(f"cannot read database {path}: permission denied")
        return
    # If this fails (a read-only folder, ...), SQLite's own open says why in its words.
    with contextlib.suppress(OSError):
        create_file(path)


def setup(conn: sqlite3.Connection, *, durable: bool) -> None:
    conn.row_factory = sqlite3.Row
    # Reading the header first turns a foreign or corrupt file into a clear error
    # before any pragma could write to it.
    app_id, version = header(conn)
    if app_id not in (0, APPLICATION_ID) or (app_id == 0 and has_tables(conn)):
        raise NotAQueueDatabase(
            f"{db_name(conn)} is not a queuectl database (refusing to change it)"
        )
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"{db_name(conn)} has schema version {version}, newer than this queuectl "
            f"understands ({SCHEMA_VERSION}); upgrade queuectl"
        )
    conn.execute("PRAGMA busy_timeout = 1000")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise BackendError(f"{db_name(conn)}: cannot switch to WAL mode (journal mode {mode})")
    conn.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
    conn.execute("PRAGMA foreign_keys = ON")
    migrate(conn)


def translate(exc: sqlite3.Error, path: Path) -> BackendError:
    text = str(exc)
    lower = text.lower()
    if "readonly" in lower or "read-only" in lower:
        return BackendError(f"database {path} is read-only ({text}); nothing was changed")
    if "full" in lower:
        return BackendError(f"disk full while writing {path}; nothing was changed")
    if "not a database" in lower or "malformed" in lower or "corrupt" in lower:
        return NotAQueueDatabase(f"{path} is not a usable queuectl database: {text}")
    if "unable to open" in lower:
        if _read_only_fs(path.parent):
            # WAL mode needs its -wal and -shm files beside the database.
            return BackendError(
                f"cannot open database {path}: its folder is on a read-only file system "
                "(queuectl needs to write beside the file)"
            )
        return BackendError(f"cannot open database {path}: {text} (check the path and permissions)")
    return BackendError(f"database error on {path}: {text}")


def _read_only_fs(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False
