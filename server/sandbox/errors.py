"""The NoneCap v1 error envelope, as the sandbox answers it.

Every non-2xx answer is `{"error": {"code", "message", "param"}}`; clients branch on `code`
(two codes share 429), so the sandbox keeps the seed's code-to-status table in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

BILLING_URL = "https://dashboard.nonecap.com/billing"


class Interrupted(Exception):
    """The sandbox was reset or stopped while this request was in flight: it is dropped
    unanswered and changes nothing. Not an error answer: a client may retry an error (a 503
    with the same payment, after the reset freed its nonce), but not an answer that never came."""

STATUS_BY_CODE: dict[str, int] = {
    "invalid_request": 400,
    "unauthorized": 401,
    "insufficient_credits": 402,
    "account_locked": 403,
    "not_found": 404,
    "conflict": 409,
    "validation_error": 422,
    "rate_limited": 429,
    "concurrency_limit_exceeded": 429,
    "internal_error": 500,
    "pool_exhausted": 503,
    # Grown since the v1 seed, as the official client documents them.
    "forbidden": 403,
    "key_credit_limit_exceeded": 402,
    "not_eligible": 404,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "expired_window": 422,
    "sitekey_rate_limited": 429,
    "proxy_unavailable": 429,
    "rate_capped": 429,
    "maintenance": 503,
}

# A fault given only a status still needs a code: the first listed for it (429 is plain rate limiting).
CODE_BY_STATUS: dict[int, str] = {status: code for code, status in reversed(STATUS_BY_CODE.items())}

DEFAULT_MESSAGES: dict[str, str] = {
    "invalid_request": "Malformed JSON or missing required structural field.",
    "unauthorized": "Missing, malformed, revoked, or unknown API key.",
    "insufficient_credits": f"Your account has 0 credits remaining. Top up at {BILLING_URL}.",
    "account_locked": "The owning account has been locked by an administrator.",
    "not_found": "Solve id unknown or purged after retention.",
    "conflict": "Solve already reached a terminal state and cannot be cancelled.",
    "validation_error": "Bad field value.",
    "rate_limited": "Too many requests; slow down.",
    "concurrency_limit_exceeded": "Too many solves in flight for this account. Retry once one completes.",
    "internal_error": "Unexpected server error.",
    "pool_exhausted": "All workers busy; retry after the Retry-After delay.",
    "forbidden": "This API key is not allowed to do this.",
    "key_credit_limit_exceeded": "This API key reached its own credit limit.",
    "not_eligible": "Only your own solves that produced a token can be reported.",
    "payload_too_large": "Request body too large (limit 1 MiB).",
    "unsupported_media_type": "Send JSON bodies with Content-Type: application/json.",
    "expired_window": "The reporting window for this solve has closed.",
    "sitekey_rate_limited": "hCaptcha is refusing challenges for this sitekey; retry after the Retry-After delay.",
    "proxy_unavailable": "Submits through this proxy are shed because it refuses connections; fix or switch it.",
    "rate_capped": "Submit rate cap reached on this sitekey; retry after the Retry-After delay.",
    "maintenance": "New solves are paused for maintenance. Retry shortly.",
}
FALLBACK_MESSAGE = "Fault injected by the NoneCap sandbox."

Body = dict[str, object]


@dataclass(frozen=True)
class Response:
    """What an endpoint answers; the HTTP layer adds Content-Type, Content-Length and Request-Id."""

    status: int
    body: Body
    headers: tuple[tuple[str, str], ...] = ()


class ApiError(Exception):
    """An API error raised anywhere below the HTTP layer and turned into the envelope there."""

    def __init__(
        self,
        code: str,
        message: str | None = None,
        *,
        param: str | None = None,
        status: int | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.code = code
        self.message = message or DEFAULT_MESSAGES.get(code, FALLBACK_MESSAGE)
        self.param = param
        self.status = status or STATUS_BY_CODE.get(code, 500)
        self.headers = headers
        super().__init__(f"{self.status} {code}: {self.message}")

    def response(self) -> Response:
        """The envelope exactly as the seed shows it."""
        body: Body = {"error": {"code": self.code, "message": self.message, "param": self.param}}
        return Response(self.status, body, self.headers)


class InvalidField(ValueError):
    """A bad argument to the sandbox's own controls; `param` names it (422 over HTTP)."""

    def __init__(self, param: str, message: str) -> None:
        self.param = param
        super().__init__(message)


def insufficient_credits(balance: int) -> ApiError:
    """The 402 with the seed's wording, naming the real balance."""
    return ApiError("insufficient_credits", f"Your account has {balance} credits remaining. Top up at {BILLING_URL}.")
