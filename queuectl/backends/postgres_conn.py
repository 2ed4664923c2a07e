"""Connecting to PostgreSQL: the URL, the schema, migrations, and errors users can read.

Kept apart from ``backends.postgres`` (the queue's operations) because none of this
runs on the hot path: it is what happens once when a store is opened.

* **Where the tables live.** Every object lives in one schema, ``queuectl`` unless
  the URL says ``?schema=NAME``. The schema is created if missing and every
  connection of the store puts it first on its ``search_path``, so the SQL never
  names it and one database can hold several independent queues (the tests give
  each test its own schema).
* **Migrations** are numbered files in ``sql/postgres/migrations``; the versions
  applied are rows of ``schema_version``. They run in one transaction under a
  transaction-level advisory lock, with the version read again under the lock,
  so many workers starting together migrate once; a schema newer than the code
  is refused, and a schema holding tables that are not ours is never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import asyncpg

from queuectl.backends import wakeup
from queuectl.exceptions import (
    BackendError,
    NoDatabase,
    NotAQueueDatabase,
    SchemaTooNew,
    StoreUnreachable,
)
from queuectl.sql import migrations

MIGRATIONS = migrations("postgres")
SCHEMA_VERSION = MIGRATIONS[-1][0]
DEFAULT_SCHEMA = "queuectl"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
#: ``:name`` placeholders, but not the ``::type`` of a cast.
_PLACEHOLDER = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_CONNECT_TIMEOUT_S = 10.0
#: A statement that takes longer than this is treated as a lost connection.
_COMMAND_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed ``postgresql://`` URL."""

    #: The URL as given (it may hold a password: never print it).
    url: str
    #: What asyncpg connects to (the URL without queuectl's own parameters).
    dsn: str
    schema: str
    #: The URL with any password masked, for messages.
    shown: str
    #: ``host:port`` for messages about reaching the server.
    address: str
    #: Server, database and schema: the store whichever user, password or options
    #: reach it (``Backend.identity``).
    identity: str


def parse_target(url: str) -> Target:
    """Split off ``?schema=``; everything else in the URL is asyncpg's (libpq's) syntax."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # the message never holds the URL (nor its password)
        raise BackendError(f"invalid database URL: {exc}") from None
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = DEFAULT_SCHEMA
    rest = []
    for key, value in query:
        if key == "schema":
            schema = value
        else:
            rest.append((key, value))
    if not _IDENTIFIER.fullmatch(schema):
        raise BackendError(
            f"invalid schema name {schema!r} in the database URL: use letters, digits and _"
            " (at most 63, not starting with a digit)"
        )
    dsn = urlunsplit(parts._replace(query=urlencode(rest)))
    shown = shown_url(parts)
    try:
        port = parts.port or 5432
    except ValueError as exc:
        raise BackendError(f"invalid port in the database URL {shown}") from exc
    address = f"{parts.hostname or 'localhost'}:{port}"
    # libpq's default database is the user's name.
    database = unquote(parts.path.lstrip("/")) or unquote(parts.username or "")
    identity = f"postgresql://{address}/{database}?schema={schema}"
    return Target(url=url, dsn=dsn, schema=schema, shown=shown, address=address, identity=identity)


def shown_url(parts: SplitResult) -> str:
    """The URL for messages: a password (in the user part or ``?password=``) is ``***``."""
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    query = [
        (key, "***" if key.lower() == "password" else value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    netloc = f"{userinfo}{at}{hostport}"
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query, safe="*")))


def lock_key(purpose: str, schema: str) -> int:
    """A stable signed 64-bit advisory-lock key for one purpose in one schema."""
    digest = hashlib.blake2b(f"queuectl:{purpose}:{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def channel_name(schema: str) -> str:
    """The NOTIFY channel of the queue in ``schema`` (an identifier of at most 63 bytes)."""
    name = f"queuectl_{schema}"
    if len(name) <= 63:
        return name
    return "queuectl_" + hashlib.blake2b(schema.encode(), digest_size=16).hexdigest()


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True, slots=True)
class Query:
    """A named query compiled from ``:name`` placeholders to asyncpg's ``$n``."""

    text: str
    names: tuple[str, ...]

    def args(self, values: dict[str, Any]) -> list[Any]:
        return [values[n] for n in self.names]


def compile_query(sql: str) -> Query:
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return Query(_PLACEHOLDER.sub(number, sql), tuple(names))


def translate(exc: BaseException, target: Target) -> BackendError:
    """A driver or network error as one line a user can act on."""
    if isinstance(exc, BackendError):
        return exc
    where = f"PostgreSQL at {target.address}"
    if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):
        return BackendError(f"{where} refused the login: {exc} (check the user and password)")
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return BackendError(f"{where}: {exc} (create it, or fix the database name in the URL)")
    if isinstance(exc, asyncpg.InsufficientPrivilegeError):
        return BackendError(f"{where}: permission denied ({exc})")
    if isinstance(exc, asyncpg.CannotConnectNowError | asyncpg.TooManyConnectionsError):
        return StoreUnreachable(f"{where} cannot take connections now: {exc}")
    if isinstance(exc, socket.gaierror):
        return BackendError(f"cannot find the PostgreSQL host of {target.shown}: {exc.strerror}")
    unreachable = _unreachable(exc, where)
    if unreachable is not None:
        return unreachable
    if isinstance(exc, asyncpg.PostgresError):
        return BackendError(f"{where}: {exc}")
    return BackendError(f"{where}: {type(exc).__name__}: {exc}")


def _unreachable(exc: BaseException, where: str) -> StoreUnreachable | None:
    """The server down, or the connection to it lost: worth trying again later."""
    if isinstance(exc, ConnectionRefusedError):
        return StoreUnreachable(f"cannot connect to {where}: connection refused (is it running?)")
    if isinstance(exc, TimeoutError):
        return StoreUnreachable(f"{where} did not answer in time")
    if isinstance(exc, asyncpg.InternalClientError):
        # asyncpg's state after the server ended the session under an idle
        # connection (``pg_terminate_backend``, a restart) before the socket's end
        # was read; the connection is as good as lost.
        return StoreUnreachable(f"lost the connection to {where}: the server ended the session")
    if isinstance(exc, OSError | asyncpg.InterfaceError) or (
        isinstance(exc, asyncpg.PostgresError) and is_fatal(exc)
    ):
        return StoreUnreachable(f"lost the connection to {where}: {exc}")
    return None


#: What a store operation may raise from the driver or the network.
DRIVER_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)
#: SQLSTATE classes that end the session: connection exception, operator
#: intervention (``pg_terminate_backend``, shutdown), internal error.
_FATAL_CLASSES = frozenset({"08", "57", "XX"})


def is_fatal(exc: asyncpg.PostgresError) -> bool:
    """Whether the server ended the session with this error (rather than one statement)."""
    return str(getattr(exc, "sqlstate", "") or "")[:2] in _FATAL_CLASSES


def breaks_connection(exc: BaseException) -> bool:
    """Whether a connection that raised ``exc`` mid-use must never be used again.

    A statement error (a unique violation, bad data) leaves the session as it was;
    anything else (the server gone, a timeout, a cancelled task, asyncpg's own
    protocol state after an unsolicited FATAL) leaves it in a state nobody can
    trust. Such a connection is closed at once rather than handed back to the pool:
    asyncpg would otherwise try to cancel the statement over a new connection first
    (which hangs for as long as the network is cut) or lend it out half-failed.
    """
    if isinstance(exc, asyncpg.PostgresError):
        return is_fatal(exc)
    return isinstance(
        exc,
        asyncio.CancelledError
        | TimeoutError
        | OSError
        | asyncpg.InterfaceError
        | asyncpg.InternalClientError,
    )


@contextlib.asynccontextmanager
async def wrapped(target: Target) -> AsyncIterator[None]:
    try:
        yield
    except DRIVER_ERRORS as exc:
        raise translate(exc, target) from exc


def settings(schema: str) -> dict[str, str]:
    """Per-connection settings.

    Statements are planned once per connection (generic plans; a custom plan would
    cost more to make than the hot statements cost to run), often on tables that
    were just created and have no statistics yet. Every query of this store is
    written to be answered by walking one index in order or looking rows up in it,
    so full scans and bitmap scans (which then need a sort) are priced out: a plan
    made while a table held ten rows must not scan or sort it when it holds a million.
    JIT is off: these statements run in well under a millisecond, and the priced-out
    paths make every plan look expensive enough to compile (seconds per statement).
    """
    return {
        "search_path": quote_ident(schema),
        "application_name": "queuectl",
        "plan_cache_mode": "force_generic_plan",
        "enable_seqscan": "off",
        "enable_bitmapscan": "off",
        "jit": "off",
    }


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Hand a connection back to the pool as it is, unless a transaction was left open.

    The pool's default reset (``RESET ALL``, ``UNLISTEN *``, …) costs a round trip
    per use, i.e. one more per worker cycle; this store never changes session state
    (its settings come with the connection, ``LISTEN`` has its own connection, and
    its advisory locks are transaction-scoped).
    """
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def create_pool(target: Target, *, size: int) -> asyncpg.Pool:
    """A pool with no floor: connections open when asked for.

    With a floor, asyncpg reconnects a lost connection in the background and logs
    every failure with a traceback (on stderr, under a command's one ``Error:``
    line, and into workers' logs) for as long as the server is down.
    """
    async with wrapped(target):
        return await asyncpg.create_pool(
            target.dsn,
            min_size=0,
            max_size=size,
            server_settings=settings(target.schema),
            timeout=_CONNECT_TIMEOUT_S,
            command_timeout=_COMMAND_TIMEOUT_S,
            reset=_keep_session,
        )


async def connect(target: Target) -> asyncpg.Connection:
    """One connection outside the pool (the LISTEN connection)."""
    async with wrapped(target):
        return await asyncpg.connect(
            target.dsn,
            server_settings=settings(target.schema),
            timeout=_CONNECT_TIMEOUT_S,
            command_timeout=_COMMAND_TIMEOUT_S,
        )


async def schema_version(conn: asyncpg.Connection, schema: str) -> int | None:
    """The applied version, or ``None`` when the schema holds no version table."""
    table = await conn.fetchval(
        "SELECT to_regclass(format('%I.schema_version', $1::text)) IS NOT NULL", schema
    )
    if not table:
        return None
    return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version"))


async def migrate(
    conn: asyncpg.Connection, target: Target, *, upto: int = SCHEMA_VERSION, create: bool = True
) -> int | None:
    """Create the schema and bring it to ``upto``; returns the version it had (``None``: new).

    ``create=False`` raises ``NoDatabase`` where no queuectl schema exists yet.

    Runs in one transaction under an advisory lock (``pg_advisory_xact_lock``), with
    the version read again once the lock is held.
    """
    schema = target.schema
    version = await schema_version(conn, schema)
    if version is None and not create:
        raise NoDatabase(f"no queuectl schema {schema!r} exists in {target.shown} yet")
    if version is not None:
        _check_not_newer(version, target)
        if version >= upto:
            return version
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key("migrate", schema))
        exists = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema
        )
        if not exists:
            await conn.execute(f"CREATE SCHEMA {quote_ident(schema)}")
        version = await schema_version(conn, schema)
        if version is None:
            await _claim_schema(conn, target)
        _check_not_newer(version or 0, target)
        for number, script in MIGRATIONS:
            if (version or 0) < number <= upto:
                await conn.execute(script)
                await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", number)
        return version


async def _claim_schema(conn: asyncpg.Connection, target: Target) -> None:
    """Put the version table into an empty schema; refuse a schema that holds other tables."""
    others = await conn.fetchval(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'S')",
        target.schema,
    )
    if others:
        raise NotAQueueDatabase(
            f"schema {target.schema!r} of {target.shown} holds tables that are not queuectl's "
            "(refusing to change it); pick another with ?schema=NAME"
        )
    await conn.execute(
        "CREATE TABLE schema_version ("
        " version integer PRIMARY KEY,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )


def _check_not_newer(version: int, target: Target) -> None:
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"schema {target.schema!r} of {target.shown} has version {version}, newer than "
            f"this queuectl understands ({SCHEMA_VERSION}); upgrade queuectl"
        )


class Listener:
    """A dedicated connection that LISTENs on the queue's channel, reopened when lost.

    NOTIFY is delivered to every listening connection of the database after the
    sender commits; a notification sent while this connection was down is lost,
    which the worker's slow poll covers.
    """

    def __init__(self, target: Target, channel: str, callback: Callable[[bytes], None]) -> None:
        self._target = target
        self._channel = channel
        self._callback = callback
        self._conn: asyncpg.Connection | None = None

    def _deliver(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self._callback(payload.encode())

    async def ensure(self) -> None:
        """Connect (again) if the connection is missing or was lost."""
        if self._conn is not None and not self._conn.is_closed():
            return
        conn = await connect(self._target)
        async with wrapped(self._target):
            await conn.add_listener(self._channel, self._deliver)
        self._conn = conn
        # Something may have been enqueued while nobody listened.
        self._callback(wakeup.JOB)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None or conn.is_closed():
            return
        try:
            await asyncio.wait_for(conn.close(), 2.0)
        except DRIVER_ERRORS:
            conn.terminate()
