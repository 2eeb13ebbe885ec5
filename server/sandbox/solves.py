"""The solve record, its ids and tokens, and how it looks at a given instant.

A solve stores only its schedule (created, picked up, finished, in epoch milliseconds) and
its planned outcome; status, timestamps, queue_ms, resolve_ms, credits_charged and the
refund are all derived from the clock when asked. Integer milliseconds keep the rendered
timestamps and durations exactly consistent with each other.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass

from nonecap_mcp.sandbox.outcomes import NOT_RETRYABLE, REASON_MESSAGES, TERMINAL_MESSAGES, WARNING_MESSAGES, Plan
from nonecap_mcp.sandbox.validation import Feedback, SolveRequest

IN_FLIGHT = frozenset({"pending", "solving"})
REFUNDED = frozenset({"failed", "cancelled", "expired"})
TERMINAL = REFUNDED | {"solved"}
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RANDOM_BITS = 80
SANDBOX_USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)


def now_ms() -> int:
    """Wall-clock epoch milliseconds, the one time base of the sandbox."""
    return time.time_ns() // 1_000_000


def rfc3339(ms: int) -> str:
    """RFC 3339 UTC with milliseconds and a `Z`, e.g. 2025-01-31T12:00:00.123Z."""
    seconds, millis = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


class UlidGenerator:
    """Strictly monotonic ULIDs, so sorting ids sorts creation order even within one millisecond.

    Within one millisecond (or if the clock steps back) the random part is incremented
    instead of redrawn, as the ULID spec's monotonic mode does.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0

    def new(self, ms: int) -> str:
        """The next ULID at or after `ms`, as 26 Crockford base32 characters."""
        with self._lock:
            value = (ms << _RANDOM_BITS) | secrets.randbits(_RANDOM_BITS)
            if value <= self._last:
                value = self._last + 1
            self._last = value
        return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def sandbox_token() -> str:
    """A P1_-shaped token that no one could mistake for a real hCaptcha pass."""
    return f"P1_SANDBOX_{secrets.token_urlsafe(32)}_NOT_A_REAL_HCAPTCHA_TOKEN"


@dataclass
class FeedbackRecord:
    """The verdict stored for one solve: the latest report wins, `report_count` counts writes."""

    report: Feedback
    report_count: int
    created_ms: int
    updated_ms: int

    def render(self, solve_id: str) -> dict[str, object]:
        """The API's feedback object."""
        return {
            "object": "feedback",
            "solve_id": solve_id,
            "outcome": self.report.outcome,
            "reason": self.report.reason,
            "context": self.report.context,
            "reported_at": self.report.reported_at,
            "report_count": self.report_count,
            "created_at": rfc3339(self.created_ms),
            "updated_at": rfc3339(self.updated_ms),
        }


@dataclass
class Solve:
    """One solve's schedule and outcome; mutated only by cancel, under the state lock."""

    id: str
    account_key: str
    type: str
    sitekey: str
    url: str
    created_ms: int
    start_ms: int | None  # None: never picked up
    finish_ms: int
    outcome: str
    error_code: str | None
    token: str  # shown only once solved, with resp_key and user_agent
    resp_key: str
    user_agent: str
    error_reason: str | None = None
    warning: str | None = None
    cancelled_ms: int | None = None
    feedback: FeedbackRecord | None = None

    @classmethod
    def scheduled(cls, solve_id: str, account_key: str, request: SolveRequest, plan: Plan, created_ms: int) -> Solve:
        """A new solve whose whole future is fixed by its plan."""
        return cls(
            id=solve_id,
            account_key=account_key,
            type=request.type,
            sitekey=request.sitekey,
            url=request.url,
            created_ms=created_ms,
            start_ms=None if plan.queue_ms is None else created_ms + plan.queue_ms,
            finish_ms=created_ms + plan.total_ms,
            outcome=plan.outcome,
            error_code=plan.error_code,
            token=sandbox_token(),
            resp_key="E0_SANDBOX_" + secrets.token_urlsafe(24),
            user_agent=request.user_agent or SANDBOX_USER_AGENT,
            error_reason=plan.reason,
            warning=plan.warning,
        )

    def status_at(self, now: int) -> str:
        """Status at `now`: cancelled if cancelled, else the outcome once due, solving once picked up, else pending."""
        if self.cancelled_ms is not None:
            return "cancelled"
        if now >= self.finish_ms:
            return self.outcome
        if self.start_ms is not None and now >= self.start_ms:
            return "solving"
        return "pending"

    def holds_credit_at(self, now: int) -> bool:
        """The debited credit stays charged unless the solve failed, was cancelled or expired."""
        return self.status_at(now) not in REFUNDED

    def finished_at(self, now: int) -> int | None:
        """When it went terminal, if it has."""
        if self.cancelled_ms is not None:
            return self.cancelled_ms
        return self.finish_ms if now >= self.finish_ms else None

    def started_at(self, now: int) -> int | None:
        """When a worker picked it up, if one did before it ended."""
        end = self.cancelled_ms if self.cancelled_ms is not None else now
        if self.start_ms is None or end < self.start_ms:
            return None
        return self.start_ms

    def render(self, now: int) -> dict[str, object]:
        """The live solve object at `now` (plus `livemode: false`, which clients must ignore)."""
        status = self.status_at(now)
        started, finished = self.started_at(now), self.finished_at(now)
        solved = status == "solved"
        return {
            "id": self.id,
            "object": "solve",
            "type": self.type,
            "status": status,
            "sitekey": self.sitekey,
            "url": self.url,
            "token": self.token if solved else None,
            "resp_key": self.resp_key if solved else None,
            "user_agent": self.user_agent if solved else None,
            "warnings": [] if self.warning is None else [{"code": self.warning, "message": WARNING_MESSAGES[self.warning]}],
            "error": self._error(status),
            "credits_charged": None if status not in TERMINAL else int(status == "solved"),
            "created_at": rfc3339(self.created_ms),
            "started_at": None if started is None else rfc3339(started),
            "finished_at": None if finished is None else rfc3339(finished),
            "queue_ms": _queue_ms(self.created_ms, started, finished),
            "resolve_ms": None if started is None or finished is None else finished - started,
            "livemode": False,
        }

    def _error(self, status: str) -> dict[str, object] | None:
        """`{code, message, reason, retryable}` on failed, cancelled and expired; null otherwise."""
        if status not in REFUNDED:
            return None
        code = "cancelled" if status == "cancelled" else str(self.error_code)
        reason = self.error_reason if status == "failed" else None
        return {
            "code": code,
            "message": TERMINAL_MESSAGES[code] if reason is None else REASON_MESSAGES[reason],
            "reason": reason,
            "retryable": code not in NOT_RETRYABLE and reason not in NOT_RETRYABLE,
        }


def _queue_ms(created: int, started: int | None, finished: int | None) -> int | None:
    """Time queued: until pick-up, or the full wait if it ended unpicked; null while pending."""
    if started is not None:
        return started - created
    return None if finished is None else finished - created
