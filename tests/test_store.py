"""One behavioural suite for the shared store, run against SQLite and a real PostgreSQL.

What the team server relies on: migrations that are safe when replicas start together,
exclusive transactions that make check-then-insert atomic across connections, and the
records on top: the client registry, the operator's quota, and the create log (intents,
claims and the account's in-flight slots). The x402 ledger's suite (test_ledger.py) runs
against both engines the same way.
"""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest

from nonecap_mcp.clients import ClientRegistry
from nonecap_mcp.create_log import CreateLog, Intent
from nonecap_mcp.store import Store
from postgres import open_store
from nonecap_mcp.store.db import Database, PostgresDatabase


@pytest.fixture
def make_db(store_target: str):  # noqa: ANN201 - a factory of fresh handles on one database
    """A factory of separate handles on one fresh database (as separate processes would hold)."""
    return lambda: open_store(store_target)


def _together(count: int, work) -> list[BaseException]:  # noqa: ANN001
    """Run `work(i)` in `count` threads released at the same moment; return their errors."""
    barrier, errors = threading.Barrier(count), []

    def run(i: int) -> None:
        barrier.wait()
        try:
            work(i)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return errors


STEPS = [["CREATE TABLE things (id INTEGER PRIMARY KEY, amount INTEGER NOT NULL)"],
         ["ALTER TABLE things ADD COLUMN owner TEXT"]]


def test_migrations_are_safe_when_processes_start_together(make_db) -> None:  # noqa: ANN001
    assert _together(8, lambda i: make_db().migrate("things", STEPS)) == []
    db: Database = make_db()
    assert db.migrate("things", STEPS) == 2
    with db.transaction() as cur:
        cur.execute("INSERT INTO things (id, amount, owner) VALUES (?, ?, ?)", (1, 5, "a"))
    with pytest.raises(Exception, match="newer"):
        db.migrate("things", STEPS[:1])


def test_an_exclusive_check_then_insert_never_passes_its_cap(make_db) -> None:  # noqa: ANN001
    """The budget pattern: 20 writers, each checks the sum and inserts if under 7 units."""
    make_db().migrate("things", STEPS)

    def spend(i: int) -> None:
        with make_db().transaction(exclusive="budget") as cur:
            total = cur.execute("SELECT COALESCE(SUM(amount), 0) AS total FROM things").fetchone()["total"]
            if total + 1 <= 7:
                cur.execute("INSERT INTO things (id, amount) VALUES (?, ?)", (i, 1))

    assert _together(20, spend) == []
    with make_db().transaction() as cur:
        assert cur.execute("SELECT COUNT(*) AS n FROM things").fetchone()["n"] == 7


def test_client_registry_on_both_engines(make_db) -> None:  # noqa: ANN001
    registry = ClientRegistry(make_db())
    token = registry.add("ci", daily_budget_usd=Decimal("0.50"), daily_credit_budget=10, read_only=True)
    other = ClientRegistry(make_db())  # another replica
    client = other.verify(token)
    assert client is not None and client.name == "ci" and client.read_only
    assert client.daily_budget_usd == Decimal("0.50") and client.daily_credit_budget == 10
    assert other.verify(token + "x") is None
    with pytest.raises(Exception, match="exists"):
        other.add("ci")
    assert other.remove("ci") and registry.verify(token) is None


def test_quota_counts_credits_and_starts_atomically(make_db) -> None:  # noqa: ANN001
    from nonecap_mcp.quota import Quota, QuotaExceeded

    quota = Quota(make_db(), daily_credit_budget=5, max_solves_per_minute=7)
    tickets: list[int] = []

    def start(i: int) -> None:
        tickets.append(Quota(make_db(), daily_credit_budget=5, max_solves_per_minute=7).admit(rail="credits"))

    errors = _together(12, start)
    assert len(tickets) == 5 and all(isinstance(e, QuotaExceeded) and e.code == "credit_budget_exceeded" for e in errors)
    quota.attach(tickets[0], "solve_a")
    quota.refund(solve_id="solve_a")  # seen failed: the API refunded it
    quota.refund(ticket=tickets[1])  # the create proved nothing was made
    assert quota.credits_used_today() == 3
    quota.admit(rail="credits", client="ci", client_credit_budget=1)
    with pytest.raises(QuotaExceeded, match="client ci"):
        quota.admit(rail="credits", client="ci", client_credit_budget=1)
    quota.admit(rail="x402")  # x402 uses no credits, but counts as a start
    with pytest.raises(QuotaExceeded) as capped:
        quota.admit(rail="x402")
    assert capped.value.code == "operator_rate_capped" and capped.value.guidance.retry_after_seconds == 60


def test_postgres_connections_are_a_small_bounded_pool(postgres_url: str) -> None:
    """Twelve threads at once share three connections: replicas × threads never exhaust max_connections."""
    db = PostgresDatabase(f"{postgres_url}?application_name=pooltest", pool_size=3)
    seen: list[int] = []

    def work(i: int) -> None:
        with db.transaction() as cur:
            cur.execute("SELECT pg_sleep(0.1)")
            row = cur.execute("SELECT COUNT(*) AS n FROM pg_stat_activity WHERE application_name = 'pooltest'").fetchone()
            seen.append(int(row["n"]))

    assert _together(12, work) == []
    assert len(seen) == 12 and max(seen) <= 3, seen


# --- the create log: intents, claims and the account's slots, as replicas share them ---------


def _create_log(target: str, replica: int) -> CreateLog:
    """A create log as replica `replica` opens it: its own handle (and, on PostgreSQL, its own pool)."""
    if target.startswith("postgresql://"):
        return CreateLog(Store(Path("unused"), f"{target}&application_name=replica{replica}"))
    return CreateLog(Store(Path(target)))


def _intent(call_id: str, page: str = "page") -> Intent:
    return Intent(call_id, "account", page, time.time())


def test_the_accounts_slots_are_shared_and_never_overbooked(store_target: str) -> None:
    """Twelve calls on three replicas race for 5 slots: exactly 5 get one; a slot comes back
    when its call certainly made nothing, or its claimed solve is seen finished."""
    logs = [_create_log(store_target, i % 3) for i in range(12)]
    taken: list[int] = []
    errors = _together(12, lambda i: logs[i].record_intent(_intent(f"call{i}"), 5) and taken.append(i))
    assert errors == [] and len(taken) == 5
    other = _create_log(store_target, 3)
    assert not other.record_intent(_intent("late"), 5)
    logs[taken[0]].release(f"call{taken[0]}")  # certainly made nothing
    assert other.record_intent(_intent("late"), 5)
    assert other.claim("late", "solve_late", running=True)  # its solve runs: the slot stays taken
    assert not other.record_intent(_intent("later"), 5)
    assert other.running_ids("account") == ["solve_late"]
    assert logs[0].finished(["solve_late"]) == 1  # seen finished on another replica
    assert other.running_ids("account") == [] and other.record_intent(_intent("later"), 5)


def test_a_solve_is_claimed_by_exactly_one_call_across_replicas(store_target: str) -> None:
    logs = [_create_log(store_target, i % 3) for i in range(10)]
    for i, log in enumerate(logs):
        assert log.record_intent(_intent(f"call{i}"), 100)
    won: list[int] = []
    assert _together(10, lambda i: logs[i].claim(f"call{i}", "solve_x", running=False) and won.append(i)) == []
    assert len(won) == 1
    assert logs[won[0]].claim(f"call{won[0]}", "solve_x", running=False)  # the owner may claim it again
    loser = (won[0] + 1) % 10
    assert not logs[loser].claim(f"call{loser}", "solve_x", running=False)
    assert logs[loser].claimed_ids(["solve_x", "solve_y"]) == {"solve_x"}


def test_open_intents_for_a_page_are_seen_by_every_replica(store_target: str) -> None:
    a, b = _create_log(store_target, 0), _create_log(store_target, 1)
    assert a.record_intent(_intent("a1", "login"), 5) and a.record_intent(_intent("a2", "other"), 5)
    assert b.record_intent(_intent("b1", "login"), 5)
    assert [i.call_id for i in b.others_for_page("b1", "account", "login")] == ["a1"]
    assert [i.call_id for i in a.others_for_page("a1", "account", "login")] == ["b1"]
    assert b.claim("b1", "solve_b", running=False)  # claimed: no longer an open intent
    assert a.others_for_page("a1", "account", "login") == []
