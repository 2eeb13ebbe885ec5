"""What an agent should do next, for every error and solve-failure code the API documents.

One table per source of trouble (HTTP error codes, solve-failure codes, local problems),
all producing the same `Guidance` shape, so an agent learns one vocabulary of actions.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Action = Literal[
    "retry",
    "retry_with_new_proxy",
    "fix_proxy",
    "check_url",
    "fix_parameter",
    "top_up",
    "check_api_key",
    "configure_payment",
    "check_state_dir",
    "contact_support",
    "wait_for_slot",
    "wait_and_retry",
    "poll",
    "check_solve_id",
    "check_status_first",
    "confirm_payment",
    "change_policy",
    "none",
]


class Guidance(BaseModel):
    """Machine-readable next step attached to every failure and every unfinished solve."""

    action: Action = Field(description="What to do next, from a fixed vocabulary.")
    retryable: bool = Field(description="Whether repeating the same call (after any wait) can succeed.")
    retry_after_seconds: float | None = Field(default=None, description="Wait at least this long before retrying.")
    hint: str = Field(description="One or two sentences for the agent or the user.")


def _g(action: Action, retryable: bool, hint: str) -> Guidance:
    return Guidance(action=action, retryable=retryable, hint=hint)


# HTTP error codes of the NoneCap v1 API (seed: "HTTP status codes").
API_ERRORS: dict[str, Guidance] = {
    "invalid_request": _g("fix_parameter", False, "The request was malformed or missed a required field; fix the named parameter and call again."),
    "unauthorized": _g("check_api_key", False, "The API key is missing, malformed, revoked or unknown. Ask the user to run `nonecap-mcp auth login` or set NONECAP_API_KEY; do not retry."),
    "insufficient_credits": _g("top_up", False, "The account has no credits left. Ask the user to top up at https://dashboard.nonecap.com/billing; retrying will not help until then."),
    "account_locked": _g("contact_support", False, "An administrator locked this account. Tell the user to contact NoneCap support; do not retry."),
    "not_found": _g("check_solve_id", False, "No solve has this id (or it was purged after 30 days). Use list_solves to find recent ids."),
    "conflict": _g("none", False, "The solve is already finished and cannot be cancelled; nothing was charged by this call. get_solve shows its final state."),
    "validation_error": _g("fix_parameter", False, "A field value was rejected; fix the named parameter and call again."),
    "rate_limited": _g("wait_and_retry", True, "Too many requests; wait retry_after_seconds, then retry."),
    "concurrency_limit_exceeded": _g("wait_for_slot", True, "The account already has its maximum number of solves in flight; wait for one to finish (get_solve with wait_seconds), then retry."),
    "internal_error": _g("retry", True, "NoneCap had an unexpected error; retry shortly, and contact support if it persists."),
    "pool_exhausted": _g("wait_and_retry", True, "All NoneCap workers are busy and nothing was created or charged; wait retry_after_seconds, then retry."),
}

# Solve-failure codes (seed: "Solve-failure codes"); they ride on terminal, non-solved solves.
SOLVE_FAILURES: dict[str, Guidance] = {
    "challenge_not_loaded": _g("retry_with_new_proxy", True, "The hCaptcha challenge never displayed, usually proxy/IP reputation. Retry with a different proxy. The credit was refunded."),
    "token_not_granted": _g("retry", True, "hCaptcha did not issue a token. Retry; if it persists, use a higher-quality proxy IP. The credit was refunded."),
    "challenge_expired": _g("retry", True, "hCaptcha expired the challenge before the solve completed. Retry the solve. The credit was refunded."),
    "challenge_errored": _g("retry", True, "hCaptcha aborted the challenge widget. Retry the solve. The credit was refunded."),
    "proxy_error": _g("fix_proxy", True, "The proxy failed to connect or authenticate, or its IP was refused. Fix or swap the proxy, then retry. The credit was refunded."),
    "target_unreachable": _g("check_url", False, "The target url did not load. Verify the url is correct and reachable before retrying. The credit was refunded."),
    "vision_error": _g("retry", True, "Internal error in the solving pipeline. Retry; contact support if it persists. The credit was refunded."),
    "cancelled": _g("none", True, "The solve was cancelled and its credit refunded. Create a new solve if you still need a token."),
    "expired": _g("retry", True, "The solve ran out of time before producing a token and was never billed. Retry the solve."),
}

# Problems found on our side of the wire.
LOCAL: dict[str, Guidance] = {
    "missing_api_key": _g("check_api_key", False, "No API key is configured. Ask the user to run `nonecap-mcp auth login` in a terminal or set NONECAP_API_KEY in the server's env; `nonecap-mcp serve --sandbox` works offline without one."),
    "invalid_api_key": _g("check_api_key", False, "The configured API key is malformed (the message says how), so nothing was sent. Ask the user to copy it again into NONECAP_API_KEY or `nonecap-mcp auth login`; retrying will not help."),
    "keyring_error": _g("check_api_key", False, "The OS keyring could not be read. Set NONECAP_API_KEY in the server's env instead, or unlock the keyring."),
    "invalid_argument": _g("fix_parameter", False, "Fix the named parameter and call again; nothing was sent."),
    "connection_error": _g("retry", True, "NoneCap could not be reached. Retry shortly; check the network or NONECAP_API_BASE if it persists."),
    "outcome_unknown": _g("check_status_first", False, "The create request may or may not have created a solve. Call list_solves (newest first) and look for it before creating another, so nothing is paid twice."),
    "unexpected_response": _g("retry", True, "NoneCap answered with something this client does not understand. Retry; report it if it persists."),
    "pending": _g("poll", True, "The solve is still running. Call get_solve with this id and wait_seconds (up to 55) to wait for the result; no new solve is needed."),
    "missing_wallet": _g("configure_payment", False, "No x402 wallet is configured. Ask the user to run `nonecap-mcp wallet create` or `wallet import` in a terminal, or set NONECAP_WALLET_PRIVATE_KEY; or use rail=credits."),
    "no_payment_method": _g("configure_payment", False, "Neither an API key (credits) nor an x402 wallet is configured. Ask the user to run `nonecap-mcp auth login` or `nonecap-mcp wallet create`; `nonecap-mcp serve --sandbox` works offline."),
    "confirmation_required": _g("confirm_payment", False, "This payment is above the confirmation threshold. Ask the user; if they agree, call again with confirm_payment=true."),
    "unknown_x402_solve": _g("check_solve_id", False, "No x402 solve with this id is in this machine's ledger; list_solves with rail=x402 shows them."),
    "confirmation_declined": _g("none", False, "The user declined this payment and nothing was paid. Do not retry unless they ask."),
    "unexpected_error": _g("check_status_first", False, "Something unexpected failed inside nonecap-mcp (the server log has details). Before repeating a create_solve, check list_solves so nothing is paid twice; report the problem if it persists."),
    "refetch_failed": _g("retry", True, "The solve was paid and solved, but re-fetching its token (free) failed just now. Call get_solve again shortly; do not pay for a new solve."),
    "not_cancellable": _g("none", False, "x402 solves cannot be cancelled, and cost nothing unless they succeed; wait for it with get_solve."),
    "local_state_error": _g("check_state_dir", False, "The server could not read or write its local state (the x402 ledger in NONECAP_STATE_DIR, default ~/.local/state/nonecap-mcp). Only the user can fix this: ask them to check that directory's permissions and free disk space, or point NONECAP_STATE_DIR at a writable one and restart the server. Retrying before then fails the same way. If an x402 solve was under way, its payment may be unrecorded: have the user check the wallet (`nonecap-mcp wallet show`) before paying again."),
    "redirected": _g("check_status_first", False, "The upstream (or a proxy or captive portal in between) answered with a redirect, which is never followed so keys and payments go nowhere else. Ask the user to check NONECAP_API_BASE / NONECAP_X402_BASE and the network; retrying will not help until then. If this was create_solve, call list_solves before creating another, so nothing is paid twice."),
    "response_too_large": _g("check_status_first", False, "The upstream answered with a body far larger than any NoneCap answer, so it was not read: usually a wrong NONECAP_API_BASE / NONECAP_X402_BASE or something in between. Ask the user to check them; if this was create_solve, call list_solves before creating another, so nothing is paid twice."),
    "deadline_exceeded": _g("check_status_first", True, "The call reached its time limit (wait_seconds + 10 s) before the upstream answered. If it was create_solve, call list_solves before creating another; otherwise retry shortly."),
    "payment_outcome_unknown": _g("check_status_first", False, "The paid request got no answer, so the payment may have settled; it was counted against the daily budget and was not re-sent. Check the wallet balance before paying for another solve of this page."),
}

# x402 rail statuses (x402-rail contract: "Failure modes"); no failure here is ever settled.
X402_STATUSES: dict[int, Guidance] = {
    400: _g("fix_parameter", False, "The x402 rail refused the task (unsupported type or malformed body); nothing was paid. Fix the call or use rail=credits."),
    402: _g("none", False, "The x402 rail did not accept the payment (invalid, expired or unfunded authorization); nothing was settled. Check the wallet's USDC balance with get_balance."),
    422: _g("retry", True, "No provider could solve this captcha; nothing was charged. Retry, or check the sitekey and url."),
    429: _g("wait_and_retry", True, "The x402 rail allows 60 requests a minute per IP; wait retry_after_seconds, then retry. Nothing was charged."),
    503: _g("wait_and_retry", True, "No x402 provider is available for this task type right now; nothing was charged. Retry later or use rail=credits."),
    504: _g("retry", True, "The x402 solve did not finish within 60 seconds and nothing was settled. Retry the solve."),
}

# Failure codes we put on x402 solves (the rail reports failures as statuses, not codes).
X402_FAILURES: dict[str, Guidance] = {
    **{f"x402_http_{status}": guidance for status, guidance in X402_STATUSES.items()},
    "x402_unsolvable": X402_STATUSES[422],
    "x402_timeout": X402_STATUSES[504],
    "payment_outcome_unknown": LOCAL["payment_outcome_unknown"],
}

_BY_STATUS_FALLBACK: dict[bool, Guidance] = {
    True: _g("retry", True, "The service had a server-side problem; retry shortly."),
    False: _g("fix_parameter", False, "The request was refused; read the message and fix the call before retrying."),
}


def for_api_error(code: str, http_status: int, retry_after: float | None = None) -> Guidance:
    """Guidance for an API error envelope; unknown codes fall back on the status class."""
    base = API_ERRORS.get(code) or _BY_STATUS_FALLBACK[http_status >= 500]
    return base.model_copy(update={"retry_after_seconds": retry_after}) if retry_after is not None else base


def for_x402_status(status: int, retry_after: float | None = None) -> Guidance:
    """Guidance for an x402 rail failure status; nothing in this table was ever settled."""
    base = X402_STATUSES.get(status) or _BY_STATUS_FALLBACK[status >= 500]
    return base.model_copy(update={"retry_after_seconds": retry_after}) if retry_after is not None else base


def for_solve(status: str, error_code: str | None) -> Guidance | None:
    """Guidance for a solve: None when solved, a poll hint while running, the failure's otherwise."""
    if status == "solved":
        return None
    if status in ("failed", "cancelled", "expired"):
        code = error_code or status
        return SOLVE_FAILURES.get(code) or X402_FAILURES.get(code) or SOLVE_FAILURES.get(status) or _BY_STATUS_FALLBACK[True]
    return LOCAL["pending"]
