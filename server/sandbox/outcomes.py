"""Test sitekeys: how the sandbox decides what a solve will do, like a payment API's test cards.

They drive both rails: `sitekey` on POST /v1/solves and `task.websiteKey` on the x402 rail's
POST /x402/createTask (where the solve is synchronous, capped at 60 s: a failure is a 422,
an expiry or a longer solve a 504, and neither is charged).

The outcome and its timing are fixed when the solve is created (a `Plan`), so everything
afterwards is a pure function of the clock and no background ticker is needed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nonecap_mcp.sandbox.errors import ApiError

BUDGET_MS = 120_000  # the time budget after which a solve that is still running expires
MAX_SOLVE_MS = 90_000  # test durations are capped at the longest ?wait
NORMAL_MS = 1_500
FAIL_MS = 300
EXPIRE_MS = 2_000
HANG_PICKUP_MS = 200

# Solve-failure codes with the seed's own descriptions, used as Solve.error.message.
FAILURE_MESSAGES: dict[str, str] = {
    "challenge_not_loaded": (
        "The hCaptcha challenge never displayed. Usually proxy/IP reputation — retry with a different proxy."
    ),
    "token_not_granted": (
        "The challenge was completed but hCaptcha did not issue a token. "
        "Retry; if it persists, use a higher-quality proxy IP."
    ),
    "challenge_expired": "hCaptcha expired the challenge before the solve completed. Retry the solve.",
    "challenge_errored": "hCaptcha aborted the challenge widget. Retry the solve.",
    "proxy_error": (
        "The supplied proxy failed to connect or auth, or its IP was refused by hCaptcha. Fix or swap the proxy."
    ),
    "target_unreachable": "The target url did not load. Verify it is reachable.",
    "vision_error": "Internal error in the solving pipeline. Retry; contact support if it persists.",
}
TERMINAL_MESSAGES: dict[str, str] = {
    **FAILURE_MESSAGES,
    "cancelled": "The caller cancelled the job.",
    "expired": "Solve exceeded its time budget before producing a token (never billed).",
}

TEST_SITEKEYS: dict[str, str] = {
    "sandbox-solve-<N>ms|s": "solved after N (queued for the first 20%, then solving); N capped at 90 s",
    "sandbox-fail-<code>[-<N>ms|s]": (
        f"failed after {FAIL_MS} ms (or N) with error.code <code>, one of: " + ", ".join(FAILURE_MESSAGES)
    ),
    "sandbox-expire[-<N>ms|s]": (
        f"expired after {EXPIRE_MS // 1000} s (or N, max {BUDGET_MS // 1000} s) while still queued: "
        "started_at and resolve_ms null, queue_ms the full wait"
    ),
    "sandbox-hang": (
        f"picked up after {HANG_PICKUP_MS} ms, then solving until the {BUDGET_MS // 1000} s budget runs out, "
        "then expired (for timeout and cancel tests)"
    ),
    "sandbox-<anything else>": "422 validation_error (param sitekey), so a mistyped test sitekey is caught",
    "<any other sitekey>": f"solved after {NORMAL_MS / 1000:g} s ({NORMAL_MS // 5} ms queued)",
}

_DURATION = r"(?P<n>\d{1,9})(?P<unit>ms|s)"
_SOLVE = re.compile(rf"sandbox-solve-{_DURATION}")
_FAIL = re.compile(rf"sandbox-fail-(?P<code>[a-z_]+)(?:-{_DURATION})?")
_EXPIRE = re.compile(rf"sandbox-expire(?:-{_DURATION})?")


@dataclass(frozen=True)
class Plan:
    """What a solve will do: picked up after `queue_ms` (None: never), terminal after `total_ms`."""

    outcome: str  # solved, failed or expired
    queue_ms: int | None
    total_ms: int
    error_code: str | None = None


def plan_for(sitekey: str) -> Plan:
    """The plan a sitekey asks for; a `sandbox-` sitekey that matches no pattern is a 422."""
    if not sitekey.startswith("sandbox-"):
        return _solved(NORMAL_MS)
    if sitekey == "sandbox-hang":
        return Plan("expired", HANG_PICKUP_MS, BUDGET_MS, "expired")
    if match := _SOLVE.fullmatch(sitekey):
        return _solved(_duration_ms(match, MAX_SOLVE_MS))
    if (match := _FAIL.fullmatch(sitekey)) and match["code"] in FAILURE_MESSAGES:
        total = _duration_ms(match, MAX_SOLVE_MS) if match["n"] else FAIL_MS
        return Plan("failed", total // 5, total, match["code"])
    if match := _EXPIRE.fullmatch(sitekey):
        total = _duration_ms(match, BUDGET_MS) if match["n"] else EXPIRE_MS
        return Plan("expired", None, total, "expired")
    raise ApiError(
        "validation_error",
        "Unknown sandbox test sitekey. Sitekeys starting with sandbox- must match one of: "
        + "; ".join(
            pattern for pattern in TEST_SITEKEYS if pattern.startswith("sandbox-") and "<anything" not in pattern
        )
        + ".",
        param="sitekey",
    )


def _solved(total_ms: int) -> Plan:
    """A solve that queues for the first 20% of its time and solves for the rest."""
    return Plan("solved", total_ms // 5, total_ms)


def _duration_ms(match: re.Match[str], cap_ms: int) -> int:
    """`<N>ms` or `<N>s` in milliseconds, capped so a typo cannot park a solve for days."""
    value = int(match["n"]) * (1 if match["unit"] == "ms" else 1000)
    return min(value, cap_ms)
