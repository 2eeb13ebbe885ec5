"""The NoneCap v1 error envelope, as the sandbox answers it.

Every non-2xx answer is `{"error": {"code", "message", "param"}}`; clients branch on `code`
(two codes share 429), so the sandbox keeps the seed's code-to-status table in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

BILLING_URL = "https://dashboard.nonecap.com/billing"

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
}

# A fault given only a status still needs a code; 429 means plain rate limiting unless told.
CODE_BY_STATUS: dict[int, str] = {
    status: code for code, status in STATUS_BY_CODE.items() if code != "concurrency_limit_exceeded"
}

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
