"""Creates in flight, shared by every server process of a user: who may have made which solve.

A create whose answer is lost is reconciled by listing the newest solves, and a candidate is
only this call's if no other call could have made it. Other calls may live in other processes
(one host per MCP client, all on one API key), so the record of who is creating what on which
page, and which solve ids are already taken, lives in the store: a small SQLite file next to
the x402 ledger (``creates.sqlite3`` in the state dir), or, for replicas on several machines,
the team's PostgreSQL (NONECAP_DATABASE_URL), where the same transactions hold across them:

* **Intent before send.** A call writes its intent (account, page, first-sent time) durably
  before its first POST, so any process reconciling later sees that someone else may own a
  new solve on that page.
* **Claim after.** The solve id a call learns (or adopts) is claimed in one exclusive
  transaction: an id claimed once is never claimed by another call.
* **Slots.** The same rows are the account's solves in flight, as this store knows them:
  open intents (a create under way, or one whose outcome is unknown) and claimed solves not
  yet seen finished. A call takes a slot by writing its intent only while fewer than its
  limit are in flight, in the same exclusive transaction, so processes (or replicas) sharing the key
  never start more solves together than the account runs at once.
* **Expiry.** An intent older than `INTENT_TTL_SECONDS` is ignored (a crashed process must not
  make every later reconciliation ambiguous, or hold a slot, forever); a claimed solve stops
  counting after `LEASE_SECONDS` (the API's 120 s solve budget); rows are pruned after an hour.

Pages and accounts are stored as hashes: the store needs to compare them, not to read them.
It is opened on first use, never at start-up, and each operation is one short transaction
(callers run them in worker threads). Times are each process's own clock (`time.time`):
replicas' clocks must agree to within seconds, as NTP keeps them.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from nonecap_mcp.config import CREATES_FILE, MAX_WAIT_SECONDS, scaled
from nonecap_mcp.store import Store, private
from nonecap_mcp.store.db import Database

INTENT_TTL_SECONDS = MAX_WAIT_SECONDS + scaled(125.0)  # longer than any create call (its wait + slot wait + cancel clean-up)
LEASE_SECONDS = scaled(125.0)  # a claimed solve counts as running at most this long: 120 s budget, plus margin
RETENTION_SECONDS = scaled(3600.0)  # claims outlive every reconciliation window that could meet them
WRITE_LOCK = "creates"  # every write: a slot count and its intent, a claim and its check, see one order

# Minutes of state, not history: a table from before the shared store is rebuilt, not migrated.
# Times are DOUBLE PRECISION: PostgreSQL's REAL would round today's epoch seconds to minutes.
_MIGRATIONS = [[
    "DROP TABLE IF EXISTS creates",
    "CREATE TABLE creates (call_id TEXT PRIMARY KEY, account TEXT NOT NULL, page TEXT NOT NULL, pid INTEGER NOT NULL, "
    "sent_local DOUBLE PRECISION NOT NULL, sent_api DOUBLE PRECISION, solve_id TEXT UNIQUE, "
    "open INTEGER NOT NULL DEFAULT 1, running INTEGER NOT NULL DEFAULT 0)",
    "CREATE INDEX creates_by_page ON creates (account, page, open)",
]]


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
    """Intents and claims in the store (see the module docstring)."""

    def __init__(self, store: Store | None) -> None:
        """`store` None: a private file, visible to this process only (no shared state dir)."""
        self._store = store
        self._db: Database | None = None
        self._lock = threading.Lock()

    def _database(self) -> Database:
        """The store, opened and migrated once. An unusable state dir falls back to a private
        temporary file: creates keep working, but other processes can no longer be seen, which
        is logged (see `Store.open_or_private`)."""

        def migrated(db: Database) -> Database:
            db.migrate("creates", _MIGRATIONS, file_version=True)
            return db

        with self._lock:
            if self._db is None:
                self._db = migrated(private(CREATES_FILE)) if self._store is None else self._store.open_or_private(
                    migrated, "other server processes' creates are invisible to this one")
            return self._db

    # -- the interface ---------------------------------------------------------------

    def record_intent(self, intent: Intent, limit: int) -> bool:
        """Write (durably) that this call is about to POST a create for its page, taking one
        of the account's `limit` slots; False (nothing written) while all are in flight."""
        now = time.time()
        with self._database().transaction(exclusive=WRITE_LOCK) as cur:
            cur.execute("DELETE FROM creates WHERE sent_local < ?", (now - RETENTION_SECONDS,))
            row = cur.execute(
                "SELECT COUNT(*) AS n FROM creates WHERE account = ? AND "
                "((open = 1 AND sent_local >= ?) OR (running = 1 AND sent_local >= ?))",
                (intent.account, now - INTENT_TTL_SECONDS, now - LEASE_SECONDS),
            ).fetchone()
            if row is not None and row["n"] >= limit:
                return False
            cur.execute(
                "INSERT INTO creates (call_id, account, page, pid, sent_local, sent_api) VALUES (?, ?, ?, ?, ?, ?)",
                (intent.call_id, intent.account, intent.page, os.getpid(), intent.sent_local, intent.sent_api),
            )
            return True

    def claim(self, call_id: str, solve_id: str, *, running: bool) -> bool:
        """Make `solve_id` this call's (still holding its slot while `running`); False if
        another call claimed it first."""
        with self._database().transaction(exclusive=WRITE_LOCK) as cur:
            owner = cur.execute("SELECT call_id FROM creates WHERE solve_id = ?", (solve_id,)).fetchone()
            if owner is not None:
                return owner["call_id"] == call_id
            cur.execute(
                "UPDATE creates SET solve_id = ?, open = 0, running = ? WHERE call_id = ?", (solve_id, int(running), call_id)
            )
            return True

    def finished(self, solve_ids: Iterable[str]) -> int:
        """These solves were seen finished: the slots they held are free. Returns how many."""
        ids = list(solve_ids)
        if not ids:
            return 0
        marks = ", ".join("?" for _ in ids)
        with self._database().transaction(exclusive=WRITE_LOCK) as cur:
            return cur.execute(f"UPDATE creates SET running = 0 WHERE running = 1 AND solve_id IN ({marks})", ids).rowcount

    def running_ids(self, account: str) -> list[str]:
        """Claimed solves of the account (any process) that may still be running."""
        with self._database().transaction() as cur:
            rows = cur.execute(
                "SELECT solve_id FROM creates WHERE account = ? AND running = 1 AND sent_local >= ?",
                (account, time.time() - LEASE_SECONDS),
            ).fetchall()
        return [row["solve_id"] for row in rows]

    def release(self, call_id: str) -> None:
        """The call is over and certainly made nothing unclaimed: its intent stops counting."""
        with self._database().transaction(exclusive=WRITE_LOCK) as cur:
            cur.execute("UPDATE creates SET open = 0 WHERE call_id = ?", (call_id,))

    def others_for_page(self, call_id: str, account: str, page: str) -> list[Intent]:
        """Open, unexpired intents of other calls (any process) for the same account and page."""
        with self._database().transaction() as cur:
            rows = cur.execute(
                "SELECT call_id, account, page, sent_local, sent_api FROM creates "
                "WHERE account = ? AND page = ? AND open = 1 AND call_id != ? AND sent_local >= ?",
                (account, page, call_id, time.time() - INTENT_TTL_SECONDS),
            ).fetchall()
        return [Intent(**dict(row)) for row in rows]

    def claimed_ids(self, solve_ids: Iterable[str]) -> set[str]:
        """Which of these solve ids some call has already claimed."""
        ids = list(solve_ids)
        if not ids:
            return set()
        marks = ", ".join("?" for _ in ids)
        with self._database().transaction() as cur:
            rows = cur.execute(f"SELECT solve_id FROM creates WHERE solve_id IN ({marks})", ids).fetchall()
        return {row["solve_id"] for row in rows}
