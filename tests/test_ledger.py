"""The x402 ledger: file safety, the daily budget under contention, payment states, solves.

Its behaviour is one suite run against both stores: a real SQLite file in tmp_path and a
real PostgreSQL (`store_target`), with real threads and real separate processes; what only a
file has (modes, WAL, the legacy user_version) is tested on SQLite. The only seam is the
ledger's own ``now`` clock, so a test can cross UTC midnight without waiting for it.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from budget_racer import race
from child_process import child_env
from postgres import open_store
from nonecap_mcp.errors import ConfigurationError
from nonecap_mcp.x402.ledger import BUDGET_ENV, BudgetExceeded, Ledger, X402Solve, new_x402_id

AMOUNT = 12_000  # $0.012, the rail's hCaptcha price
PAY_TO = "0x1111111111111111111111111111111111111111"
USDC = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"


class Clock:
    """A settable UTC clock handed to Ledger(now=...)."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "ledger.sqlite3"


def open_ledger(target: str, now: Callable[[], datetime] | None = None) -> Ledger:
    """A new handle on the ledger at `target` (a SQLite path or a PostgreSQL URL)."""
    return Ledger(open_store(target), **({"now": now} if now else {}))


@pytest.fixture
def ledger(store_target: str) -> Ledger:
    return open_ledger(store_target)


_nonce_counter = iter(range(1, 10**9))


def fresh_nonce() -> str:
    return "0x" + format(next(_nonce_counter), "064x")


def reserve(ledger: Ledger, *, budget: int, amount: int = AMOUNT, solve_id: str = "x402_A", nonce: str | None = None) -> str:
    nonce = nonce or fresh_nonce()
    ledger.reserve_payment(
        nonce=nonce,
        solve_id=solve_id,
        amount_atomic=amount,
        pay_to=PAY_TO,
        network="base",
        asset=USDC,
        task_type="hcaptcha",
        valid_before=2_000_000_000,
        daily_budget_atomic=budget,
    )
    return nonce


def solve(solve_id: str, *, status: str = "solved", type: str = "hcaptcha") -> X402Solve:
    return X402Solve(
        id=solve_id,
        type=type,
        sitekey="10000000-ffff-ffff-ffff-000000000001",
        url="https://example.com/login",
        status=status,
        task_id="task_1",
        result_token="rt_1",
        error_code=None,
        error_message=None,
        cost_usd="0.012",
        settlement_tx="0x" + "ab" * 32,
        created_at="2026-11-22T03:00:00.000Z",
        finished_at="2026-11-22T03:00:09.000Z",
    )


# --- the file --------------------------------------------------------------------


@pytest.fixture
def open_umask() -> Iterator[None]:
    """umask 0: whatever mode the files get, the ledger chose it, not the umask."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def test_file_is_0600_and_directory_0700_whatever_the_umask(path: Path, open_umask: None) -> None:
    ledger = Ledger(path)
    reserve(ledger, budget=10**6)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    # With a connection open, the WAL and shared-memory files exist; SQLite gives
    # them the database file's mode.
    conn = sqlite3.connect(path)
    try:
        conn.execute("SELECT COUNT(*) FROM payments").fetchone()
        for suffix in ("-wal", "-shm"):
            side = path.with_name(path.name + suffix)
            assert stat.S_IMODE(side.stat().st_mode) == 0o600, suffix
    finally:
        conn.close()


def test_an_existing_world_readable_ledger_is_tightened(path: Path) -> None:
    Ledger(path)
    os.chmod(path, 0o644)
    Ledger(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_wal_mode_and_schema_version(path: Path) -> None:
    Ledger(path)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 3  # 3: payments.client
    finally:
        conn.close()


V1_SCHEMA = """
CREATE TABLE payments (nonce TEXT PRIMARY KEY, solve_id TEXT NOT NULL, amount_atomic INTEGER NOT NULL CHECK (amount_atomic > 0),
    pay_to TEXT NOT NULL, network TEXT NOT NULL, asset TEXT NOT NULL, task_type TEXT NOT NULL, valid_before INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('signed', 'sent', 'settled', 'failed', 'unknown')), tx_hash TEXT, error TEXT,
    utc_day TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE INDEX payments_by_day ON payments (utc_day, state);
CREATE INDEX payments_by_solve ON payments (solve_id);
CREATE TABLE solves (id TEXT PRIMARY KEY, type TEXT NOT NULL, sitekey TEXT NOT NULL, url TEXT NOT NULL, status TEXT NOT NULL,
    task_id TEXT, result_token TEXT, error_code TEXT, error_message TEXT, cost_usd TEXT, settlement_tx TEXT,
    created_at TEXT NOT NULL, finished_at TEXT);
CREATE INDEX solves_by_status ON solves (status, id);
"""


def test_a_version_1_ledger_is_migrated_keeping_its_payments(path: Path) -> None:
    """Version 1 (a file written before the shared store, its version in user_version) had no
    payer column; its payments survive and still count."""
    path.parent.mkdir(parents=True)
    conn = sqlite3.connect(path)
    conn.executescript(V1_SCHEMA + "PRAGMA user_version = 1;")
    conn.execute("INSERT INTO payments (nonce, solve_id, amount_atomic, pay_to, network, asset, task_type, valid_before, "
                 "state, utc_day, created_at, updated_at) VALUES ('0x01', 'x402_A', 12000, ?, 'base', ?, 'h', 2000000000, "
                 "'unknown', date('now'), 'x', 'x')", (PAY_TO, USDC))
    conn.commit()
    conn.close()
    ledger = Ledger(path)
    [payment] = ledger.unresolved_payments()
    assert payment["payer"] is None and payment["state"] == "unknown"
    assert ledger.today_atomic() == (AMOUNT, 0)


def test_outcome_and_solve_are_one_write_and_a_final_outcome_stands(ledger: Ledger) -> None:
    nonce = fresh_nonce()
    ledger.reserve_payment(nonce=nonce, solve_id="x402_B", amount_atomic=AMOUNT, pay_to=PAY_TO, network="base",
                           asset=USDC, task_type="hcaptcha", valid_before=2_000_000_000, daily_budget_atomic=10**6,
                           payer=PAY_TO, solve=solve("x402_B", status="solving"))
    assert ledger.get_solve("x402_B").status == "solving"  # the reservation wrote the solve too
    assert ledger.record_outcome(nonce, "settled", solve=solve("x402_B"), transaction="0xabc") == "settled"
    assert ledger.get_solve("x402_B").status == "solved"
    # Another process that read "failed" somewhere cannot undo what the chain showed.
    assert ledger.record_outcome(nonce, "failed", solve=solve("x402_B", status="failed")) == "settled"
    assert ledger.payments_for("x402_B")[0]["state"] == "settled" and ledger.unresolved_payments() == []


def test_spent_and_held_are_told_apart(ledger: Ledger) -> None:
    settled, failed, unknown = fresh_nonce(), fresh_nonce(), fresh_nonce()
    for nonce in (settled, failed, unknown):
        reserve(ledger, budget=10**6, nonce=nonce)
    ledger.record_outcome(settled, "settled")
    ledger.record_outcome(failed, "failed")
    ledger.record_outcome(unknown, "unknown")
    assert ledger.today_atomic() == (2 * AMOUNT, AMOUNT)  # settled + unknown spent; the failed one held
    assert ledger.counted_today_atomic() == 3 * AMOUNT


def test_each_day_is_split_by_the_client_that_paid(store_target: str) -> None:
    """The spend report's x402 rows: each team-server client's day carries its own solves and its
    own USD, and a stdio payment (no client) stays apart from theirs."""
    ledger = open_ledger(store_target, Clock(datetime(2026, 11, 22, 3, tzinfo=timezone.utc)))
    for solve_id, client, outcome in (("x402_A1", "alice", "settled"), ("x402_A2", "alice", "unknown"),
                                      ("x402_F1", "frugal", "failed"), ("x402_S1", None, "settled")):
        nonce = fresh_nonce()
        ledger.reserve_payment(nonce=nonce, solve_id=solve_id, amount_atomic=AMOUNT, pay_to=PAY_TO, network="base",
                               asset=USDC, task_type="hcaptcha", valid_before=2_000_000_000, daily_budget_atomic=10**6,
                               solve=solve(solve_id, status="solving"), client=client)
        ledger.record_outcome(nonce, outcome, solve=solve(solve_id, status="solved" if outcome == "settled" else "failed"))
    rows = {row.pop("client"): row for row in ledger.days_since("2026-11-22")}
    day = {"day": "2026-11-22"}
    assert rows == {
        "alice": {**day, "solves": 2, "solved": 1, "settled": AMOUNT, "held": 0, "unknown": AMOUNT},
        "frugal": {**day, "solves": 1, "solved": 0, "settled": 0, "held": AMOUNT, "unknown": 0},
        None: {**day, "solves": 1, "solved": 1, "settled": AMOUNT, "held": 0, "unknown": 0},
    }


def test_budgets_are_checked_before_signing_as_when_reserving(store_target: str) -> None:
    """`check_budgets` (the check before a signature exists) refuses what `reserve_payment`
    would: the server's day, and a team-server client's own day, each with its own figures."""
    ledger = open_ledger(store_target, Clock(datetime(2026, 11, 22, 3, tzinfo=timezone.utc)))
    ledger.reserve_payment(nonce=fresh_nonce(), solve_id="x402_A1", amount_atomic=AMOUNT, pay_to=PAY_TO, network="base",
                           asset=USDC, task_type="hcaptcha", valid_before=2_000_000_000, daily_budget_atomic=10**6,
                           solve=solve("x402_A1", status="solving"), client="alice")
    ledger.check_budgets(AMOUNT, 10**6, "alice", 2 * AMOUNT)  # fits both
    ledger.check_budgets(AMOUNT, 10**6, "bob", AMOUNT)  # bob's day is his own
    with pytest.raises(BudgetExceeded) as theirs:
        ledger.check_budgets(AMOUNT + 1, 10**6, "alice", 2 * AMOUNT)
    assert "Client alice's daily" in theirs.value.message
    with pytest.raises(BudgetExceeded) as ours:
        ledger.check_budgets(AMOUNT + 1, 2 * AMOUNT)
    assert ours.value.message.startswith("Daily x402 budget")


def test_a_ledger_from_a_newer_version_is_refused(path: Path) -> None:
    Ledger(path)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(ConfigurationError, match="newer nonecap-mcp"):
        Ledger(path)


# --- ids ---------------------------------------------------------------------------

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def test_ids_are_prefixed_crockford_ulids_carrying_the_time() -> None:
    before = time.time_ns() // 1_000_000
    new_id = new_x402_id()
    after = time.time_ns() // 1_000_000
    assert new_id.startswith("x402_") and len(new_id) == 5 + 26
    body = new_id[5:]
    assert set(body) <= set(CROCKFORD) and body[0] in "01234567"  # 128 bits fit in 26 chars
    value = 0
    for ch in body:
        value = value * 32 + CROCKFORD.index(ch)
    assert before <= value >> 80 <= after


def test_ids_are_strictly_increasing_even_in_one_millisecond() -> None:
    ids = [new_x402_id() for _ in range(5000)]  # thousands per millisecond
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_ids_are_unique_across_threads() -> None:
    results: list[list[str]] = [[] for _ in range(8)]

    def work(out: list[str]) -> None:
        out.extend(new_x402_id() for _ in range(500))

    threads = [threading.Thread(target=work, args=(out,)) for out in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [i for out in results for i in out]
    assert len(set(everything)) == len(everything)
    assert all(out == sorted(out) for out in results)


# --- the budget ---------------------------------------------------------------------


def test_budget_allows_exactly_what_fits_and_writes_nothing_beyond(ledger: Ledger) -> None:
    budget = 3 * AMOUNT
    for _ in range(3):
        reserve(ledger, budget=budget)
    with pytest.raises(BudgetExceeded) as caught:
        reserve(ledger, budget=budget, solve_id="x402_B")
    exc = caught.value
    assert exc.code == "budget_exceeded"
    assert (exc.spent_usd, exc.budget_usd, exc.amount_usd) == (Decimal("0.036"), Decimal("0.036"), Decimal("0.012"))
    assert BUDGET_ENV in exc.message and "$0.036 of $0.036" in exc.message and "$0.012" in exc.message
    assert exc.guidance.action == "change_policy" and exc.guidance.retryable is False
    assert ledger.counted_today_atomic() == budget
    assert ledger.payments_for("x402_B") == []


def test_budget_message_shows_whole_dollars_as_money(ledger: Ledger) -> None:
    with pytest.raises(BudgetExceeded, match=r"\$0\.00 of \$1\.00 .* \$2\.50"):
        reserve(ledger, budget=1_000_000, amount=2_500_000)


@pytest.mark.parametrize("state", ["signed", "sent", "settled", "unknown"])
def test_every_state_but_failed_counts_as_spent(ledger: Ledger, state: str) -> None:
    nonce = reserve(ledger, budget=AMOUNT)
    if state != "signed":
        ledger.mark_payment(nonce, state)
    assert ledger.counted_today_atomic() == AMOUNT
    with pytest.raises(BudgetExceeded):
        reserve(ledger, budget=AMOUNT)


def test_failed_payments_give_the_budget_back_once_their_authorization_expires(store_target: str) -> None:
    clock = Clock(datetime.fromtimestamp(2_000_000_000 - 60, tz=timezone.utc))  # 60 s before valid_before
    ledger = open_ledger(store_target, clock)
    nonce = reserve(ledger, budget=AMOUNT)
    ledger.mark_payment(nonce, "sent")
    ledger.mark_payment(nonce, "failed", error="insufficient_funds")
    assert ledger.counted_today_atomic() == AMOUNT  # the rail still holds a valid signed authorization
    clock.at += timedelta(seconds=61)
    assert ledger.counted_today_atomic() == 0
    reserve(ledger, budget=AMOUNT, nonce="0x" + "cd" * 32)
    assert ledger.counted_today_atomic() == AMOUNT


def test_budget_is_per_utc_day(store_target: str) -> None:
    clock = Clock(datetime(2026, 11, 22, 23, 59, 59, tzinfo=timezone.utc))
    ledger = open_ledger(store_target, clock)
    reserve(ledger, budget=AMOUNT)
    with pytest.raises(BudgetExceeded):
        reserve(ledger, budget=AMOUNT)
    clock.at += timedelta(seconds=2)  # 00:00:01 UTC, the next day
    assert ledger.counted_today_atomic() == 0
    reserve(ledger, budget=AMOUNT)
    # 01:30 in UTC+02:00 is still 23:30 UTC on the 22nd: that day is full.
    clock.at = datetime(2026, 11, 23, 1, 30, tzinfo=timezone(timedelta(hours=2)))
    assert ledger.counted_today_atomic() == AMOUNT
    with pytest.raises(BudgetExceeded):
        reserve(ledger, budget=AMOUNT)


def test_spend_and_solves_survive_a_restart(store_target: str) -> None:
    first = open_ledger(store_target)
    nonce = reserve(first, budget=2 * AMOUNT, solve_id="x402_R")
    first.mark_payment(nonce, "unknown")
    first.upsert_solve(solve("x402_R"))
    del first

    again = open_ledger(store_target)
    assert again.counted_today_atomic() == AMOUNT
    assert [p["state"] for p in again.payments_for("x402_R")] == ["unknown"]
    assert again.get_solve("x402_R") == solve("x402_R")
    reserve(again, budget=2 * AMOUNT)
    with pytest.raises(BudgetExceeded):
        reserve(again, budget=2 * AMOUNT)


def test_budget_holds_across_twenty_threads(ledger: Ledger) -> None:
    allowed = 7
    start = threading.Barrier(20)
    outcomes: list[str] = []
    lock = threading.Lock()

    def attempt() -> None:
        start.wait()
        try:
            reserve(ledger, budget=allowed * AMOUNT)
            result = "ok"
        except BudgetExceeded:
            result = "refused"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=attempt) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("ok") == allowed and outcomes.count("refused") == 20 - allowed
    assert ledger.counted_today_atomic() == allowed * AMOUNT


def test_budget_holds_across_four_processes(store_target: str) -> None:
    """Three children and this test's own process reserve at the same moment."""
    allowed, children_count, tries = 9, 3, 5
    start_at = time.time() + 0.7  # after every child has imported, so they really collide
    arguments = [store_target, str(start_at), str(tries), str(allowed * AMOUNT), str(AMOUNT)]
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "budget_racer", *arguments, f"p{n}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        for n in range(children_count)
    ]
    granted = race(store_target, start_at, tries, allowed * AMOUNT, AMOUNT, "parent")
    for child in children:
        out, err = child.communicate(timeout=30)
        assert child.returncode == 0, err
        granted += int(out)
    assert granted == allowed
    assert open_ledger(store_target).counted_today_atomic() == allowed * AMOUNT


# --- payment states -----------------------------------------------------------------


def test_payment_lifecycle_keeps_receipt_and_error(ledger: Ledger) -> None:
    nonce = reserve(ledger, budget=AMOUNT, solve_id="x402_L")
    [row] = ledger.payments_for("x402_L")
    assert row["state"] == "signed" and row["amount_atomic"] == AMOUNT and row["transaction"] is None
    assert (row["nonce"], row["pay_to"], row["network"], row["asset"], row["task_type"], row["valid_before"]) == (
        nonce,
        PAY_TO,
        "base",
        USDC,
        "hcaptcha",
        2_000_000_000,
    )
    ledger.mark_payment(nonce, "sent")
    ledger.mark_payment(nonce, "unknown", error="ReadTimeout")
    tx = "0x" + "cd" * 32
    ledger.mark_payment(nonce, "settled", transaction=tx)
    ledger.mark_payment(nonce, "settled")  # re-marking keeps what is known
    [row] = ledger.payments_for("x402_L")
    assert (row["state"], row["transaction"], row["error"]) == ("settled", tx, "ReadTimeout")


@pytest.mark.parametrize(
    ("path_to", "then"),
    [(["sent", "settled"], "unknown"), (["sent", "settled"], "failed"), (["failed"], "settled"), (["unknown"], "sent")],
)
def test_payments_never_move_backwards(ledger: Ledger, path_to: list[str], then: str) -> None:
    nonce = reserve(ledger, budget=AMOUNT)
    for state in path_to:
        ledger.mark_payment(nonce, state)
    with pytest.raises(ValueError, match="cannot become"):
        ledger.mark_payment(nonce, then)
    assert ledger.payments_for("x402_A")[0]["state"] == path_to[-1]


def test_bad_marks_and_reservations_are_refused(ledger: Ledger) -> None:
    nonce = reserve(ledger, budget=10 * AMOUNT)
    with pytest.raises(ValueError, match="unknown payment state"):
        ledger.mark_payment(nonce, "paid")
    with pytest.raises(ValueError, match="no payment"):
        ledger.mark_payment("0x" + "00" * 32, "sent")
    with pytest.raises(ValueError, match="already recorded"):
        reserve(ledger, budget=10 * AMOUNT, nonce=nonce)
    with pytest.raises(ValueError, match="positive"):
        reserve(ledger, budget=10 * AMOUNT, amount=0)
    assert ledger.counted_today_atomic() == AMOUNT


# --- solves ---------------------------------------------------------------------------


def test_upsert_replaces_and_get_returns_none_for_unknown(ledger: Ledger) -> None:
    assert ledger.get_solve("x402_nope") is None
    pending = solve("x402_U", status="pending")
    ledger.upsert_solve(pending)
    assert ledger.get_solve("x402_U") == pending
    done = solve("x402_U")
    ledger.upsert_solve(done)
    assert ledger.get_solve("x402_U") == done


@pytest.fixture
def many(ledger: Ledger) -> list[str]:
    """Seven solves, oldest first: alternating statuses, one of another type."""
    ids = [new_x402_id() for _ in range(7)]
    for n, solve_id in enumerate(ids):
        ledger.upsert_solve(solve(solve_id, status="solved" if n % 2 else "failed", type="other" if n == 3 else "hcaptcha"))
    return ids


def test_list_pages_newest_first_with_an_exclusive_cursor(ledger: Ledger, many: list[str]) -> None:
    newest_first = many[::-1]
    seen: list[str] = []
    cursor: str | None = None
    pages: list[bool] = []
    while True:
        page, has_more = ledger.list_solves(limit=3, starting_after=cursor, status=None, type=None)
        seen += [s.id for s in page]
        pages.append(has_more)
        if not has_more:
            break
        cursor = page[-1].id
    assert seen == newest_first
    assert pages == [True, True, False]


def test_list_filters(ledger: Ledger, many: list[str]) -> None:
    solved, more = ledger.list_solves(limit=10, starting_after=None, status="solved", type=None)
    assert [s.id for s in solved] == [many[5], many[3], many[1]] and not more
    other, _ = ledger.list_solves(limit=10, starting_after=None, status=None, type="other")
    assert [s.id for s in other] == [many[3]]
    both, _ = ledger.list_solves(limit=10, starting_after=many[3], status="solved", type="hcaptcha")
    assert [s.id for s in both] == [many[1]]
    exact, more = ledger.list_solves(limit=4, starting_after=None, status="failed", type=None)
    assert len(exact) == 4 and not more
    with pytest.raises(ValueError):
        ledger.list_solves(limit=0, starting_after=None, status=None, type=None)



def test_switching_to_a_shared_store_takes_in_the_ledger_file_once(
        path: Path, postgres_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """A machine that sets NONECAP_DATABASE_URL loses nothing: its file's payments keep counting
    (and an unknown one still gets resolved), its solves stay listed; replicas doing it again copy nothing."""
    from nonecap_mcp.store import Store
    from nonecap_mcp.x402.ledger import open_ledger
    from postgres import schema_url

    before = Ledger(path)
    nonce = reserve(before, budget=10**6, solve_id="x402_OLD")
    before.mark_payment(nonce, "unknown")
    before.upsert_solve(solve("x402_OLD"))
    store = Store(path, schema_url(postgres_url, str(path)))
    shared = open_ledger(store)
    assert shared.counted_today_atomic() == AMOUNT and [p["state"] for p in shared.unresolved_payments()] == ["unknown"]
    assert shared.get_solve("x402_OLD") == solve("x402_OLD")
    assert "took 1 payment(s)" in caplog.text
    assert open_ledger(store).counted_today_atomic() == AMOUNT  # taken in once
    assert Ledger(path).counted_today_atomic() == AMOUNT  # the file keeps its records


def test_a_broken_ledger_file_does_not_stop_the_shared_store(
        path: Path, postgres_url: str, caplog: pytest.LogCaptureFixture) -> None:
    from nonecap_mcp.store import Store
    from nonecap_mcp.x402.ledger import open_ledger
    from postgres import schema_url

    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a database" * 100)
    shared = open_ledger(Store(path, schema_url(postgres_url, str(path))))
    reserve(shared, budget=AMOUNT)
    assert shared.counted_today_atomic() == AMOUNT
    assert "could not take the payments of" in caplog.text and "not counted there" in caplog.text
