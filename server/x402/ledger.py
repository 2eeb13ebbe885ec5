"""The local x402 ledger: every payment authorization and every paid solve, on disk.

Signing an EIP-3009 authorization hands out a bearer cheque, so the ledger is the
safety record, not a cache:

* **Write before send.** Each authorization is recorded (state ``signed``) before it
  leaves the process, then its outcome and receipt. After a crash or a timeout the
  nonce and ``valid_before`` are on disk, so the same header can be re-sent or checked
  on chain instead of signing (and maybe paying) twice.
* **One daily budget for every process.** Several MCP hosts can each run a server on
  the same machine, and a team runs replicas. The budget check and the insert happen in
  one exclusive transaction of the store (`store.db`: SQLite's write lock taken up front,
  or a PostgreSQL advisory lock), so two reservations can never both see the same "spent
  so far", whether they come from threads, processes or replicas.
* **Spent means possibly spent.** ``signed``, ``sent``, ``settled`` and ``unknown``
  all count against the budget; only ``failed`` (the rail said in its own words that it
  did not settle, or the chain shows the authorization expired unused) gives the money
  back, once the authorization has expired. Anything else could let a flaky network
  overspend. ``unknown`` and stale in-flight payments are resolved from the chain
  (EIP-3009 ``authorizationState``), never guessed.
* **Two writes per paid solve.** The reservation writes the payment and its solve in one
  transaction, and so does the outcome, so a crash never leaves one without the other.
* **Free re-fetch.** Solve records keep the rail's ``task_id`` and ``result_token`` so
  a result can be fetched again (``getTaskResult`` is free) after a cancelled call.

Never stored here: private keys, API keys. On one machine the ledger is its own SQLite
file (``ledger.sqlite3``, 0600 in a 0700 directory, as `store.db` makes it); with
NONECAP_DATABASE_URL it lives in the team's PostgreSQL beside the other shared records.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import astuple, dataclass, fields
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from nonecap_mcp import guidance as g
from nonecap_mcp.errors import ConfigurationError, NoneCapError
from nonecap_mcp.ids import X402_PREFIX
from nonecap_mcp.store import Store
from nonecap_mcp.store.db import Cursor, Database, SQLiteDatabase
from nonecap_mcp.x402.networks import atomic_to_usd

log = logging.getLogger("nonecap_mcp.x402")

__all__ = [
    "BUDGET_ENV",
    "COUNTED_STATES",
    "PAYMENT_STATES",
    "BudgetExceeded",
    "Ledger",
    "X402Solve",
    "new_x402_id",
    "open_ledger",
]

BUDGET_ENV = "NONECAP_DAILY_BUDGET_USD"

PAYMENT_STATES = ("signed", "sent", "settled", "failed", "unknown")
# These may have moved money. A "failed" payment counts too while its authorization is
# still valid: the rail holds a signed bearer authorization until valid_before, and a
# buggy or hostile rail could still settle it.
COUNTED_STATES = ("signed", "sent", "settled", "unknown")
# A payment only moves forward: signed -> sent -> unknown -> settled | failed. This
# version writes "signed" at the reservation and the outcome next ("sent" comes from
# older ledgers; both mean in flight). "unknown" and stale in-flight payments are
# resolved by authorizationState on chain; the two outcomes are final, so a late
# "unknown" cannot overwrite a settled receipt.
_RANK = {"signed": 0, "sent": 1, "unknown": 2, "settled": 3, "failed": 3}

# Versions 1 and 2 kept their number in the SQLite file's user_version (adopted by `migrate`).
# Amounts and times are BIGINT: PostgreSQL's INTEGER is 32-bit (SQLite reads both the same).
_MIGRATIONS = [
    [
        """CREATE TABLE payments (
            nonce          TEXT PRIMARY KEY,
            solve_id       TEXT NOT NULL,
            amount_atomic  BIGINT NOT NULL CHECK (amount_atomic > 0),
            pay_to         TEXT NOT NULL,
            network        TEXT NOT NULL,
            asset          TEXT NOT NULL,
            task_type      TEXT NOT NULL,
            valid_before   BIGINT NOT NULL,
            state          TEXT NOT NULL CHECK (state IN ('signed', 'sent', 'settled', 'failed', 'unknown')),
            tx_hash        TEXT,
            error          TEXT,
            utc_day        TEXT NOT NULL,
            created_at     TEXT NOT NULL,
            updated_at     TEXT NOT NULL
        )""",
        "CREATE INDEX payments_by_day ON payments (utc_day, state)",
        "CREATE INDEX payments_by_solve ON payments (solve_id)",
        """CREATE TABLE solves (
            id             TEXT PRIMARY KEY,
            type           TEXT NOT NULL,
            sitekey        TEXT NOT NULL,
            url            TEXT NOT NULL,
            status         TEXT NOT NULL,
            task_id        TEXT,
            result_token   TEXT,
            error_code     TEXT,
            error_message  TEXT,
            cost_usd       TEXT,
            settlement_tx  TEXT,
            created_at     TEXT NOT NULL,
            finished_at    TEXT
        )""",
        "CREATE INDEX solves_by_status ON solves (status, id)",
    ],
    ["ALTER TABLE payments ADD COLUMN payer TEXT"],  # authorizationState needs it (older rows use the wallet's)
    ["ALTER TABLE payments ADD COLUMN client TEXT"],  # the team-server client that paid (its own daily budget)
]
WRITE_LOCK = "x402-ledger"  # every ledger write, so a budget check and its insert see one order


# --- ids ---------------------------------------------------------------------

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_id_lock = threading.Lock()
_last_ulid = 0


def new_x402_id() -> str:
    """A new solve id: ``x402_`` + a 26-character Crockford ULID.

    ULIDs sort by creation time, so the ledger lists newest first by id alone and
    a cursor is just an id. Within this process ids are strictly increasing even
    for calls in the same millisecond or across a backwards clock step: when the
    fresh value is not above the last one, the last one plus one is used.
    """
    global _last_ulid
    fresh = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    with _id_lock:
        _last_ulid = fresh if fresh > _last_ulid else _last_ulid + 1
        value = _last_ulid
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return X402_PREFIX + "".join(reversed(chars))


# --- records -----------------------------------------------------------------


@dataclass
class X402Solve:
    """One solve paid (or to be paid) over x402, as the tools report it.

    ``result_token`` is the rail's ticket for the free ``getTaskResult`` re-fetch;
    tools never return it. ``cost_usd`` is a decimal string so no float ever
    touches money.
    """

    id: str
    type: str
    sitekey: str
    url: str
    status: str  # pending | solving | solved | failed | expired
    task_id: str | None
    result_token: str | None
    error_code: str | None
    error_message: str | None
    cost_usd: str | None
    settlement_tx: str | None
    created_at: str
    finished_at: str | None


_SOLVE_COLUMNS = tuple(f.name for f in fields(X402Solve))
_PAYMENT_COLUMNS = (
    "nonce, solve_id, amount_atomic, pay_to, network, asset, task_type, valid_before, "
    "state, tx_hash AS \"transaction\", error, utc_day, created_at, updated_at, payer"
)
IN_FLIGHT_STATES = ("signed", "sent")
UNRESOLVED_STATES = ("signed", "sent", "unknown")  # money may or may not have moved


class BudgetExceeded(NoneCapError):
    """Paying would take today's (UTC) x402 spend over the daily budget.

    Raised before anything is sent, so the authorization just signed is dropped
    unused. Not retryable today: the same call fails until 00:00 UTC unless the
    user raises the budget.
    """

    def __init__(self, *, spent_usd: Decimal, budget_usd: Decimal, amount_usd: Decimal, client: str | None = None) -> None:
        self.spent_usd = spent_usd
        self.budget_usd = budget_usd
        self.amount_usd = amount_usd
        whose, raise_it = (f"Client {client}'s daily", "the operator can re-register the client with a higher "
                           "--daily-budget-usd") if client else ("Daily", f"the user can raise it with {BUDGET_ENV}")
        message = (
            f"{whose} x402 budget reached: ${_usd(spent_usd)} of ${_usd(budget_usd)} already spent today "
            f"(UTC), and this payment of ${_usd(amount_usd)} would exceed it. Nothing was sent or paid. "
            f"The budget resets at 00:00 UTC; {raise_it}."
        )
        super().__init__(
            "budget_exceeded",
            message,
            guidance=g.LOCAL["budget_exceeded"],
        )


def _usd(amount: Decimal) -> str:
    """``0.012`` -> ``0.012``, ``1`` -> ``1.00``: exact, but money-shaped."""
    text = format(amount.normalize(), "f")
    whole, _, cents = text.partition(".")
    return f"{whole}.{cents.ljust(2, '0')}"


# --- the ledger ----------------------------------------------------------------


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Ledger:
    """x402 payments and solves in the store: a SQLite file per user, or PostgreSQL for replicas."""

    def __init__(self, store: Database | Path, *, now: Callable[[], datetime] = _utc_now) -> None:
        """Open (and migrate) the ledger in `store`; a path is its own SQLite file.

        ``now`` must return an aware datetime; it decides the UTC day a payment
        counts against, and exists so tests can cross midnight without waiting.
        """
        self._db = store if isinstance(store, Database) else SQLiteDatabase(store)
        self._now = now
        self._db.migrate("ledger", _MIGRATIONS, file_version=True)

    def _stamp(self) -> tuple[str, str]:
        """(UTC day, ISO timestamp) of now, from the injected clock."""
        now = self._now().astimezone(timezone.utc)
        return now.date().isoformat(), now.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def _day_figures(self, cur: Cursor, day: str, client: str | None = None) -> tuple[int, int]:
        """(spent, held) of a UTC day in atomic units.

        Spent: settled, unknown and in-flight payments (any may have moved money). Held:
        failed payments whose signed authorization has not expired, since the rail could
        still settle it until then. With `client`: that team-server client's payments only.
        """
        marks = ", ".join("?" for _ in COUNTED_STATES)
        row = cur.execute(
            f"SELECT COALESCE(SUM(CASE WHEN state IN ({marks}) THEN amount_atomic END), 0) AS spent, "
            "COALESCE(SUM(CASE WHEN state = 'failed' AND valid_before > ? THEN amount_atomic END), 0) AS held "
            "FROM payments WHERE utc_day = ?" + (" AND client = ?" if client else ""),
            (*COUNTED_STATES, int(self._now().timestamp()), day, *([client] if client else [])),
        ).fetchone()
        assert row is not None
        return int(row["spent"]), int(row["held"])

    # --- payments ---

    def reserve_payment(
        self,
        *,
        nonce: str,
        solve_id: str,
        amount_atomic: int,
        pay_to: str,
        network: str,
        asset: str,
        task_type: str,
        valid_before: int,
        daily_budget_atomic: int,
        payer: str | None = None,
        solve: X402Solve | None = None,
        client: str | None = None,
        client_budget_atomic: int | None = None,
    ) -> None:
        """Record a signed authorization (and its solve) before it is sent, if the budget allows.

        The budget check and the inserts are one exclusive transaction, so concurrent
        callers (threads, processes or replicas) are serialized and the day's total can
        never pass ``daily_budget_atomic``, nor a team-server client's day its own
        ``client_budget_atomic``. Raises :class:`BudgetExceeded` (nothing written) when it would.
        """
        if amount_atomic <= 0:
            raise ValueError("amount_atomic must be positive")
        day, stamp = self._stamp()
        with self._db.transaction(exclusive=WRITE_LOCK) as cur:
            self._check_budgets(cur, day, amount_atomic, daily_budget_atomic, client, client_budget_atomic)
            if cur.execute("SELECT 1 AS found FROM payments WHERE nonce = ?", (nonce,)).fetchone():
                # A repeated nonce means a signing bug; recording it twice would
                # also count the same money twice.
                raise ValueError("this payment nonce is already recorded; sign a fresh authorization")
            cur.execute(
                "INSERT INTO payments (nonce, solve_id, amount_atomic, pay_to, network, asset, task_type, "
                "valid_before, state, utc_day, created_at, updated_at, payer, client) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'signed', ?, ?, ?, ?, ?)",
                (nonce, solve_id, amount_atomic, pay_to, network, asset, task_type, valid_before, day, stamp, stamp,
                 payer, client),
            )
            if solve is not None:
                self._upsert_solve(cur, solve)

    def _current_state(self, cur: Cursor, nonce: str) -> str:
        row = cur.execute("SELECT state FROM payments WHERE nonce = ?", (nonce,)).fetchone()
        if row is None:
            raise ValueError("no payment with this nonce is recorded")
        return str(row["state"])

    def mark_payment(self, nonce: str, state: str, *, transaction: str | None = None, error: str | None = None) -> None:
        """Move a payment forward (signed -> sent -> unknown -> settled | failed).

        ``transaction`` and ``error`` are kept when a later mark omits them.
        Re-marking the current state is allowed (to add a receipt); moving back,
        or from one final outcome to the other, raises ``ValueError`` because it
        would rewrite what the ledger already promised about money.
        """
        if state not in _RANK:
            raise ValueError(f"unknown payment state {state!r}; expected one of {', '.join(PAYMENT_STATES)}")
        _, stamp = self._stamp()
        with self._db.transaction(exclusive=WRITE_LOCK) as cur:
            current = self._current_state(cur, nonce)
            if state != current and _RANK[state] <= _RANK[current]:
                raise ValueError(f"payment is already {current!r}; it cannot become {state!r}")
            self._set_state(cur, nonce, state, transaction, error, stamp)

    @staticmethod
    def _set_state(cur: Cursor, nonce: str, state: str, transaction: str | None, error: str | None, stamp: str) -> None:
        cur.execute(
            "UPDATE payments SET state = ?, tx_hash = COALESCE(?, tx_hash), error = COALESCE(?, error), "
            "updated_at = ? WHERE nonce = ?",
            (state, transaction, error, stamp, nonce),
        )

    def record_outcome(self, nonce: str, state: str, *, solve: X402Solve | None = None,
                       transaction: str | None = None, error: str | None = None) -> str:
        """A payment's outcome and its solve, in one transaction; returns the state now stored.

        Unlike :meth:`mark_payment` this never refuses: when the payment already has a
        final outcome (another process read it from the chain first) that one stands,
        since the chain's word is the strongest there is; the solve is written either way.
        """
        if state not in _RANK:
            raise ValueError(f"unknown payment state {state!r}; expected one of {', '.join(PAYMENT_STATES)}")
        _, stamp = self._stamp()
        with self._db.transaction(exclusive=WRITE_LOCK) as cur:
            current = self._current_state(cur, nonce)
            stored = current if _RANK[state] < _RANK[current] or _RANK[current] == 3 else state
            self._set_state(cur, nonce, stored, transaction, error, stamp)
            if solve is not None:
                self._upsert_solve(cur, solve)
        return stored

    def check_budgets(self, amount_atomic: int, daily_budget_atomic: int, client: str | None = None,
                      client_budget_atomic: int | None = None) -> None:
        """Raise :class:`BudgetExceeded` if paying `amount_atomic` now would pass today's budget
        or the client's: the check before signing (`reserve_payment` repeats it atomically)."""
        day, _ = self._stamp()
        with self._db.transaction() as cur:
            self._check_budgets(cur, day, amount_atomic, daily_budget_atomic, client, client_budget_atomic)

    def _check_budgets(self, cur: Any, day: str, amount_atomic: int, daily_budget_atomic: int, client: str | None,
                       client_budget_atomic: int | None) -> None:
        spent = sum(self._day_figures(cur, day))
        if spent + amount_atomic > daily_budget_atomic:
            raise BudgetExceeded(spent_usd=atomic_to_usd(spent), budget_usd=atomic_to_usd(daily_budget_atomic),
                                 amount_usd=atomic_to_usd(amount_atomic))
        if client and client_budget_atomic is not None:
            theirs = sum(self._day_figures(cur, day, client))
            if theirs + amount_atomic > client_budget_atomic:
                raise BudgetExceeded(spent_usd=atomic_to_usd(theirs), budget_usd=atomic_to_usd(client_budget_atomic),
                                     amount_usd=atomic_to_usd(amount_atomic), client=client)

    def counted_today_atomic(self) -> int:
        """Atomic units counted against today's (UTC) budget: spent plus held."""
        return sum(self.today_atomic())

    def today_atomic(self) -> tuple[int, int]:
        """Today's (UTC) (spent, held) in atomic units; see :meth:`_day_figures`."""
        day, _ = self._stamp()
        with self._db.transaction() as cur:
            return self._day_figures(cur, day)

    def _payments(self, where: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        """Payments matching `where`, oldest first."""
        with self._db.transaction() as cur:
            rows = cur.execute(f"SELECT {_PAYMENT_COLUMNS} FROM payments WHERE {where} ORDER BY created_at, nonce",
                               params).fetchall()
        return [dict(row) for row in rows]

    def unresolved_payments(self, solve_id: str | None = None) -> list[dict[str, Any]]:
        """Payments whose outcome is not known yet (in flight or unknown), oldest first."""
        marks = ", ".join("?" for _ in UNRESOLVED_STATES)
        where = f"state IN ({marks})" + (" AND solve_id = ?" if solve_id is not None else "")
        return self._payments(where, (*UNRESOLVED_STATES, *(() if solve_id is None else (solve_id,))))

    def payments_for(self, solve_id: str) -> list[dict[str, Any]]:
        """Every authorization signed for a solve, oldest first."""
        return self._payments("solve_id = ?", (solve_id,))

    def days_since(self, since: str) -> list[dict[str, Any]]:
        """Per UTC day from `since` (ISO date) and team-server client (None: stdio, or no client):
        solves, solved, and atomic units settled, held (failed but still valid) and unresolved,
        for the spend report. A solve's client is that of its payments (the solves table has none)."""
        with self._db.transaction() as cur:
            payments = cur.execute(
                "SELECT utc_day AS day, client, SUM(CASE WHEN state = 'settled' THEN amount_atomic ELSE 0 END) AS settled, "
                "SUM(CASE WHEN state = 'failed' AND valid_before > ? THEN amount_atomic ELSE 0 END) AS held, "
                "SUM(CASE WHEN state IN ('signed', 'sent', 'unknown') THEN amount_atomic ELSE 0 END) AS unknown "
                "FROM payments WHERE utc_day >= ? GROUP BY utc_day, client", (int(self._now().timestamp()), since)).fetchall()
            solves = cur.execute(
                "SELECT substr(s.created_at, 1, 10) AS day, p.client AS client, COUNT(*) AS solves, "
                "SUM(CASE WHEN s.status = 'solved' THEN 1 ELSE 0 END) AS solved FROM solves s "
                "LEFT JOIN (SELECT DISTINCT solve_id, client FROM payments) p ON p.solve_id = s.id "
                "WHERE substr(s.created_at, 1, 10) >= ? GROUP BY substr(s.created_at, 1, 10), p.client", (since,)).fetchall()
        days: dict[tuple[str, str | None], dict[str, Any]] = {}
        for row in map(dict, [*solves, *payments]):
            days.setdefault((row["day"], row["client"]), {
                "day": row["day"], "client": row["client"], "solves": 0, "solved": 0, "settled": 0, "held": 0, "unknown": 0,
            }).update({k: int(v or 0) for k, v in row.items() if k not in ("day", "client")})
        return sorted(days.values(), key=lambda d: (d["day"], d["client"] or ""))

    def import_from(self, source: Ledger) -> int:
        """Copy `source`'s payments and solves that are not here yet (by nonce and id), in one
        exclusive transaction; returns how many payments were new. Idempotent: replicas
        importing the same file together copy each record once."""
        with source._db.transaction() as cur:
            payments = [dict(row) for row in cur.execute("SELECT * FROM payments").fetchall()]
            solves = [dict(row) for row in cur.execute("SELECT * FROM solves").fetchall()]
        added = 0
        with self._db.transaction(exclusive=WRITE_LOCK) as cur:
            for table, key, rows in (("payments", "nonce", payments), ("solves", "id", solves)):
                for row in rows:
                    columns = ", ".join(row)
                    inserted = cur.execute(
                        f"INSERT INTO {table} ({columns}) VALUES ({', '.join('?' for _ in row)}) "
                        f"ON CONFLICT ({key}) DO NOTHING", tuple(row.values())).rowcount
                    added += inserted if table == "payments" else 0
        return added

    # --- solves ---

    def upsert_solve(self, record: X402Solve) -> None:
        """Insert the solve, or replace every field of the stored one with ``record``'s."""
        with self._db.transaction(exclusive=WRITE_LOCK) as cur:
            self._upsert_solve(cur, record)

    @staticmethod
    def _upsert_solve(cur: Cursor, record: X402Solve) -> None:
        columns = ", ".join(_SOLVE_COLUMNS)
        marks = ", ".join("?" for _ in _SOLVE_COLUMNS)
        updates = ", ".join(f"{c} = excluded.{c}" for c in _SOLVE_COLUMNS if c != "id")
        cur.execute(
            f"INSERT INTO solves ({columns}) VALUES ({marks}) ON CONFLICT (id) DO UPDATE SET {updates}",
            astuple(record),
        )

    def get_solve(self, solve_id: str) -> X402Solve | None:
        """The stored solve, or ``None``."""
        with self._db.transaction() as cur:
            row = cur.execute(f"SELECT {', '.join(_SOLVE_COLUMNS)} FROM solves WHERE id = ?", (solve_id,)).fetchone()
        return None if row is None else X402Solve(**dict(row))

    def list_solves(
        self,
        *,
        limit: int,
        starting_after: str | None,
        status: str | None,
        type: str | None,  # the tools' filter name, kept for symmetry
    ) -> tuple[list[X402Solve], bool]:
        """Newest first; ``starting_after`` is an exclusive cursor (an id from a
        previous page). Returns the page and whether more match beyond it."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        where: list[str] = []
        params: list[Any] = []
        if starting_after is not None:
            where.append("id < ?")
            params.append(starting_after)
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if type is not None:
            where.append("type = ?")
            params.append(type)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        with self._db.transaction() as cur:
            rows = cur.execute(
                f"SELECT {', '.join(_SOLVE_COLUMNS)} FROM solves {clause} ORDER BY id DESC LIMIT ?",
                (*params, limit + 1),
            ).fetchall()
        solves = [X402Solve(**dict(row)) for row in rows[:limit]]
        return solves, len(rows) > limit


def open_ledger(store: Store) -> Ledger:
    """The ledger in `store`. A shared store (PostgreSQL) first takes in the payments and solves
    of this machine's ledger file from before NONECAP_DATABASE_URL was set, so switching loses
    nothing: they keep counting against the budget and their unknown outcomes still get resolved.
    The file keeps its records."""
    ledger = Ledger(store.open())
    if store.url is not None and store.path.exists():
        try:
            added = ledger.import_from(Ledger(store.path))
        except (OSError, sqlite3.Error, ConfigurationError) as exc:  # a broken file must not stop the shared store
            log.warning("could not take the payments of %s into the shared store (%s); they are not counted there",
                        store.path, type(exc).__name__)
            return ledger
        if added:
            log.warning("took %d payment(s) from %s into the shared store (the file keeps its records)", added, store.path)
    return ledger
