"""One of the processes racing for the x402 daily budget in test_ledger: it holds only a ledger.

`python -m budget_racer TARGET START_AT TRIES BUDGET AMOUNT TAG` (tests/ on PYTHONPATH) prints how
many reservations it was granted; the test's own process races too, through `race`. Only the
product's store and ledger are imported (not pytest, as the tests' `postgres` helper would), so a
child costs little more than its interpreter's start.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from nonecap_mcp.store.db import PostgresDatabase, SQLiteDatabase
from nonecap_mcp.x402.ledger import BudgetExceeded, Ledger


def race(target: str, start_at: float, tries: int, budget: int, amount: int, tag: str) -> int:
    """At `start_at` (when every racer is ready), open the ledger at `target` (a PostgreSQL URL, else
    a SQLite path) and try `tries` reservations of `amount` under `budget`; the number granted."""
    time.sleep(max(0.0, start_at - time.time()))
    store = PostgresDatabase(target) if target.startswith("postgresql://") else SQLiteDatabase(Path(target))
    ledger = Ledger(store)  # the processes also race to create and migrate the store
    granted = 0
    for i in range(tries):
        try:
            ledger.reserve_payment(nonce=f"{tag}-{i}", solve_id=tag, amount_atomic=amount, pay_to="0x" + "11" * 20,
                                   network="base", asset="0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
                                   task_type="hcaptcha", valid_before=2_000_000_000, daily_budget_atomic=budget)
            granted += 1
        except BudgetExceeded:
            pass
    return granted


if __name__ == "__main__":
    target, start_at, tries, budget, amount, tag = sys.argv[1:]
    print(race(target, float(start_at), int(tries), int(budget), int(amount), tag))
