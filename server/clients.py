"""The team server's clients: who may call it over HTTP, and under which limits.

Each client gets a bearer token shown once at `clients add`; only its SHA-256 is stored, so
the registry file leaks nothing a caller could use. Tokens are 32 random bytes, so a plain
hash (no salt, no KDF) is enough: there is no dictionary to attack. Lookup compares hashes
with `hmac.compare_digest` over every row, so timing says nothing about which prefix matched.

The registry lives in the shared store (the SQLite file in the state directory, or PostgreSQL
for replicas) and is read on every request: a client removed on one terminal is refused at
once by every running server.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from nonecap_mcp.errors import ConfigurationError
from nonecap_mcp.store.db import Database, Row

TOKEN_PREFIX = "ncm_"
NAME = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")


@dataclass(frozen=True)
class Client:
    """One registered client and its own limits (None = only the server's global limits)."""

    name: str
    daily_budget_usd: Decimal | None
    daily_credit_budget: int | None
    read_only: bool
    created_at: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


_MIGRATIONS = [[
    "CREATE TABLE clients (name TEXT PRIMARY KEY, token_sha256 TEXT NOT NULL UNIQUE, daily_budget_usd TEXT, "
    "daily_credit_budget INTEGER, read_only INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL)",
]]


class ClientRegistry:
    """Clients of the HTTP server, in the shared store (SQLite file or PostgreSQL)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        db.migrate("clients", _MIGRATIONS)

    def add(self, name: str, *, daily_budget_usd: Decimal | None = None, daily_credit_budget: int | None = None,
            read_only: bool = False) -> str:
        """Register `name` and return its new token (the only time it exists in clear)."""
        if not NAME.match(name):
            raise ConfigurationError("invalid_config", "A client name is 1-64 letters, digits, '.', '_' or '-'.")
        if daily_budget_usd is not None and not (daily_budget_usd.is_finite() and daily_budget_usd >= 0):
            raise ConfigurationError("invalid_config", "--daily-budget-usd must be a non-negative amount.")
        if daily_credit_budget is not None and daily_credit_budget < 0:
            raise ConfigurationError("invalid_config", "--daily-credit-budget must be a non-negative whole number.")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        with self._db.transaction(exclusive="clients") as cur:
            if cur.execute("SELECT 1 FROM clients WHERE name = ?", (name,)).fetchone():
                raise ConfigurationError("invalid_config", f"A client named {name} exists; remove it first.")
            cur.execute(
                "INSERT INTO clients (name, token_sha256, daily_budget_usd, daily_credit_budget, read_only, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (name, _digest(token), None if daily_budget_usd is None else str(daily_budget_usd),
                 daily_credit_budget, int(read_only), stamp),
            )
        return token

    def remove(self, name: str) -> bool:
        """Forget a client; its token stops working on the next request."""
        with self._db.transaction() as cur:
            return cur.execute("DELETE FROM clients WHERE name = ?", (name,)).rowcount > 0

    def ping(self) -> None:
        """Raise if the store is unreachable (the server's readiness)."""
        self._db.ping()

    def list(self) -> list[Client]:
        with self._db.transaction() as cur:
            return [self._client(row) for row in cur.execute("SELECT * FROM clients ORDER BY name").fetchall()]

    def verify(self, token: str) -> Client | None:
        """The client holding `token`, or None."""
        wanted = _digest(token)
        match = None
        with self._db.transaction() as cur:
            for row in cur.execute("SELECT * FROM clients").fetchall():
                if hmac.compare_digest(row["token_sha256"], wanted):
                    match = row
        return None if match is None else self._client(match)

    @staticmethod
    def _client(row: Row) -> Client:
        budget = row["daily_budget_usd"]
        return Client(name=row["name"], daily_budget_usd=None if budget is None else Decimal(budget),
                      daily_credit_budget=row["daily_credit_budget"], read_only=bool(row["read_only"]),
                      created_at=row["created_at"])
