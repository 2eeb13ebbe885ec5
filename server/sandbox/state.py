"""All sandbox state behind one lock: accounts, solves, armed faults and the request log.

Nothing ticks in the background. Balances, in-flight counts and list filters are computed
from each solve's schedule at the moment of the request, so a refund is visible even if
nobody ever looked at the failed solve. A Condition on the same lock wakes `?wait`
long-polls when a solve is cancelled or the sandbox stops.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from nonecap_mcp.sandbox.errors import ApiError, Interrupted, InvalidField, insufficient_credits
from nonecap_mcp.sandbox.faults import Fault
from nonecap_mcp.sandbox.outcomes import Plan
from nonecap_mcp.sandbox.solves import IN_FLIGHT, TERMINAL, FeedbackRecord, Solve, UlidGenerator, now_ms, rfc3339
from nonecap_mcp.sandbox.validation import MAX_FEEDBACK_BATCH, Feedback, ListQuery, SolveRequest, parse_feedback
from nonecap_mcp.sandbox.x402 import DEFAULT_RATE_LIMIT, SOLVE_CAP_S, X402Rail

SANDBOX_API_KEY = "nc_test_sandbox_key_for_offline_use_only"
LOCKED_API_KEY = "nc_test_sandbox_locked_account_000000000"
DEFAULT_EMAIL = "sandbox@nonecap.test"
LOCKED_EMAIL = "locked@nonecap.test"
MAX_LOGGED_REQUESTS = 10_000  # a long --sandbox session must not grow without bound
DAILY_SOLVES = 1000  # the sandbox plan's daily allowance (shown by /v1/me, not enforced)
DAY_MS = 86_400_000
_KEY_FORMAT = re.compile(r"nc_(?:live|test)_[A-Za-z0-9_-]{32}")
_TEST_KEY_FORMAT = re.compile(r"nc_test_[A-Za-z0-9_-]{32}")


@dataclass(frozen=True)
class RecordedRequest:
    """One request the sandbox received on the API (control endpoints are not logged).

    `status` is None when the connection was dropped, or while the answer is still pending.
    """

    method: str
    path: str
    query: dict[str, str]
    status: int | None
    time: float


@dataclass
class _LogEntry:
    """Mutable twin of RecordedRequest: the status is filled in when the answer goes out."""

    method: str
    path: str
    query: dict[str, str]
    time: float
    status: int | None = None


@dataclass
class Account:
    """A sandbox account; `granted` minus the credits its solves still hold is the balance."""

    api_key: str
    id: str
    email: str
    created_ms: int
    locked: bool
    granted: int
    daily_solves: int | None = DAILY_SOLVES  # None: no plan
    solves: list[Solve] = field(default_factory=list)  # in creation (= id) order


class SandboxState:
    """The emulated backend. Every public method is thread-safe."""

    def __init__(
        self,
        *,
        credits: int,
        max_in_flight: int,
        x402_rate_limit: int = DEFAULT_RATE_LIMIT,
        x402_solve_timeout: float = SOLVE_CAP_S,
    ) -> None:
        if credits < 0 or max_in_flight < 1:
            raise ValueError("credits must be >= 0 and max_in_flight >= 1")
        self.x402 = X402Rail(rate_limit=x402_rate_limit, solve_timeout=x402_solve_timeout)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._ids = UlidGenerator()
        self._default_credits = credits
        self._max_in_flight = max_in_flight
        self._accounts: dict[str, Account] = {}
        self._solves: dict[str, Solve] = {}
        self._faults: list[Fault] = []
        self._log: deque[_LogEntry] = deque(maxlen=MAX_LOGGED_REQUESTS)
        self._closing = False
        self._interrupt = threading.Event()
        self.reset()

    # -- lifecycle -------------------------------------------------------------------

    def reset(self) -> None:
        """Back to a fresh sandbox: default accounts only, no solves, faults or log; x402 defaults.

        Requests still in flight (a delay fault, a paid x402 solve) are interrupted and change
        nothing: a request that arrived before a reset must not settle a payment after it.
        """
        with self._changed:
            self._interrupt.set()
            self._interrupt = threading.Event()
            self._changed.notify_all()  # long-polls wake up, see their interruption and give up
        self.x402.reset()
        with self._lock:
            self._accounts.clear()
            self._solves.clear()
            self._faults.clear()
            self._log.clear()
            self._put_account(SANDBOX_API_KEY, self._default_credits, False, DEFAULT_EMAIL)
            self._put_account(LOCKED_API_KEY, 100, True, LOCKED_EMAIL)

    def set_closing(self, closing: bool) -> None:
        """While closing, `?wait` long-polls return at once and requests in flight are
        interrupted, so the server can stop quickly."""
        with self._changed:
            self._closing = closing
            if closing:
                self._interrupt.set()
            elif self._interrupt.is_set():
                self._interrupt = threading.Event()
            self._changed.notify_all()

    def interruption(self) -> threading.Event:
        """Set when the sandbox resets or stops: a request captures it on arrival and gives up
        (changing nothing) once it is set."""
        with self._lock:
            return self._interrupt

    # -- accounts ----------------------------------------------------------------------

    def add_account(
        self,
        api_key: object,
        *,
        credits: object = 100,
        locked: object = False,
        email: object = None,
        daily_solves: object = DAILY_SOLVES,
    ) -> dict[str, object]:
        """Create an account, or update balance, lock, email and plan of an existing one (its solves
        stay). `daily_solves` None means an account without a plan."""
        if not isinstance(api_key, str) or not _TEST_KEY_FORMAT.fullmatch(api_key):
            raise InvalidField("api_key", "api_key must be nc_test_ followed by 32 base64url characters.")
        credits = _check_credits(credits)
        if not isinstance(locked, bool):
            raise InvalidField("locked", "locked must be true or false.")
        if email is not None and (not isinstance(email, str) or "@" not in email):
            raise InvalidField("email", "email must be an email address.")
        if daily_solves is not None:
            daily_solves = _check_credits(daily_solves, "daily_solves")
        with self._lock:
            account = self._accounts.get(api_key)
            if account is None:
                account = self._put_account(api_key, credits, locked, email or DEFAULT_EMAIL)
            else:
                account.locked, account.email = locked, email or account.email
                self._set_balance(account, credits)
            account.daily_solves = daily_solves
            return self._render_account(account, now_ms())

    def set_balance(self, api_key: str, credits: int) -> None:
        """Make the balance exactly `credits` now; solves still in flight may refund on top later."""
        credits = _check_credits(credits)
        with self._lock:
            account = self._accounts.get(api_key)
            if account is None:
                raise InvalidField("api_key", "no sandbox account has that api_key.")
            self._set_balance(account, credits)

    def authenticate(self, authorization: str | None) -> str:
        """The account key behind `Authorization: Bearer …`, or 401/403. Never echoes the key."""
        scheme, _, key = (authorization or "").strip().partition(" ")
        key = key.strip()
        if not authorization or scheme.lower() != "bearer" or not key:
            raise ApiError("unauthorized", "Missing API key. Send Authorization: Bearer <key>.")
        if not _KEY_FORMAT.fullmatch(key):
            raise ApiError(
                "unauthorized", "Malformed API key: expected nc_live_ or nc_test_ and 32 base64url characters."
            )
        with self._lock:
            account = self._accounts.get(key)
            locked = account is not None and account.locked
        if account is None:
            hint = (
                " Live keys (nc_live_) do not work in the sandbox; use a nc_test_ key."
                if key.startswith("nc_live_")
                else ""
            )
            raise ApiError("unauthorized", "Unknown or revoked API key." + hint)
        if locked:
            raise ApiError("account_locked")
        return key

    def account_view(self, api_key: str) -> dict[str, object]:
        """GET /v1/me."""
        with self._lock:
            return self._render_account(self._account(api_key), now_ms())

    # -- solves ------------------------------------------------------------------------

    def create_solve(self, api_key: str, request: SolveRequest, plan: Plan, wait_s: int | None) -> dict[str, object]:
        """Debit one credit and schedule the solve, or 402/429; then long-poll if asked."""
        with self._changed:
            account, now = self._account(api_key), now_ms()
            balance = self._balance(account, now)
            if balance < 1:
                raise insufficient_credits(balance)
            in_flight = sum(1 for solve in account.solves if solve.status_at(now) in IN_FLIGHT)
            if in_flight >= self._max_in_flight:
                raise ApiError(
                    "concurrency_limit_exceeded",
                    f"{in_flight} solves in flight for this account (limit {self._max_in_flight}). "
                    "Retry once one completes.",
                )
            solve_id = "solve_" + self._ids.new(now)
            solve = Solve.scheduled(solve_id, api_key, request, plan, now)
            self._solves[solve_id] = solve
            account.solves.append(solve)
            return self._wait_and_render(solve, wait_s, now)

    def solve_view(self, api_key: str, solve_id: str, wait_s: int | None) -> dict[str, object]:
        """GET /v1/solves/{id}, long-polling up to `wait_s` for a terminal state."""
        with self._changed:
            solve = self._owned_solve(api_key, solve_id)
            return self._wait_and_render(solve, wait_s, now_ms())

    def cancel_solve(self, api_key: str, solve_id: str) -> dict[str, object]:
        """DELETE /v1/solves/{id}: cancel and refund an in-flight solve, 409 if already terminal."""
        with self._changed:
            solve, now = self._owned_solve(api_key, solve_id), now_ms()
            status = solve.status_at(now)
            if status in TERMINAL:
                raise ApiError("conflict", f"Solve is already {status} and cannot be cancelled.")
            solve.cancelled_ms = now
            self._changed.notify_all()
            return solve.render(now)

    def list_solves(self, api_key: str, query: ListQuery) -> dict[str, object]:
        """GET /v1/solves: newest first, filtered, after the (exclusive) cursor."""
        with self._lock:
            account, now = self._account(api_key), now_ms()
            cursor = query.starting_after
            if cursor is not None and ((anchor := self._solves.get(cursor)) is None or anchor.account_key != api_key):
                raise ApiError(
                    "validation_error", "starting_after is not a solve of this account.", param="starting_after"
                )
            matching = [
                solve
                for solve in reversed(account.solves)
                if (cursor is None or solve.id < cursor)
                and (query.type is None or solve.type == query.type)
                and (query.status is None or solve.status_at(now) == query.status)
            ]
            page = matching[: query.limit]
            return {
                "object": "list",
                "url": "/v1/solves",
                "data": [solve.render(now) for solve in page],
                "has_more": len(matching) > len(page),
            }

    # -- feedback ----------------------------------------------------------------------

    def report_feedback(self, api_key: str, solve_id: str, report: Feedback) -> dict[str, object]:
        """POST /v1/solves/{id}/feedback: record, correct or repeat the verdict on one own solved solve."""
        with self._lock:
            solve, _ = self._record_feedback(api_key, solve_id, report, now_ms())
            assert solve.feedback is not None
            return solve.feedback.render(solve.id)

    def report_feedback_batch(self, api_key: str, items: list[object]) -> dict[str, object]:
        """POST /v1/feedback: each item resolved on its own, in order (a later duplicate wins)."""
        if not items or len(items) > MAX_FEEDBACK_BATCH:
            raise ApiError(
                "validation_error", f"feedback must hold 1 to {MAX_FEEDBACK_BATCH} reports.", param="feedback"
            )
        results: list[dict[str, object]] = []
        with self._lock:
            now = now_ms()
            for item in items:
                solve_id = item.get("solve_id") if isinstance(item, dict) else None
                try:
                    if not isinstance(item, dict) or not isinstance(solve_id, str):
                        raise ApiError("invalid_request", "Each report needs a solve_id string.", param="solve_id")
                    _, status = self._record_feedback(api_key, solve_id, parse_feedback(item), now)
                    results.append({"solve_id": solve_id, "status": status, "error": None})
                except ApiError as error:
                    problem = {"code": error.code, "message": error.message, "param": error.param}
                    results.append({"solve_id": solve_id if isinstance(solve_id, str) else "", "status": "error",
                                    "error": problem})  # fmt: skip
        counts = {status: sum(1 for r in results if r["status"] == status) for status in
                  ("recorded", "updated", "unchanged", "error")}  # fmt: skip
        return {
            "object": "feedback_batch",
            "recorded": counts["recorded"],
            "updated": counts["updated"],
            "unchanged": counts["unchanged"],
            "failed": counts["error"],
            "results": results,
        }

    # -- faults and request log --------------------------------------------------------

    def add_fault(self, fault: Fault) -> None:
        """Arm a fault behind those already armed."""
        with self._lock:
            self._faults.append(fault)

    def take_fault(self, method: str, path: str) -> Fault | None:
        """Consume one use of the oldest armed fault matching this request, if any.

        A fault still skipping counts this request down and lets it through (no later fault
        applies to it either).
        """
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    if fault.skip > 0:
                        fault.skip -= 1
                        return None
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def log_request(self, method: str, path: str, query: dict[str, str]) -> _LogEntry:
        """Record an API request on arrival; its status is filled in by `log_status`."""
        entry = _LogEntry(method, path, dict(query), time.time())
        with self._lock:
            self._log.append(entry)
        return entry

    def log_status(self, entry: _LogEntry, status: int) -> None:
        """Note the status a logged request was answered with."""
        with self._lock:
            entry.status = status

    def recorded(self) -> list[RecordedRequest]:
        """A snapshot of the request log, oldest first."""
        with self._lock:
            return [RecordedRequest(e.method, e.path, dict(e.query), e.status, e.time) for e in self._log]

    def clear_log(self) -> None:
        """Forget the requests seen so far."""
        with self._lock:
            self._log.clear()

    # -- helpers (lock held) -----------------------------------------------------------

    def _put_account(self, api_key: str, credits: int, locked: bool, email: str) -> Account:
        """Insert a new account with `credits` available."""
        now = now_ms()
        account = Account(api_key, "user_" + self._ids.new(now), email, now, locked, credits)
        self._accounts[api_key] = account
        return account

    def _account(self, api_key: str) -> Account:
        """The account for an authenticated key; 401 if a reset removed it meanwhile."""
        account = self._accounts.get(api_key)
        if account is None:
            raise ApiError("unauthorized", "Unknown or revoked API key.")
        return account

    def _owned_solve(self, api_key: str, solve_id: str) -> Solve:
        """A solve of this account; another account's solve is as unknown as a missing one."""
        solve = self._solves.get(solve_id)
        if solve is None or solve.account_key != api_key:
            raise ApiError("not_found", "No solve with that id (unknown, or purged after the 30-day retention).")
        return solve

    def _record_feedback(self, api_key: str, solve_id: str, report: Feedback, now: int) -> tuple[Solve, str]:
        """Store a verdict (lock held): recorded, updated, or unchanged when identical to the stored one."""
        solve = self._owned_solve(api_key, solve_id)
        status = solve.status_at(now)
        if status != "solved":
            raise ApiError(
                "not_eligible", f"Only solves that produced a token can be reported; this one is {status}."
            )
        record = solve.feedback
        if record is None:
            solve.feedback = FeedbackRecord(report, 1, now, now)
            return solve, "recorded"
        if (record.report.outcome, record.report.reason, record.report.context) == (
            report.outcome, report.reason, report.context
        ):
            return solve, "unchanged"
        record.report, record.report_count, record.updated_ms = report, record.report_count + 1, now
        return solve, "updated"

    @staticmethod
    def _balance(account: Account, now: int) -> int:
        """Granted credits minus those still held by solves that were not refunded."""
        return account.granted - sum(1 for solve in account.solves if solve.holds_credit_at(now))

    def _set_balance(self, account: Account, credits: int) -> None:
        """Adjust `granted` so the balance is `credits` right now."""
        account.granted = credits + account.granted - self._balance(account, now_ms())

    def _render_account(self, account: Account, now: int) -> dict[str, object]:
        """The account object, with the plan's day when the account has a plan."""
        return {
            "object": "account",
            "id": account.id,
            "email": account.email,
            "credits_balance": self._balance(account, now),
            "created_at": rfc3339(account.created_ms),
            "plan": None if account.daily_solves is None else self._render_plan(account, now),
            "livemode": False,
        }

    @staticmethod
    def _render_plan(account: Account, now: int) -> dict[str, object]:
        """Today's (UTC) allowance: solves created today that still hold their credit count as used."""
        day_start = now - now % DAY_MS
        daily = int(account.daily_solves or 0)
        used = sum(1 for s in account.solves if s.created_ms >= day_start and s.holds_credit_at(now))
        return {
            "id": "plan_sandbox",
            "name": "Sandbox",
            "daily_solves": daily,
            "used_today": used,
            "remaining_today": max(0, daily - used),
            "resets_at": rfc3339(day_start + DAY_MS),
        }

    def _wait_and_render(self, solve: Solve, wait_s: int | None, now: int) -> dict[str, object]:
        """Block (releasing the lock) until terminal, `wait_s` elapsed, or closing; render then.
        A reset meanwhile raises Interrupted: the solve belonged to the sandbox before it."""
        if wait_s is not None:
            deadline, interrupt = time.monotonic() + wait_s, self._interrupt
            while not self._closing and solve.status_at(now) not in TERMINAL:
                if interrupt.is_set():
                    raise Interrupted
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(min(remaining, (solve.finish_ms - now) / 1000))
                now = now_ms()
        return solve.render(now)


def _check_credits(credits: object, param: str = "credits") -> int:
    """A count of credits or solves, never negative (booleans are not numbers here)."""
    if isinstance(credits, bool) or not isinstance(credits, int) or credits < 0:
        raise InvalidField(param, f"{param} must be an integer of at least 0.")
    return credits
