"""Test sitekeys: how the sandbox decides what a solve will do, like a payment API's test cards.

They drive both rails: `sitekey` on POST /v1/solves and `task.websiteKey` on the x402 rail's
POST /x402/createTask (where the solve is synchronous, capped at 60 s: a failure is a 422,
an expiry or a longer solve a 504, and neither is charged). `sandbox-refuse-<code>` is for
the credits API only: its create is refused before anything exists.

The outcome and its timing are fixed when the solve is created (a `Plan`), so everything
afterwards is a pure function of the clock and no background ticker is needed. Codes,
reasons, warnings and refusals follow the live API as the official client (`nonecap`
0.11) documents it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nonecap_mcp.config import scaled
from nonecap_mcp.sandbox.errors import STATUS_BY_CODE, ApiError

# The sandbox's own durations, in the process's time scale (`config.scaled`); a test sitekey's
# explicit N is the caller's choice and is taken as given, like an agent's wait_seconds.
BUDGET_MS = round(scaled(120_000))  # the time budget after which a solve that is still running expires
MAX_SOLVE_MS = 90_000  # test durations are capped at the longest ?wait
NORMAL_MS = round(scaled(1_500))
FAIL_MS = round(scaled(300))
EXPIRE_MS = round(scaled(2_000))
HANG_PICKUP_MS = round(scaled(200))

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
    "internal_error": "An unexpected error stopped this solve. Retry; nothing was charged.",
    "unsolvable_variant": (
        "This challenge variant is not one the solver can complete. Retrying unchanged will not help; "
        "nothing was charged."
    ),
    "capacity_exhausted": "No solver capacity was free for this solve in time. Retry shortly; nothing was charged.",
}
# Typed sub-reasons (`error.reason`): what the solver knew beyond the code. Any may ride on any
# failure code in the sandbox; the message then says what the reason means.
REASON_MESSAGES: dict[str, str] = {
    "sitekey_rate_limited": "hCaptcha is rate-limiting this sitekey. Wait before the next solve for it.",
    "passive_required": (
        "This sitekey only grants tokens passively (no challenge), which this solve's IP and browser did not earn. "
        "A cleaner (residential) proxy is needed."
    ),
    "rounds_exhausted": "hCaptcha kept serving new rounds until the solver gave up. Retry the solve.",
    "proxy_rejected": "hCaptcha refused the proxy's IP. Retry with a different proxy.",
    "proxy_tls": "TLS through the proxy failed (it breaks or intercepts TLS). Fix or swap the proxy.",
    "proxy_stalled": "The proxy stopped passing data mid-solve. Retry with a different proxy or exit.",
    "proxy_egress_blocked": "The proxy refused to connect to hCaptcha. Allow hCaptcha through it, or swap it.",
    "target_egress_blocked": "The target page could not be reached from the solver's egress. Check the url.",
    "profile_engine_unavailable": "A solver component was briefly unavailable. Retry shortly.",
    "type_not_served": "This captcha type is not served for this sitekey. Check type (hcaptcha or hcaptcha_enterprise).",
    "browser_lane_capped": "Solver browser capacity for this kind of solve is at its cap. Retry in a little while.",
    "recaptcha_not_loaded": "The page did not load the expected captcha widget. Check the url and the type.",
    "refused_wording_unescaped": "The solver refused this challenge's wording. Retry; a new challenge usually differs.",
    "session_capped": "Your own-proxy sessions for this sitekey are at their limit. Wait for running solves to finish.",
}
# `error.retryable`: whether re-submitting the same request unchanged can succeed.
NOT_RETRYABLE = frozenset({
    "target_unreachable", "unsolvable_variant", "passive_required", "proxy_tls", "proxy_egress_blocked",
    "target_egress_blocked", "type_not_served", "recaptcha_not_loaded",
})  # fmt: skip
WARNING_MESSAGES: dict[str, str] = {
    "proxy_session_refused": (
        "The last token(s) you reported from this proxy session were rejected. "
        "Switch to a new proxy session for your next solves."
    ),
    "proxy_recommended": (
        "This page is much more likely to accept a token solved through the connection you submit it from. "
        "Send your proxy in proxy. The solve still ran."
    ),
}
# Creates the live API refuses before anything exists: code -> (Retry-After seconds, message).
REFUSALS: dict[str, tuple[int | None, str]] = {
    "sitekey_rate_limited": (30, (
        "hCaptcha is refusing challenges for this sitekey right now, so the submit was shed and nothing was "
        "charged. Retry after the Retry-After delay; a different proxy pool will not help."
    )),
    "proxy_unavailable": (60, (
        "Nearly every recent solve through this proxy failed because it refused the connection, so submits "
        "through it are shed. Fix the proxy or switch exit; one submit is let through after Retry-After."
    )),
    "rate_capped": (10, (
        "Your account reached its submit rate cap on this sitekey for the trailing minute. Nothing was charged; "
        "retry after Retry-After."
    )),
    "maintenance": (30, "New solves are paused for maintenance; nothing was created or charged. Retry shortly."),
    "key_credit_limit_exceeded": (None, (
        "This API key reached its own credit limit (the account may still have credits). Raise the key's limit "
        "in the dashboard or use another key."
    )),
}  # fmt: skip
TERMINAL_MESSAGES: dict[str, str] = {
    **FAILURE_MESSAGES,
    "cancelled": "The caller cancelled the job.",
    "expired": "Solve exceeded its time budget before producing a token (never billed).",
}

TEST_SITEKEYS: dict[str, str] = {
    "sandbox-solve-<N>ms|s": "solved after N (queued for the first 20%, then solving); N capped at 90 s",
    "sandbox-fail-<code>[-<reason>][-<N>ms|s]": (
        f"failed after {FAIL_MS} ms (or N) with error.code <code>, one of: " + ", ".join(FAILURE_MESSAGES)
        + "; and error.reason <reason>, one of: " + ", ".join(REASON_MESSAGES)
        + "; error.retryable is false for " + ", ".join(sorted(NOT_RETRYABLE))
    ),
    "sandbox-warn-<warning>[-<N>ms|s]": (
        f"solved after {NORMAL_MS / 1000:g} s (or N) with warnings [<warning>], one of: " + ", ".join(WARNING_MESSAGES)
    ),
    "sandbox-refuse-<code>": (
        "credits API only: the create is refused with that error and nothing is created or charged: "
        + ", ".join(f"{code} ({STATUS_BY_CODE[code]})" for code in REFUSALS) + ", each with Retry-After but the 402"
    ),
    "sandbox-expire[-<N>ms|s]": (
        f"expired after {EXPIRE_MS / 1000:g} s (or N, max {BUDGET_MS / 1000:g} s) while still queued: "
        "started_at and resolve_ms null, queue_ms the full wait"
    ),
    "sandbox-hang": (
        f"picked up after {HANG_PICKUP_MS} ms, then solving until the {BUDGET_MS / 1000:g} s budget runs out, "
        "then expired (for timeout and cancel tests)"
    ),
    "sandbox-<anything else>": "422 validation_error (param sitekey), so a mistyped test sitekey is caught",
    "2x00000000000000000000AB, 2x00000000000000000000BB (Turnstile's always-blocking test keys)": (
        f"failed after {FAIL_MS} ms with error.code token_not_granted"
    ),
    "<any other sitekey>": f"solved after {NORMAL_MS / 1000:g} s ({NORMAL_MS // 5} ms queued)",
}

# The captcha vendors' own test sitekeys behave here as their documentation says, so an agent tried
# on a page that uses one meets what the live widget does: the passing ones (hCaptcha's
# 10000000-ffff-ffff-ffff-000000000001, reCAPTCHA v2's 6LeIxAcTAAAAAJcZVRqyHh71UMIEGNQ_MXjiZKhI,
# Turnstile's 1x…AA, 1x…BB and 3x…FF) solve like any other sitekey; Turnstile's "always blocks"
# keys grant no token.
VENDOR_BLOCKING_SITEKEYS = frozenset({"2x00000000000000000000AB", "2x00000000000000000000BB"})

_DURATION = r"(?P<n>\d{1,9})(?P<unit>ms|s)"
_SOLVE = re.compile(rf"sandbox-solve-{_DURATION}")
_FAIL = re.compile(rf"sandbox-fail-(?P<code>[a-z_]+)(?:-(?P<reason>[a-z_]+))?(?:-{_DURATION})?")
_WARN = re.compile(rf"sandbox-warn-(?P<warning>[a-z_]+)(?:-{_DURATION})?")
_REFUSE = re.compile(r"sandbox-refuse-(?P<code>[a-z_]+)")
_EXPIRE = re.compile(rf"sandbox-expire(?:-{_DURATION})?")


@dataclass(frozen=True)
class Plan:
    """What a solve will do: picked up after `queue_ms` (None: never), terminal after `total_ms`."""

    outcome: str  # solved, failed or expired
    queue_ms: int | None
    total_ms: int
    error_code: str | None = None
    reason: str | None = None  # error.reason of a failure
    warning: str | None = None  # the one warning a solved solve carries


def plan_for(sitekey: str) -> Plan:
    """The plan a sitekey asks for; a `sandbox-` sitekey that matches no pattern is a 422."""
    if sitekey in VENDOR_BLOCKING_SITEKEYS:
        return Plan("failed", FAIL_MS // 5, FAIL_MS, "token_not_granted")
    if not sitekey.startswith("sandbox-"):
        return _solved(NORMAL_MS)
    if sitekey == "sandbox-hang":
        return Plan("expired", HANG_PICKUP_MS, BUDGET_MS, "expired")
    if match := _SOLVE.fullmatch(sitekey):
        return _solved(_duration_ms(match, MAX_SOLVE_MS))
    if (match := _FAIL.fullmatch(sitekey)) and match["code"] in FAILURE_MESSAGES:
        if match["reason"] is None or match["reason"] in REASON_MESSAGES:
            total = _duration_ms(match, MAX_SOLVE_MS) if match["n"] else FAIL_MS
            return Plan("failed", total // 5, total, match["code"], match["reason"])
    if (match := _WARN.fullmatch(sitekey)) and match["warning"] in WARNING_MESSAGES:
        total = _duration_ms(match, MAX_SOLVE_MS) if match["n"] else NORMAL_MS
        return Plan("solved", total // 5, total, warning=match["warning"])
    if (match := _REFUSE.fullmatch(sitekey)) and match["code"] in REFUSALS:
        retry_after, message = REFUSALS[match["code"]]
        headers = () if retry_after is None else (("Retry-After", str(retry_after)),)
        raise ApiError(match["code"], message, headers=headers)
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
