"""Typed errors of the NoneCap client, modelled on stripe-python's.

Every error carries a machine code, a human message and `Guidance`, so the MCP layer can
turn any of them into a tool error an agent can act on without knowing the class tree.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

from nonecap_mcp.redaction import redact

if TYPE_CHECKING:
    from nonecap_mcp.guidance import Guidance


def _tables() -> ModuleType:
    """The guidance tables (pydantic models, costly to build), loaded at the first error raised
    rather than by every module that can raise one: configuration is checked at every
    start-up, and usually raises nothing."""
    from nonecap_mcp import guidance

    return guidance


class NoneCapError(Exception):
    """Base of every error this package raises on purpose."""

    def __init__(self, code: str, message: str, *, param: str | None = None, guidance: Guidance | None = None) -> None:
        # An upstream error envelope's code and param are text we did not write, and may echo what we sent.
        self.code = redact(code)
        self.message = redact(message)
        self.param = redact(param) if param is not None else None
        self.guidance = guidance or _tables().for_code(code)
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
        super().__init__(code, message, param=param, guidance=_tables().for_api_error(code, http_status, retry_after))

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


class X402Error(NoneCapError):
    """Base of the x402 rail's errors (the rail reports failures as HTTP statuses, not codes)."""


class X402StatusError(X402Error):
    """The rail answered one of its documented failure statuses with its own JSON: nothing settled."""

    def __init__(self, http_status: int, message: str, retry_after: float | None = None) -> None:
        self.http_status = http_status
        self.retry_after = retry_after
        super().__init__(f"x402_http_{http_status}", message, guidance=_tables().for_x402_status(http_status, retry_after))


class X402ConnectionError(X402Error):
    """The x402 rail could not be reached: the request never left, so nothing was paid."""

    def __init__(self, message: str) -> None:
        super().__init__("x402_connection_error", message)


class X402ResponseError(X402Error):
    """The rail (or something in front of it) answered what it does not document: HTML, a 3xx, bad JSON."""

    def __init__(self, message: str) -> None:
        super().__init__("x402_unexpected_response", message)


class X402SetupTimeout(X402Error):
    """The rail did not offer a payment (price, 402) within the call's time: nothing was signed."""

    def __init__(self, message: str) -> None:
        super().__init__("x402_setup_timeout", message)


class PaymentOutcomeUnknown(X402Error):
    """A paid request was sent and no readable answer came back: it may have settled."""

    def __init__(self, message: str) -> None:
        super().__init__("payment_outcome_unknown", message)


class LocalStateError(NoneCapError):
    """The x402 ledger on this machine could not be read or written."""

    def __init__(self, message: str) -> None:
        super().__init__("local_state_error", message)
