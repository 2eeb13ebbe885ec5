"""Creates in flight, shared by every server process of a user: who may have made which solve.

A create whose answer is lost is reconciled by listing the newest solves, and a candidate is
only this call's if no other call could have made it. Other calls may live in other processes
(one host per MCP client, all on one API key), so the record of who is creating what on which
page, and which solve ids are already taken, lives in a small SQLite file next to the x402
ledger (``creates.sqlite3`` in the state dir):

* **Intent before send.** A call writes its intent (account, page, first-sent time) durably
  before its first POST, so any process reconciling later sees that someone else may own a
  new solve on that page.
* **Claim after.** The solve id a call learns (or adopts) is claimed in one write-locked
  transaction: an id claimed once is never claimed by another call.
* **Slots.** The same rows are the account's solves in flight, as this machine knows them:
  open intents (a create under way, or one whose outcome is unknown) and claimed solves not
  yet seen finished. A call takes a slot by writing its intent only while fewer than its
  limit are in flight, in the same write-locked transaction, so processes sharing the key
  never start more solves together than the account runs at once.
* **Expiry.** An intent older than `INTENT_TTL_SECONDS` is ignored (a crashed process must not
  make every later reconciliation ambiguous, or hold a slot, forever); a claimed solve stops
  counting after `LEASE_SECONDS` (the API's 120 s solve budget); rows are pruned after an hour.

Pages and accounts are stored as hashes: the file needs to compare them, not to read them.
The interface is narrow (record_intent, claim, release, finished, others_for_page,
claimed_ids, running_ids) so
another backend (PostgreSQL for hosts on several machines) can sit behind it. The file is
opened on first use, never at start-up, and each operation uses its own short-lived
connection (callers run them in worker threads).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import stat
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from nonecap_mcp.x402.ledger import Ledger

log = logging.getLogger("nonecap_mcp.creates")

FILE_NAME = "creates.sqlite3"
INTENT_TTL_SECONDS = 180.0  # longer than any create call (55 s wait + slot wait + cancel clean-up)
LEASE_SECONDS = 125.0  # a claimed solve counts as running at most this long: 120 s budget, plus margin
RETENTION_SECONDS = 3600.0  # claims outlive every reconciliation window that could meet them
BUSY_TIMEOUT_SECONDS = 5.0

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE creates (
    call_id     TEXT PRIMARY KEY,
    account     TEXT NOT NULL,
    page        TEXT NOT NULL,
    pid         INTEGER NOT NULL,
    sent_local  REAL NOT NULL,
    sent_api    REAL,
    solve_id    TEXT UNIQUE,
    open        INTEGER NOT NULL DEFAULT 1,
    running     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX creates_by_page ON creates (account, page, open)
"""


def fingerprint(*parts: str) -> str:
    """A stable hash of an account key or a page: comparable, not readable."""
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Intent:
    """One create call's claim to a page: it may have made a new solve there since `sent_local`.

    `sent_api` is the same moment on the API's clock (Date headers), when the call knew it.
    """

    call_id: str
    account: str
    page: str
    sent_local: float
    sent_api: float | None = None


class CreateLog:
    """Intents and claims in one SQLite file (see the module docstring)."""

    def __init__(self, path: Path | None) -> None:
        """`path` None: a private file, visible to this process only (no shared state dir)."""
        self.path = Path(path) if path is not None else None
        self._ready = False
        self._lock = threading.Lock()

    # -- storage ---------------------------------------------------------------------

    def _open(self) -> None:
        """Create the file (0600 in a 0700 dir) and the schema, once. An unusable state dir
        falls back to a private temporary file: creates keep working, but other processes
        can no longer be seen, which is logged."""
        with self._lock:
            if self._ready:
                return
            try:
                if self.path is not None:
                    self._create(self.path)
            except (OSError, sqlite3.Error) as exc:
                log.warning(
                    "cannot use %s (%s); other server processes' creates are invisible to this one",
                    self.path, type(exc).__name__,
                )
                self.path = None
            if self.path is None:
                self.path = Path(tempfile.mkdtemp(prefix="nonecap-creates-")) / FILE_NAME
                self._create(self.path)
            self._ready = True

    def _create(self, path: Path) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            if stat.S_IMODE(path.stat().st_mode) & 0o077:
                os.chmod(path, 0o600)
        with self._connect(path) as conn:
            Ledger._use_wal(conn)  # the same WAL switch as the ledger next to it
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise sqlite3.DatabaseError(f"{path} was written by a newer nonecap-mcp")
                if version < SCHEMA_VERSION:  # minutes of state, not history: rebuilt, not migrated
                    conn.execute("DROP TABLE IF EXISTS creates")
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def _connect(self, path: Path | None = None) -> Iterator[sqlite3.Connection]:
        """A fresh autocommit connection (transactions only where BEGIN IMMEDIATE says)."""
        if path is None:
            self._open()
            assert self.path is not None
            path = self.path
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
        with closing(conn):
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
            conn.execute("PRAGMA synchronous = FULL")  # an intent must survive a crash
            yield conn

    # -- the interface ---------------------------------------------------------------

    def record_intent(self, intent: Intent, limit: int) -> bool:
        """Write (durably) that this call is about to POST a create for its page, taking one
        of the account's `limit` slots; False (nothing written) while all are in flight."""
        now = time.time()
        with self._connect() as conn, conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("DELETE FROM creates WHERE sent_local < ?", (now - RETENTION_SECONDS,))
            (in_flight,) = conn.execute(
                "SELECT COUNT(*) FROM creates WHERE account = ? AND "
                "((open = 1 AND sent_local >= ?) OR (running = 1 AND sent_local >= ?))",
                (intent.account, now - INTENT_TTL_SECONDS, now - LEASE_SECONDS),
            ).fetchone()
            if in_flight >= limit:
                return False
            conn.execute(
                "INSERT INTO creates (call_id, account, page, pid, sent_local, sent_api) VALUES (?, ?, ?, ?, ?, ?)",
                (intent.call_id, intent.account, intent.page, os.getpid(), intent.sent_local, intent.sent_api),
            )
            return True

    def claim(self, call_id: str, solve_id: str, *, running: bool) -> bool:
        """Make `solve_id` this call's (still holding its slot while `running`); False if
        another call claimed it first."""
        with self._connect() as conn, conn:
            conn.execute("BEGIN IMMEDIATE")
            owner = conn.execute("SELECT call_id FROM creates WHERE solve_id = ?", (solve_id,)).fetchone()
            if owner is not None:
                return owner[0] == call_id
            conn.execute(
                "UPDATE creates SET solve_id = ?, open = 0, running = ? WHERE call_id = ?", (solve_id, int(running), call_id)
            )
            return True

    def finished(self, solve_ids: Iterable[str]) -> int:
        """These solves were seen finished: the slots they held are free. Returns how many."""
        ids = list(solve_ids)
        with self._connect() as conn, conn:
            conn.execute("BEGIN IMMEDIATE")
            marks = ", ".join("?" for _ in ids)
            return conn.execute(f"UPDATE creates SET running = 0 WHERE running = 1 AND solve_id IN ({marks})", ids).rowcount

    def running_ids(self, account: str) -> list[str]:
        """Claimed solves of the account (any process) that may still be running."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT solve_id FROM creates WHERE account = ? AND running = 1 AND sent_local >= ?",
                (account, time.time() - LEASE_SECONDS),
            ).fetchall()
        return [row[0] for row in rows]

    def release(self, call_id: str) -> None:
        """The call is over and certainly made nothing unclaimed: its intent stops counting."""
        with self._connect() as conn, conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("UPDATE creates SET open = 0 WHERE call_id = ?", (call_id,))

    def others_for_page(self, call_id: str, account: str, page: str) -> list[Intent]:
        """Open, unexpired intents of other calls (any process) for the same account and page."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT call_id, account, page, sent_local, sent_api FROM creates "
                "WHERE account = ? AND page = ? AND open = 1 AND call_id != ? AND sent_local >= ?",
                (account, page, call_id, time.time() - INTENT_TTL_SECONDS),
            ).fetchall()
        return [Intent(*row) for row in rows]

    def claimed_ids(self, solve_ids: Iterable[str]) -> set[str]:
        """Which of these solve ids some call has already claimed."""
        ids = list(solve_ids)
        if not ids:
            return set()
        with self._connect() as conn:
            marks = ", ".join("?" for _ in ids)
            rows = conn.execute(f"SELECT solve_id FROM creates WHERE solve_id IN ({marks})", ids).fetchall()
        return {row[0] for row in rows}

