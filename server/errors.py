"""Typed errors of the NoneCap client, modelled on stripe-python's.

Every error carries a machine code, a human message and `Guidance`, so the MCP layer can
turn any of them into a tool error an agent can act on without knowing the class tree.
"""

from __future__ import annotations

from nonecap_mcp import guidance as g
from nonecap_mcp.redaction import redact


class NoneCapError(Exception):
    """Base of every error this package raises on purpose."""

    def __init__(self, code: str, message: str, *, param: str | None = None, guidance: g.Guidance | None = None) -> None:
        # An upstream error envelope's code and param are text we did not write, and may echo what we sent.
        self.code = redact(code)
        self.message = redact(message)
        self.param = redact(param) if param is not None else None
        self.guidance = guidance or g.for_code(code)
        self.retried = False  # set by the client when the error survived at least one retry
        super().__init__(self.message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r}, param={self.param!r})"


class InvalidArgumentError(NoneCapError):
    """A tool argument failed local validation; nothing was sent upstream."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__("invalid_argument", message, param=param)


class ConfigurationError(NoneCapError):
    """Something the operator must set up (an API key, a wallet) is missing or unreadable."""


class APIConnectionError(NoneCapError):
    """The request could not be completed on the network; safe to retry for reads."""

    def __init__(self, message: str) -> None:
        super().__init__("connection_error", message)


class OutcomeUnknownError(NoneCapError):
    """A create request may have been processed, and reconciliation could not tell."""

    def __init__(self, message: str) -> None:
        super().__init__("outcome_unknown", message)


class APIError(NoneCapError):
    """The API answered with its error envelope (or something we could not parse)."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        http_status: int,
        param: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.http_status = http_status
        self.request_id = request_id
        self.retry_after = retry_after
        super().__init__(code, message, param=param, guidance=g.for_api_error(code, http_status, retry_after))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, http_status={self.http_status}, "
            f"request_id={self.request_id!r}, param={self.param!r})"
        )


class AuthenticationError(APIError):
    """401: the key is missing, malformed, revoked or unknown."""


class InsufficientCreditsError(APIError):
    """402: the balance is below one credit."""


class PermissionDeniedError(APIError):
    """403: the account is locked."""


class NotFoundError(APIError):
    """404: unknown or purged solve id."""


class ConflictError(APIError):
    """409: cancel on an already terminal solve."""


class InvalidRequestError(APIError):
    """400/422: malformed request or bad field value."""


class RateLimitError(APIError):
    """429: too many requests, or too many solves in flight."""


class ServerError(APIError):
    """5xx: the service failed or is out of capacity."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    402: InsufficientCreditsError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: InvalidRequestError,
    429: RateLimitError,
}


def api_error_class(http_status: int) -> type[APIError]:
    """The typed error for an HTTP status (5xx and anything unmapped → ServerError/APIError)."""
    if http_status >= 500:
        return ServerError
    return _BY_STATUS.get(http_status, APIError)
