"""The shared store: every record that more than one process (or replica) must agree on.

`database_for(settings)` is the one place that decides where that is: PostgreSQL when
NONECAP_DATABASE_URL is set (a secret, like the API key: env only, never a flag), else a SQLite
file in the state directory, so a single machine needs nothing installed.
"""

from __future__ import annotations

from nonecap_mcp.config import Settings
from nonecap_mcp.errors import ConfigurationError
from nonecap_mcp.store.db import Database, open_database

DATABASE_URL_ENV = "NONECAP_DATABASE_URL"


def database_for(settings: Settings) -> Database:
    url = settings.env.get(DATABASE_URL_ENV, "").strip()
    if url and not url.startswith(("postgresql://", "postgres://")):
        raise ConfigurationError("invalid_config", f"{DATABASE_URL_ENV} must be a postgresql:// URL.")
    return open_database(url or None, settings.ledger_path().parent)
