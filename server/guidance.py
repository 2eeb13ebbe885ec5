"""What an agent should do next, for every error and solve-failure code the API documents.

One table per source of trouble (HTTP error codes, solve-failure codes, local problems),
all producing the same `Guidance` shape, so an agent learns one vocabulary of actions.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, Field

from nonecap_mcp.catalogue import IMAGE_TYPES

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
    # Grown past the v1 seed (the official client's error classes).
    "forbidden": _g("check_api_key", False, "This API key is not allowed to do this (its scope). Ask the user for a key with the right scope; do not retry."),
    "key_credit_limit_exceeded": _g("check_api_key", False, "This API key reached its own credit limit (the account may still have credits). Ask the user to raise the key's limit in the dashboard or use another key; retrying will not help."),
    "payload_too_large": _g("fix_parameter", False, "The request body was too large for the API; shorten the largest argument (rqdata, user_agent) and call again."),
    "unsupported_media_type": _g("contact_support", False, "The API refused the request's content type, a bug in this client rather than in the call. Report it; retrying will not help."),
    "sitekey_rate_limited": _g("wait_and_retry", True, "hCaptcha is refusing challenges for this sitekey, so NoneCap shed the submit and charged nothing. Wait retry_after_seconds before the next solve for this sitekey."),
    "proxy_unavailable": _g("fix_proxy", True, "Nearly every recent solve through this proxy failed because it refused connections, so submits through it are shed; nothing was charged. Fix the proxy or use another one; the same proxy is re-checked after retry_after_seconds."),
    "rate_capped": _g("wait_and_retry", True, "The account's submit rate cap on this sitekey (or its own-proxy sessions for it) is reached; nothing was charged. Wait retry_after_seconds, then retry."),
    "maintenance": _g("wait_and_retry", True, "NoneCap paused new solves for maintenance; nothing was created or charged. Wait retry_after_seconds (or a minute), then retry."),
    "not_eligible": _g("check_solve_id", False, "Only your own solves that produced a token (status solved) can be reported. If the solve is still pending, report it once get_solve shows it solved; otherwise check the id."),
    "expired_window": _g("none", False, "This solve is too old to report (about 30 days); nothing to do."),
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
    "internal_error": _g("retry", True, "An unexpected NoneCap error stopped this solve. Retry; contact support if it persists. The credit was refunded."),
    "unsolvable_variant": _g("contact_support", False, "NoneCap cannot solve this challenge variant; retrying unchanged will not help. Tell the user (support can say whether it is coming). The credit was refunded."),
    "capacity_exhausted": _g("wait_and_retry", True, "No solver capacity was free for this solve in time. Wait a minute, then retry. The credit was refunded."),
    "cancelled": _g("none", True, "The solve was cancelled and its credit refunded. Create a new solve if you still need a token."),
    "expired": _g("retry", True, "The solve ran out of time before producing a token and was never billed. Retry the solve."),
}

# Sub-reasons (`error.reason`) of solve failures: more specific than the code, so they win.
SOLVE_REASONS: dict[str, Guidance] = {
    "sitekey_rate_limited": _g("wait_and_retry", True, "hCaptcha is rate-limiting this sitekey. Wait a minute or two before the next solve for it; a new proxy will not help. The credit was refunded."),
    "passive_required": _g("retry_with_new_proxy", False, "This sitekey only grants tokens passively (no challenge), which depends on IP reputation: retrying unchanged will not help. Retry through a cleaner (residential) proxy, with the page's real user_agent. The credit was refunded."),
    "rounds_exhausted": _g("retry", True, "hCaptcha kept serving new rounds until the solver gave up. Retry; a fresh session usually gets fewer. The credit was refunded."),
    "proxy_rejected": _g("retry_with_new_proxy", True, "hCaptcha refused the proxy's IP. Retry with a different proxy (or exit IP). The credit was refunded."),
    "proxy_stalled": _g("retry_with_new_proxy", True, "The proxy stopped passing data mid-solve. Retry with a different proxy or exit. The credit was refunded."),
    "proxy_tls": _g("fix_proxy", False, "TLS through the proxy failed (it breaks or intercepts TLS), so the same proxy will fail again. Fix the proxy or use another one. The credit was refunded."),
    "proxy_egress_blocked": _g("fix_proxy", False, "The proxy refused to connect to hCaptcha. Allow hCaptcha's domains through it or use another proxy. The credit was refunded."),
    "target_egress_blocked": _g("check_url", False, "The target page could not be reached from the solver's network. Check that url is public and right, or send a proxy that can reach it. The credit was refunded."),
    "profile_engine_unavailable": _g("retry", True, "A NoneCap solver component was briefly unavailable. Retry shortly. The credit was refunded."),
    "type_not_served": _g("fix_parameter", False, "This captcha type is not served for this sitekey. Check type (hcaptcha vs hcaptcha_enterprise) against the page. The credit was refunded."),
    "browser_lane_capped": _g("wait_and_retry", True, "NoneCap's browser capacity for this kind of solve is at its cap. Wait a minute, then retry. The credit was refunded."),
    "recaptcha_not_loaded": _g("check_url", False, "The page did not load the expected captcha widget. Check the url (the page with the widget) and the type. The credit was refunded."),
    "refused_wording_unescaped": _g("retry", True, "The solver refused this challenge's wording. Retry; a new challenge usually differs. The credit was refunded."),
    "session_capped": _g("wait_for_slot", True, "Your own-proxy sessions for this sitekey are at their limit. Wait for running solves to finish (get_solve), or use another proxy session, then retry. The credit was refunded."),
}

# Problems found on our side of the wire.
LOCAL: dict[str, Guidance] = {
    "missing_api_key": _g("check_api_key", False, "No API key is configured. Ask the user to run `nonecap-mcp auth login` in a terminal or set NONECAP_API_KEY in the server's env; `nonecap-mcp serve --sandbox` works offline without one."),
    "invalid_api_key": _g("check_api_key", False, "The configured API key is malformed (the message says how), so nothing was sent. Ask the user to copy it again into NONECAP_API_KEY or `nonecap-mcp auth login`; retrying will not help."),
    "keyring_error": _g("check_api_key", False, "The OS keyring could not be read. Set NONECAP_API_KEY in the server's env instead, or unlock the keyring."),
    "keyring_unavailable": _g("configure_payment", False, "This server cannot reach an OS keyring (MCP hosts often start servers without DBUS_SESSION_BUS_ADDRESS), so keys stored with `nonecap-mcp auth login` or `wallet create` are out of its reach. Ask the user to set NONECAP_API_KEY (credits) or NONECAP_WALLET_PRIVATE_KEY / NONECAP_WALLET_KEY_FILE (x402) in the server's env; `nonecap-mcp doctor` checks the setup."),
    "sandbox_solve_gone": _g("check_solve_id", False, "This sandbox was started by this server process, and its solves live only as long as the process. An id from an earlier process is gone; for solves that outlive a call, run `nonecap-mcp sandbox` and serve with --sandbox-url."),
    "invalid_argument": _g("fix_parameter", False, "Fix the named parameter and call again; nothing was sent."),
    "connection_error": _g("retry", True, "NoneCap could not be reached. Retry shortly; check the network or NONECAP_API_BASE if it persists."),
    "outcome_unknown": _g("check_status_first", False, "The create request may or may not have created a solve. Call list_solves (newest first) and look for it before creating another, so nothing is paid twice."),
    "unexpected_response": _g("retry", True, "NoneCap answered with something this client does not understand. Retry; report it if it persists."),
    "pending": _g("poll", True, "The solve is still running. Call get_solve with this id and wait_seconds (up to 55) to wait for the result; no new solve is needed."),
    "missing_wallet": _g("configure_payment", False, "No x402 wallet is configured. Ask the user to run `nonecap-mcp wallet create` or `wallet import` in a terminal, or set NONECAP_WALLET_PRIVATE_KEY; or use rail=credits."),
    "rail_not_configured": _g("configure_payment", False, "Only one rail sells this captcha type, and it is not set up here (the message names it and how to set it up); nothing was sent. Ask the user to set it up, then call again; get_pricing lists the types each rail sells."),
    "no_payment_method": _g("configure_payment", False, "Neither an API key (credits) nor an x402 wallet is configured. Ask the user to run `nonecap-mcp auth login` or `nonecap-mcp wallet create`; `nonecap-mcp serve --sandbox` works offline."),
    "confirmation_required": _g("confirm_payment", False, "This payment is above the confirmation threshold. Ask the user; if they agree, call again with confirm_payment=true."),
    "unknown_x402_solve": _g("check_solve_id", False, "No x402 solve with this id is in this machine's ledger; list_solves with rail=x402 shows them."),
    "confirmation_declined": _g("none", False, "The user declined this payment and nothing was paid. Do not retry unless they ask."),
    "unexpected_error": _g("check_status_first", False, "Something unexpected failed inside nonecap-mcp (the server log has details). Before repeating a create_solve, check list_solves so nothing is paid twice; report the problem if it persists."),
    "refetch_failed": _g("retry", True, "The solve was paid and solved, but re-fetching its token (free) failed just now. Call get_solve again shortly; do not pay for a new solve."),
    "not_cancellable": _g("none", False, "x402 solves cannot be cancelled, and cost nothing unless they succeed; wait for it with get_solve."),
    "local_state_error": _g("check_state_dir", False, "The server could not read or write its local state (the x402 ledger in NONECAP_STATE_DIR, default ~/.local/state/nonecap-mcp). Only the user can fix this: ask them to check that directory's permissions and free disk space, or point NONECAP_STATE_DIR at a writable one and restart the server. Retrying before then fails the same way. If an x402 solve was under way, its payment may be unrecorded: have the user check the wallet (`nonecap-mcp wallet show`) before paying again."),
    "operator_rate_capped": _g("wait_and_retry", True, "The operator's cap on solves per minute (NONECAP_MAX_SOLVES_PER_MINUTE) is reached and nothing was sent. Wait retry_after_seconds; if solves keep failing, stop and tell the user rather than looping."),
    "credit_budget_exceeded": _g("change_policy", False, "The operator's daily credit budget is used up and nothing was sent. Stop creating credits solves today (UTC), or ask the user to raise NONECAP_DAILY_CREDIT_BUDGET (or this client's budget)."),
    "site_not_allowed": _g("fix_parameter", False, "The operator allows solves only for the sites in NONECAP_ALLOWED_SITES; nothing was sent. Use an allowed url, or ask the user to add this site."),
    "type_not_allowed": _g("fix_parameter", False, "The operator allows only the captcha types in NONECAP_ALLOWED_TYPES; nothing was sent. Use an allowed type, or ask the user."),
    "read_only_client": _g("none", False, "This HTTP client is registered read-only (`nonecap-mcp clients add --read-only`); only an operator can change that. Use the read-only tools."),
    "payment_outcome_unknown": _g("check_status_first", False, "The paid request got no readable answer from the x402 rail, so the payment may have settled; it counts as spent against the daily budget and was not re-sent. The server checks the chain for it (get_solve or get_balance later shows whether it settled or was released); check list_solves with rail=x402 before paying for another solve of this page."),
    "x402_connection_error": _g("retry", True, "The x402 rail could not be reached, so nothing was sent or paid. Retry shortly; check the network or NONECAP_X402_BASE if it persists."),
    "x402_unexpected_response": _g("retry", True, "The x402 rail (or a gateway in front of it) answered something it does not document, such as an HTML page or a redirect; nothing was paid by this answer. Retry shortly; check NONECAP_X402_BASE if it persists."),
    "x402_setup_timeout": _g("retry", True, "The x402 rail did not offer a payment within the call's time, so nothing was signed or paid. Retry, with a larger wait_seconds if it persists, or use rail=credits."),
    "feedback_not_supported": _g("none", False, "x402 solves cannot be reported: the x402 rail takes no feedback. Nothing to do; report_solve works for credits solves (solve_…)."),
    # Operator set-up: raised where a tool call meets them (or at start-up, for invalid_config).
    "invalid_config": _g("configure_payment", False, "The server's configuration is invalid (the message names the setting). Only the user can fix it: ask them to correct that environment variable or flag and restart the server."),
    "invalid_wallet_key": _g("configure_payment", False, "The x402 wallet key is malformed or could not be read (the message says why). Ask the user to run `nonecap-mcp wallet import` in a terminal, or to fix NONECAP_WALLET_PRIVATE_KEY in the server's env; or use rail=credits."),
    "rpc_error": _g("retry", True, "The Base JSON-RPC endpoint failed. Retry shortly, or ask the user to set NONECAP_BASE_RPC_URL to another Base RPC provider."),
    "payment_refused": _g("none", False, "The x402 server asked for a payment that does not match the published price, payee, token or URL, so nothing was signed or paid. Do not retry; tell the user, who may report it to the service."),
    "budget_exceeded": _g("change_policy", False, "Stop paying for solves today, or ask the user to raise NONECAP_DAILY_BUDGET_USD; retrying before 00:00 UTC fails the same way. rail=credits is unaffected."),
    "redirected": _g("check_status_first", False, "The upstream (or a proxy or captive portal in between) answered with a redirect, which is never followed so keys and payments go nowhere else. Ask the user to check NONECAP_API_BASE / NONECAP_X402_BASE and the network; retrying will not help until then. If this was create_solve, call list_solves before creating another, so nothing is paid twice."),
    "response_too_large": _g("check_status_first", False, "The upstream answered with a body far larger than any NoneCap answer, so it was not read: usually a wrong NONECAP_API_BASE / NONECAP_X402_BASE or something in between. Ask the user to check them; if this was create_solve, call list_solves before creating another, so nothing is paid twice."),
    "deadline_exceeded": _g("check_status_first", True, "The call reached its time limit (wait_seconds + 10 s) before the upstream answered. If it was create_solve, call list_solves before creating another; otherwise retry shortly."),
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

# Advisories NoneCap puts on a solve (`warnings`; the official client's SolveWarning): they ride on
# solved solves, so their guidance is about the next solves, never about this token.
SOLVE_WARNINGS: dict[str, Guidance] = {
    "proxy_session_refused": _g("retry_with_new_proxy", False, "Solved: use this token now. Tokens reported from this solve's proxy session were refused by the site; switch to a new proxy session (a new IP) for the next solves, which are more likely to pass."),
    "proxy_recommended": _g("fix_proxy", False, "Solved: use this token now. This page accepts a token far more often when it was solved through the connection it is submitted from; for the next solves of this page, pass your own working proxy in `proxy`."),
}

# Failure codes we put on x402 solves (the rail reports failures as statuses, not codes).
X402_FAILURES: dict[str, Guidance] = {
    **{f"x402_http_{status}": guidance for status, guidance in X402_STATUSES.items()},
    "x402_unsolvable": X402_STATUSES[422],
    "x402_timeout": X402_STATUSES[504],
    "payment_outcome_unknown": LOCAL["payment_outcome_unknown"],
    "x402_connection_error": LOCAL["x402_connection_error"],
    "x402_no_solution": _g("contact_support", False, "The x402 rail answered success but sent no token; the payment counts as spent (settled, or unknown until the chain says). Do not re-fetch; create a new solve only if you still need a token, and report this to NoneCap support with the solve id."),
    "x402_result_lost": _g("none", False, "The chain shows this payment settled, so the rail solved it, but its answer never reached this server and the token cannot be recovered. The payment is spent; create a new solve if you still need a token."),
    "x402_not_settled": _g("retry", True, "The paid request's answer was lost, but its authorization expired unused on chain: nothing was paid and its budget was released. Create a new solve if you still need a token."),
}

_BY_STATUS_FALLBACK: dict[bool, Guidance] = {
    True: _g("retry", True, "The service had a server-side problem; retry shortly."),
    False: _g("fix_parameter", False, "The request was refused; read the message and fix the call before retrying."),
}
# An API code this client does not know yet (the API adds codes) still has a status that says what kind
# of refusal it is: a new throttle is not the agent's input to fix. Only NoneCap's own envelope speaks
# for the key and the account: a 401-403 without one (`http_403`, say from a proxy or WAF in front of
# the API) gets the plain fallback, never "replace your key".
_THROTTLED = _g("wait_and_retry", True, "NoneCap (or a gateway in front of it) is limiting requests; wait retry_after_seconds (or a minute), then retry.")
_BY_ENVELOPED_STATUS: dict[int, Guidance] = {
    401: API_ERRORS["unauthorized"],
    402: API_ERRORS["insufficient_credits"],
    403: API_ERRORS["forbidden"],
}


def _by_status(code: str, status: int) -> Guidance:
    if status == 429:
        return _THROTTLED
    enveloped = code != f"http_{status}"
    return (enveloped and _BY_ENVELOPED_STATUS.get(status)) or _BY_STATUS_FALLBACK[status >= 500]


class UnregisteredCodeWarning(RuntimeWarning):
    """An error was raised with a code no table here knows: a bug (tests turn it into a failure)."""


def for_code(code: str) -> Guidance:
    """The guidance registered for one of our error codes (local, x402 or API).

    An unregistered code is a bug: it warns (an error under the test suite's warning
    filter, a line on stderr in production) and gets the cautious `unexpected_error`
    guidance rather than a plausible-looking but wrong one.
    """
    found = LOCAL.get(code) or X402_FAILURES.get(code) or API_ERRORS.get(code)
    if found is None:
        warnings.warn(f"error code {code!r} has no guidance entry in nonecap_mcp.guidance", UnregisteredCodeWarning, stacklevel=3)
        return LOCAL["unexpected_error"]
    return found


def for_api_error(code: str, http_status: int, retry_after: float | None = None) -> Guidance:
    """Guidance for an API error: the API's own codes, then ours (a 200 this client cannot read
    is `unexpected_response`, not a refusal); unknown codes fall back on the status class."""
    base = API_ERRORS.get(code) or LOCAL.get(code) or _by_status(code, http_status)
    return base.model_copy(update={"retry_after_seconds": retry_after}) if retry_after is not None else base


def for_x402_status(status: int, retry_after: float | None = None) -> Guidance:
    """Guidance for an x402 rail failure status; nothing in this table was ever settled."""
    base = X402_STATUSES.get(status) or _BY_STATUS_FALLBACK[status >= 500]
    return base.model_copy(update={"retry_after_seconds": retry_after}) if retry_after is not None else base


def for_solve(status: str, error_code: str | None, reason: str | None = None, warnings: Sequence[str] = ()) -> Guidance | None:
    """Guidance for a solve: when solved, its first known warning's (None without one), a poll
    hint while running, the failure's otherwise (its reason's when NoneCap gave a known one: more
    specific than the code's)."""
    if status == "solved":
        return next((SOLVE_WARNINGS[code] for code in warnings if code in SOLVE_WARNINGS), None)
    if status in ("failed", "cancelled", "expired"):
        code = error_code or status
        return (
            SOLVE_REASONS.get(reason or "")
            or SOLVE_FAILURES.get(code)
            or X402_FAILURES.get(code)
            or SOLVE_FAILURES.get(status)
            or _BY_STATUS_FALLBACK[True]
        )
    return LOCAL["pending"]


# How a solved token is used, per captcha type: the form field, its lifetime, single use, and
# that the site checks the submitting client against the solve. Lifetimes are the captcha
# vendors' own (hCaptcha and reCAPTCHA v2: 120 s; Turnstile: 300 s).
_SAME_CLIENT = "Submit it with the solve's user_agent (and through its proxy, if one was given), or the site may reject it."
# The x402 rail solves proxyless and does not echo the user agent: the agent's own is the one to match.
_SAME_CLIENT_X402 = "Submit it with the user_agent you gave create_solve (if you gave one), or the site may reject it."
_TOKEN_FIELDS: dict[str, tuple[str, int]] = {
    "hcaptcha": ("h-captcha-response", 120),
    "hcaptcha_enterprise": ("h-captcha-response", 120),
    "recaptcha_v2": ("g-recaptcha-response", 120),
    "turnstile": ("cf-turnstile-response", 300),
}


# An image's text is typed, not posted as a token: it answers that one picture, from any client.
_IMAGE_TEXT = ("The token is the picture's text: type it into the site's text field for that image and submit. "
               "It answers only that image; no user agent or proxy needs to match.")


def how_to_use(type: str | None, rail: str | None = None) -> str | None:
    """Short guidance for using a solved token of this type (on this rail); None for a type we do not know."""
    if type in IMAGE_TYPES:
        return _IMAGE_TEXT
    if type not in _TOKEN_FIELDS:
        return None
    field, lifetime = _TOKEN_FIELDS[type]
    return (
        f"Put the token in the form field {field} and submit at once: it is single use and "
        f"expires about {lifetime} s after solving. {_SAME_CLIENT_X402 if rail == 'x402' else _SAME_CLIENT}"
    )
