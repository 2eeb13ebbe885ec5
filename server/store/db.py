"""One SQL database under every shared record: SQLite on one machine, PostgreSQL for a team.

Queries are written once, with `?` placeholders, and run on either engine. What differs is
kept here: how a connection is made, how an *exclusive* transaction is taken (the one that
makes a budget check and its insert atomic across threads, processes and replicas), and how
the schema is migrated when several processes start at once.

* SQLite: a short-lived connection per transaction (connections must not cross threads),
  WAL, `synchronous=FULL`; `BEGIN IMMEDIATE` takes the write lock up front, which serialises
  every writer of the file, so "exclusive" needs nothing more.
* PostgreSQL (psycopg 3, the `team` extra, imported only when used): a small bounded pool of
  connections (POOL_SIZE per process, so replicas times worker threads never exhaust the
  server's max_connections; a thread beyond it waits its turn); an exclusive transaction also takes `pg_advisory_xact_lock` on a key named by
  the caller, so replicas checking the same budget queue behind each other while unrelated
  writes do not.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sqlite3
import stat
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any, Protocol

BUSY_TIMEOUT_SECONDS = 5.0
POOL_SIZE = 4
Row = Mapping[str, Any]


class Cursor(Protocol):
    """What a transaction hands its caller: `?`-placeholder SQL in, mapping rows out."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...
    def fetchone(self) -> Row | None: ...
    def fetchall(self) -> list[Row]: ...
    @property
    def rowcount(self) -> int: ...


def _lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for a lock name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class Database:
    """Base of both engines: transactions and versioned migrations."""

    dialect: str
    autoid: str  # an auto-numbered integer primary key, as the engine spells it

    @contextmanager
    def transaction(self, *, exclusive: str | None = None) -> Iterator[Cursor]:  # pragma: no cover - abstract
        raise NotImplementedError
        yield

    def migrate(self, component: str, steps: Sequence[Sequence[str]], *, file_version: bool = False) -> int:
        """Bring `component`'s tables to version len(steps); safe when processes start together.

        Each step is a list of statements; step i takes version i to i+1. `{autoid}` in a
        statement is the engine's auto-numbered primary key. A database written by a newer
        version (more steps than we know) is refused rather than misread.

        `file_version`: the component owns its SQLite file, whose `user_version` releases
        before this store kept its version in (the x402 ledger, the create log): an existing
        file is adopted at that version, and it is kept in step so those releases still refuse
        a newer file. PostgreSQL has no such history and ignores it.
        """
        with self.transaction(exclusive="migrate") as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
            row = cur.execute("SELECT version FROM schema_versions WHERE component = ?", (component,)).fetchone()
            stored = int(row["version"]) if row else None
            version = stored or 0
            if file_version:
                version = max(version, self._file_version(cur))
            if version > len(steps):
                from nonecap_mcp.errors import ConfigurationError

                raise ConfigurationError("local_state_error", f"The {component} tables were written by a newer "
                                         f"nonecap-mcp (schema {version}, this one knows {len(steps)}); upgrade it.")
            for statements in steps[version:]:
                for statement in statements:
                    cur.execute(statement.replace("{autoid}", self.autoid))
            if stored != len(steps):
                cur.execute("DELETE FROM schema_versions WHERE component = ?", (component,))
                cur.execute("INSERT INTO schema_versions (component, version) VALUES (?, ?)", (component, len(steps)))
            if file_version:
                self._set_file_version(cur, len(steps))
        return len(steps)

    def _file_version(self, cur: Cursor) -> int:
        """The version a pre-store release wrote in the file itself (0: none)."""
        return 0

    def _set_file_version(self, cur: Cursor, version: int) -> None:
        """Record the version where pre-store releases look for it."""

    def describe(self) -> str:  # pragma: no cover - abstract
        """Where the store is, for `doctor`: never a password."""
        raise NotImplementedError

    def ping(self) -> None:
        """Raise if the database cannot be reached (readiness)."""
        with self.transaction() as cur:
            cur.execute("SELECT 1").fetchone()


class SQLiteDatabase(Database):
    """A SQLite file, 0600 in a 0700 directory, created before sqlite3 can make it world-readable."""

    dialect = "sqlite"
    autoid = "INTEGER PRIMARY KEY"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            if stat.S_IMODE(self.path.stat().st_mode) & 0o077:
                os.chmod(self.path, 0o600)
        with self._connect() as conn:
            self._use_wal(conn)

    def describe(self) -> str:
        return f"SQLite {self.path}"

    @staticmethod
    def _use_wal(conn: sqlite3.Connection) -> None:
        """WAL is persistent in the file; SQLite does not apply busy_timeout to this switch, so
        processes opening a new file at the same moment get "database is locked": retry."""
        deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
        with closing(conn):
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
            conn.execute("PRAGMA synchronous = FULL")
            yield conn

    @contextmanager
    def transaction(self, *, exclusive: str | None = None) -> Iterator[Cursor]:
        with self._connect() as conn, conn:
            conn.execute("BEGIN IMMEDIATE" if exclusive else "BEGIN")
            yield conn.cursor()  # type: ignore[misc]

    def _file_version(self, cur: Cursor) -> int:
        return int(cur.execute("PRAGMA user_version").fetchone()[0])  # type: ignore[index]

    def _set_file_version(self, cur: Cursor, version: int) -> None:
        cur.execute(f"PRAGMA user_version = {int(version)}")


class _PgCursor:
    """psycopg's cursor with `?` placeholders, like sqlite3's."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _PgCursor:
        self._cursor.execute(sql.replace("%", "%%").replace("?", "%s"), tuple(params))
        return self

    def fetchone(self) -> Row | None:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Row]:
        return self._cursor.fetchall()

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount


class PostgresDatabase(Database):
    """A PostgreSQL database shared by every replica (NONECAP_DATABASE_URL)."""

    dialect = "postgres"
    autoid = "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"

    def __init__(self, url: str, pool_size: int = POOL_SIZE) -> None:
        try:
            import psycopg  # the team extra; only team servers get here
        except ImportError:
            from nonecap_mcp.errors import ConfigurationError

            raise ConfigurationError("invalid_config", "NONECAP_DATABASE_URL names PostgreSQL, but its driver is not "
                                     "installed: install nonecap-mcp[team] (psycopg), or unset it for the local store.") from None
        self._psycopg = psycopg
        self._url = url
        self._slots = threading.BoundedSemaphore(pool_size)
        self._idle: list[Any] = []
        self._idle_lock = threading.Lock()

    def describe(self) -> str:
        """host:port/database, parsed without psycopg; the user and password are left out."""
        from urllib.parse import urlsplit

        url = urlsplit(self._url)
        port = f":{url.port}" if url.port else ""
        return f"PostgreSQL {url.hostname or 'localhost'}{port}/{url.path.lstrip('/') or '(default database)'}"

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        """A pooled connection for one transaction; at most pool_size are open at once."""
        with self._slots:
            with self._idle_lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None or conn.closed or conn.broken:
                from psycopg.rows import dict_row

                conn = self._psycopg.connect(self._url, row_factory=dict_row, connect_timeout=5, autocommit=True)
            try:
                yield conn
            finally:
                if not (conn.closed or conn.broken):
                    with self._idle_lock:
                        self._idle.append(conn)

    @contextmanager
    def transaction(self, *, exclusive: str | None = None) -> Iterator[Cursor]:
        with self._connection() as conn:
            try:
                with conn.transaction(), conn.cursor() as cursor:
                    if exclusive:
                        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(exclusive),))
                    yield _PgCursor(cursor)
            except self._psycopg.OperationalError:
                conn.close()  # a broken connection is not returned to the pool
                raise


def store_errors() -> tuple[type[Exception], ...]:
    """What a failing store raises: this machine's (OSError, SQLite's), and psycopg's once a
    PostgreSQL store has loaded it (never imported here for the asking)."""
    psycopg = sys.modules.get("psycopg")
    return (OSError, sqlite3.Error, *((psycopg.Error,) if psycopg is not None else ()))


@functools.cache
def shared_postgres(url: str) -> PostgresDatabase:
    """One handle (one pool) per URL and process, however many kinds of record live there."""
    return PostgresDatabase(url)
