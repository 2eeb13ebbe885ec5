"""The shared store: every record that more than one process (or replica) must agree on.

`store_for(settings, file_name)` is the one place that decides where a kind of record lives:
PostgreSQL when NONECAP_DATABASE_URL is set (a secret, like the API key: env only, never a
flag), else its SQLite file in the state directory, so a single machine needs nothing installed.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from nonecap_mcp.config import Settings
from nonecap_mcp.errors import ConfigurationError

if TYPE_CHECKING:  # the drivers load when a store is first opened, not when the server starts
    from nonecap_mcp.store.db import Database, SQLiteDatabase

log = logging.getLogger("nonecap_mcp.store")
T = TypeVar("T")

DATABASE_URL_ENV = "NONECAP_DATABASE_URL"
STATE_FILE = "state.sqlite3"  # clients and the operator's counted limits


@dataclass(frozen=True)
class Store:
    """Where one kind of record lives, opened only when first used (start-up touches no state):
    the shared PostgreSQL when `url` is set, else the SQLite file at `path`."""

    path: Path
    url: str | None = None

    def open(self) -> Database:
        from nonecap_mcp.store.db import SQLiteDatabase, shared_postgres

        if not self.url:
            return SQLiteDatabase(self.path)
        if not self.url.startswith(("postgresql://", "postgres://")):
            raise ConfigurationError("invalid_config", f"{DATABASE_URL_ENV} must be a postgresql:// URL.")
        return shared_postgres(self.url)

    def open_or_private(self, use: Callable[[Database], T], lost: str) -> T:
        """`use(database)`; when this machine cannot use the SQLite file (an unusable state dir),
        `use` a private temporary file instead and log what is `lost` by it. Never for
        PostgreSQL: replicas falling back quietly would stop seeing each other."""
        import sqlite3

        try:
            return use(self.open())
        except (OSError, sqlite3.Error) as exc:
            if self.url:
                raise
            log.warning("cannot use %s (%s); %s", self.path, type(exc).__name__, lost)
        return use(private(self.path.name))

    def exists(self) -> bool:
        """Whether anything was ever recorded here (a shared database always may have)."""
        return self.url is not None or self.path.exists()


def store_for(settings: Settings, file_name: str = STATE_FILE) -> Store:
    """The configured shared database, else `file_name` in the state directory."""
    return Store(settings.ledger_path().with_name(file_name), settings.env.get(DATABASE_URL_ENV, "").strip() or None)


def database_for(settings: Settings) -> Database:
    """The store of clients and counted limits."""
    return store_for(settings).open()


def private(file_name: str) -> SQLiteDatabase:
    """A SQLite file of this process's own, in a fresh temporary directory."""
    from nonecap_mcp.store.db import SQLiteDatabase

    return SQLiteDatabase(Path(tempfile.mkdtemp(prefix="nonecap-")) / file_name)
