"""HTTP client for the x402 rail: the price table, createTask and the free result re-fetch.

It knows the wire, not the money: `rail.py` decides whether to pay and records it. Two
money rules live here. Retries: an unpaid request may be repeated freely; a paid one is
repeated only with the very same payment header (never re-signed), only when the rail
said in its own words that it did not run (429, 503) or the request never left; a paid
request lost in flight raises `PaymentOutcomeUnknown` and is never sent again. And what an
answer proves: only the rail's documented failure (`TaskAnswer.failure`: a documented status
with the rail's JSON envelope) says nothing was settled; an HTML gateway page, a redirect or
an undocumented status after a paid request proves nothing either way.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import anyio
import httpx

from nonecap_mcp import metrics
from nonecap_mcp import __version__
from nonecap_mcp.errors import (
    PaymentOutcomeUnknown,
    X402ConnectionError,
    X402ResponseError,
    X402StatusError,
)
from nonecap_mcp.errors import NoneCapError
from nonecap_mcp.config import scaled
from nonecap_mcp.deadline import detached, seconds_left
from nonecap_mcp.http_io import Redirected, Reply, ResponseTooLarge, exchange, tls_context
from nonecap_mcp.redaction import redact
from nonecap_mcp.retry import NEVER_SENT, RetryPolicy, call_with_retries, parse_retry_after
from nonecap_mcp.x402.signing import SignedPayment

PAID_SECONDS = scaled(75.0)  # the paid request, answer included: the rail's 60 s solve cap plus margin
RECEIPT_HEADERS = ("PAYMENT-RESPONSE", "X-PAYMENT-RESPONSE")
# The failure statuses the rail documents ("Failure modes"); with its JSON envelope, none was settled.
DOCUMENTED_FAILURES = frozenset({400, 402, 422, 429, 503, 504})
RETRYABLE_FAILURES = frozenset({429, 503})  # the rail did not run the request: send the same header again
# A 402 for this reason says the authorization was already settled (an earlier send got through).
NONCE_ALREADY_USED = "invalid_exact_evm_nonce_already_used"


@dataclass(frozen=True)
class Pricing:
    """`GET /x402/pricing`: who is paid, on which network, and the flat price per task type."""

    network: str
    pay_to: str
    prices_usd: dict[str, Decimal]


@dataclass(frozen=True)
class TaskAnswer:
    """One createTask answer for the rail layer to interpret; `body` is None when not JSON."""

    status: int
    body: Any
    headers: httpx.Headers

    @property
    def receipt_header(self) -> str | None:
        return next((self.headers[name] for name in RECEIPT_HEADERS if name in self.headers), None)

    def failure(self) -> X402StatusError | None:
        """The rail's own failure (nothing settled), or None when the answer proves no such thing."""
        return documented_failure(self.status, self.body, self.headers)


def error_text(body: Any, default: str) -> str:
    """The rail's own words for a failure (`error`, `errorDescription` or `message`), shortened
    and redacted (they are stored in the ledger and shown on the solve, and may echo what we sent)."""
    text = (body.get("error") or body.get("errorDescription") or body.get("message")) if isinstance(body, dict) else None
    return redact(str(text)[:300]) if text else default


def documented_failure(status: int, body: Any, headers: httpx.Headers) -> X402StatusError | None:
    """A documented failure status carrying the rail's JSON envelope (`{"error": "..."}`).

    A 402 naming an already-used nonce is not one: it means that authorization settled.
    """
    if status not in DOCUMENTED_FAILURES or not isinstance(body, dict) or not isinstance(body.get("error"), str):
        return None
    if status == 402 and body["error"] == NONCE_ALREADY_USED:
        return None
    return X402StatusError(status, error_text(body, f"HTTP {status}"), parse_retry_after(headers.get("retry-after")))


def _decoded(response: Reply) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _undocumented(response: Reply) -> X402ResponseError:
    kind = "a redirect, not followed" if 300 <= response.status_code < 400 else "not the rail's documented JSON"
    return X402ResponseError(f"The x402 rail answered HTTP {response.status_code} ({kind}).")


def _checked(response: Reply, *, paid: bool, answers: frozenset[int]) -> Reply:
    """Raise for what is a failure of this request; return what the caller interprets.

    A paid request returns everything but a retryable documented failure: only the rail
    layer may decide what a paid answer means for the money.
    """
    failure = documented_failure(response.status_code, _decoded(response), response.headers)
    if failure is not None and failure.http_status in RETRYABLE_FAILURES:
        raise failure
    if paid or response.status_code in answers:
        return response
    if failure is not None:
        raise failure
    if response.status_code >= 300:
        raise _undocumented(response)
    return response


def _json(response: Reply) -> Any:
    """The body as JSON; a CDN or captive-portal page in its place is the rail's fault, not a crash."""
    try:
        return response.json()
    except ValueError:
        raise X402ResponseError(f"The x402 rail answered HTTP {response.status_code} with something that is not JSON.") from None


def _unread(exc: Exception) -> NoneCapError:
    """An unpaid request whose answer never arrived whole, or could not be read."""
    if isinstance(exc, Redirected):
        return NoneCapError("redirected", f"The x402 rail answered {exc}; redirects are not followed.")
    if isinstance(exc, ResponseTooLarge):
        return NoneCapError("response_too_large", f"The x402 rail answered {exc}; it was not read.")
    return X402ConnectionError(f"The x402 rail connection failed ({type(exc).__name__}: {exc}).")


def _parse_pricing(body: Any) -> Pricing:
    try:
        prices = {str(k): Decimal(str(v)) for k, v in body["pricesUsd"].items()}
        if not all(price.is_finite() and price > 0 for price in prices.values()):
            raise InvalidOperation
        return Pricing(network=str(body["network"]), pay_to=str(body["payTo"]), prices_usd=prices)
    except (KeyError, TypeError, AttributeError, InvalidOperation):
        raise X402ResponseError("The x402 pricing endpoint answered something this client cannot read.") from None


class X402Client:
    """The rail's three endpoints over one pooled httpx client."""

    def __init__(self, base_url: str, *, retry: RetryPolicy | None = None, pricing_ttl: float = 300.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._retry = retry or RetryPolicy()
        self._pricing_ttl = pricing_ttl
        self._pricing: tuple[float, Pricing] | None = None
        self._pricing_lock = anyio.Lock()
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={"User-Agent": f"nonecap-mcp/{__version__}", "Accept": "application/json"},
            follow_redirects=False,
            verify=tls_context(),
        )

    @property
    def create_task_url(self) -> str:
        """The resource a 402 for createTask must name (checked by the policy)."""
        return f"{self.base_url}/x402/createTask"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, *, body: Any = None, headers: dict[str, str] | None = None,
                    paid: bool = False, answers: frozenset[int] = frozenset()) -> Reply:
        """One request with retries; `answers` are the failure statuses returned rather than raised."""
        async def attempt() -> Reply:
            try:
                response = await exchange(self._http, method, path, json=body, headers=headers,
                                          **({"seconds": PAID_SECONDS} if paid else {}))
            except NEVER_SENT as exc:
                raise X402ConnectionError(f"Could not connect to the x402 rail ({type(exc).__name__}).") from None
            except (httpx.TransportError, Redirected, ResponseTooLarge) as exc:
                if paid:
                    raise PaymentOutcomeUnknown(f"The paid request got no readable answer ({exc or type(exc).__name__}); it was not re-sent.") from None
                raise _unread(exc) from None
            metrics.upstream("x402", response.status_code)
            return _checked(response, paid=paid, answers=answers)

        def retry_after_if_retryable(exc: Exception) -> float | None:
            if isinstance(exc, X402StatusError) and exc.http_status in RETRYABLE_FAILURES:
                return exc.retry_after or 0.0
            if isinstance(exc, X402ConnectionError):
                return 0.0
            return None

        # A paid request runs in the background, past the tool call that started it: it has
        # its own bound, retries (with the same payment) included.
        with detached(PAID_SECONDS) if paid else nullcontext():
            return await call_with_retries(attempt, policy=self._retry, retry_after_if_retryable=retry_after_if_retryable,
                                           label=f"{method} {path}")

    async def pricing(self) -> Pricing:
        """The published price table, cached for `pricing_ttl` seconds. Waiting for another
        call's fetch ends at this call's deadline, like the fetch itself."""
        with anyio.move_on_after(seconds_left()):
            async with self._pricing_lock:
                if self._pricing is None or time.monotonic() - self._pricing[0] > self._pricing_ttl:
                    response = await self._call("GET", "/x402/pricing")
                    self._pricing = (time.monotonic(), _parse_pricing(_json(response)))
                return self._pricing[1]
        raise X402ConnectionError("The x402 price table did not arrive within the call's time.")

    async def create_task(self, body: dict[str, Any], payment: SignedPayment | None = None) -> TaskAnswer:
        """POST /x402/createTask: unpaid (expecting a 402), or with one signed payment (any answer)."""
        headers = {payment.header_name: payment.header_value} if payment else None
        response = await self._call("POST", "/x402/createTask", body=body, headers=headers, paid=payment is not None,
                                    answers=frozenset({402}))
        return TaskAnswer(status=response.status_code, body=_decoded(response), headers=response.headers)

    async def task_result(self, task_id: str, result_token: str) -> dict[str, Any]:
        """POST /x402/getTaskResult: re-fetch a paid result for free."""
        response = await self._call("POST", "/x402/getTaskResult", body={"taskId": task_id, "resultToken": result_token})
        data = _json(response)
        if not isinstance(data, dict):
            raise X402ResponseError("getTaskResult answered something that is not a JSON object.")
        return data
