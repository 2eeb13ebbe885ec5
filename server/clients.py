"""The team server's clients: who may call it over HTTP, and under which limits.

Each client gets a bearer token shown once at `clients add`; only its SHA-256 is stored, so
the registry file leaks nothing a caller could use. Tokens are 32 random bytes, so a plain
hash (no salt, no KDF) is enough: there is no dictionary to attack. Lookup compares hashes
with `hmac.compare_digest` over every row, so timing says nothing about which prefix matched.

The registry is one small SQLite file in the state directory (0600 in a 0700 directory),
read on every request: a client removed on one terminal is refused at once by a running server.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from nonecap_mcp.errors import ConfigurationError

FILE_NAME = "clients.sqlite3"
TOKEN_PREFIX = "ncm_"
NAME = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS clients (
    name                TEXT PRIMARY KEY,
    token_sha256        TEXT NOT NULL UNIQUE,
    daily_budget_usd    TEXT,
    daily_credit_budget INTEGER,
    read_only           INTEGER NOT NULL DEFAULT 0,
    created_at          TEXT NOT NULL
)
"""


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


class ClientRegistry:
    """Clients of the HTTP server, in `<state dir>/clients.sqlite3`."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / FILE_NAME

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self.path.exists():
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        conn = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)
        with closing(conn):
            conn.row_factory = sqlite3.Row
            conn.execute(_SCHEMA)
            yield conn

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
        with self._connect() as conn:
            try:
                conn.execute(
                    "INSERT INTO clients VALUES (?, ?, ?, ?, ?, ?)",
                    (name, _digest(token), None if daily_budget_usd is None else str(daily_budget_usd),
                     daily_credit_budget, int(read_only), stamp),
                )
            except sqlite3.IntegrityError:
                raise ConfigurationError("invalid_config", f"A client named {name} exists; remove it first.") from None
        return token

    def remove(self, name: str) -> bool:
        """Forget a client; its token stops working on the next request."""
        with self._connect() as conn:
            return conn.execute("DELETE FROM clients WHERE name = ?", (name,)).rowcount > 0

    def list(self) -> list[Client]:
        with self._connect() as conn:
            return [self._client(row) for row in conn.execute("SELECT * FROM clients ORDER BY name")]

    def verify(self, token: str) -> Client | None:
        """The client holding `token`, or None."""
        wanted = _digest(token)
        match = None
        with self._connect() as conn:
            for row in conn.execute("SELECT * FROM clients"):
                if hmac.compare_digest(row["token_sha256"], wanted):
                    match = row
        return None if match is None else self._client(match)

    @staticmethod
    def _client(row: sqlite3.Row) -> Client:
        budget = row["daily_budget_usd"]
        return Client(name=row["name"], daily_budget_usd=None if budget is None else Decimal(budget),
                      daily_credit_budget=row["daily_credit_budget"], read_only=bool(row["read_only"]),
                      created_at=row["created_at"])
