"""Counted limits on starting solves: credits per UTC day and solves per minute.

Both are checked and recorded in one exclusive transaction of the shared store, so processes
on one machine (SQLite) or replicas of a team server (PostgreSQL) can never together pass a
limit. A credit is counted when a credits solve is about to be sent, and given back when the
create proves nothing was made, or when the solve is seen failed, cancelled or expired (the API
refunds those). The per-minute cap counts starts on either rail: it exists to stop a runaway
agent loop, whatever it pays with.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from nonecap_mcp import guidance as g
from nonecap_mcp.errors import APIError, NoneCapError, ServerError
from nonecap_mcp.store.db import Database

_MIGRATIONS = [[
    "CREATE TABLE solve_starts (id {autoid}, rail TEXT NOT NULL, client TEXT, started DOUBLE PRECISION NOT NULL, "
    "utc_day TEXT NOT NULL, solve_id TEXT, credit_state TEXT)",
    "CREATE INDEX solve_starts_by_time ON solve_starts (started)",
    "CREATE INDEX solve_starts_by_day ON solve_starts (utc_day, credit_state)",
    "CREATE INDEX solve_starts_by_solve ON solve_starts (solve_id)",
]]
COUNTED = ("reserved", "charged")


REFUNDED_STATUSES = frozenset({"failed", "cancelled", "expired"})  # the API gives the credit back


def nothing_created(exc: BaseException) -> bool:
    """Whether a failed create proves no solve was made: refused locally, or a 4xx answer from the API.

    A 5xx, a lost connection or an unknown outcome may have made one, so its credit stays counted.
    """
    if isinstance(exc, APIError):
        return not isinstance(exc, ServerError) and exc.http_status != 409
    return isinstance(exc, NoneCapError) and exc.code not in ("outcome_unknown", "connection_error")


class QuotaExceeded(NoneCapError):
    """A counted limit would be passed; nothing was sent."""


class Quota:
    """The operator's counted limits (None = no limit) over the shared store."""

    def __init__(self, db: Database, *, daily_credit_budget: int | None = None, max_solves_per_minute: int | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self.daily_credit_budget = daily_credit_budget
        self.max_solves_per_minute = max_solves_per_minute
        self._clock = clock
        db.migrate("quota", _MIGRATIONS)

    def _day(self, now: float) -> str:
        return datetime.fromtimestamp(now, UTC).date().isoformat()

    def admit(self, *, rail: str, client: str | None = None, client_credit_budget: int | None = None) -> int:
        """Count one solve about to start; returns its ticket (for `attach`/`refund`).

        Raises QuotaExceeded, having recorded nothing, when the per-minute cap or a credit
        budget (the server's or this client's) would be passed.
        """
        now = self._clock()
        day = self._day(now)
        with self._db.transaction(exclusive="quota") as cur:
            if self.max_solves_per_minute is not None:
                recent = cur.execute("SELECT COUNT(*) AS n FROM solve_starts WHERE started > ?", (now - 60,)).fetchone()
                if recent["n"] >= self.max_solves_per_minute:
                    raise QuotaExceeded("operator_rate_capped", f"{self.max_solves_per_minute} solves already started in the "
                                        "last minute (NONECAP_MAX_SOLVES_PER_MINUTE); nothing was sent.",
                                        guidance=g.LOCAL["operator_rate_capped"].model_copy(update={"retry_after_seconds": 60}))
            if rail == "credits":
                for limit, owner in ((self.daily_credit_budget, None), (client_credit_budget, client)):
                    if limit is None:
                        continue
                    sql = "SELECT COUNT(*) AS n FROM solve_starts WHERE utc_day = ? AND credit_state IN (?, ?)"
                    params: tuple[object, ...] = (day, *COUNTED)
                    if owner is not None:
                        sql, params = sql + " AND client = ?", (*params, owner)
                    if cur.execute(sql, params).fetchone()["n"] + 1 > limit:
                        whose = f"client {owner}'s" if owner else "the server's"
                        raise QuotaExceeded("credit_budget_exceeded", f"Today's (UTC) credits are used up: {whose} daily "
                                            f"credit budget is {limit}; nothing was sent.")
            row = cur.execute("INSERT INTO solve_starts (rail, client, started, utc_day, credit_state) "
                              "VALUES (?, ?, ?, ?, ?) RETURNING id",
                              (rail, client, now, day, "reserved" if rail == "credits" else None)).fetchone()
        return int(row["id"])

    def attach(self, ticket: int, solve_id: str) -> None:
        """The solve a ticket paid for: its credit is now charged until the solve is seen refunded."""
        with self._db.transaction() as cur:
            cur.execute("UPDATE solve_starts SET solve_id = ?, credit_state = CASE WHEN credit_state IS NULL THEN NULL "
                        "ELSE 'charged' END WHERE id = ?", (solve_id, ticket))

    def refund(self, *, ticket: int | None = None, solve_id: str | None = None) -> None:
        """Give a credit back: nothing was created, or the API refunded the solve."""
        column, value = ("id", ticket) if ticket is not None else ("solve_id", solve_id)
        with self._db.transaction() as cur:
            cur.execute(f"UPDATE solve_starts SET credit_state = 'refunded' WHERE {column} = ? "
                        "AND credit_state IS NOT NULL", (value,))

    def clients_of(self, solve_ids: list[str]) -> dict[str, str]:
        """Which team-server client started each of these solves (those started by one)."""
        if not solve_ids:
            return {}
        marks = ", ".join("?" for _ in solve_ids)
        with self._db.transaction() as cur:
            rows = cur.execute(f"SELECT solve_id, client FROM solve_starts WHERE client IS NOT NULL AND solve_id IN ({marks})",
                               tuple(solve_ids)).fetchall()
        return {row["solve_id"]: row["client"] for row in rows}

    def credits_used_today(self, client: str | None = None) -> int:
        sql = "SELECT COUNT(*) AS n FROM solve_starts WHERE utc_day = ? AND credit_state IN (?, ?)"
        params: tuple[object, ...] = (self._day(self._clock()), *COUNTED)
        if client is not None:
            sql, params = sql + " AND client = ?", (*params, client)
        with self._db.transaction() as cur:
            return int(cur.execute(sql, params).fetchone()["n"])
