"""One bounded HTTP exchange: connect, headers and a capped body within one deadline.

httpx's timeouts are per phase and its read timeout per chunk, so an upstream that accepts
and never answers, or trickles a byte a second, can hold a request for ever; and
`response.json()` buffers whatever size the body has. Every rail (the credits API, the
x402 rail, the Base RPC) sends through `exchange`, which bounds the whole exchange, reads
the body as a stream up to a cap, and refuses redirects (never followed: the request
carries an API key or a payment).

Every exchange also ends before the enclosing tool call's deadline (`nonecap_mcp.deadline`).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any

import anyio
import httpx

from nonecap_mcp.deadline import current_deadline

KIB = 1024
API_BODY_LIMIT = 1024 * KIB  # JSON answers of the credits API and the x402 rail are a few KiB
RPC_BODY_LIMIT = 64 * KIB  # an eth_call answer is one 32-byte word
EXCHANGE_SECONDS = 10.0  # a request without a long-poll: connect, answer and body
CONNECT_SECONDS = 10.0


class ExchangeTimeout(httpx.TimeoutException):
    """No complete answer (headers and whole body) arrived within the exchange's bound.

    A transport error that may come after the request was delivered, like a read timeout:
    a request that creates or pays must treat its outcome as unknown."""


class DeadlinePassed(httpx.ConnectTimeout):
    """The call's deadline passed before this request was sent: it certainly never left."""


class ResponseTooLarge(Exception):
    """The answer's body is over the cap; it was not read past it (the request was answered)."""

    def __init__(self, status: int, limit: int) -> None:
        self.status = status
        self.limit = limit
        super().__init__(f"HTTP {status} with a body over {limit // KIB} KiB")


class Redirected(Exception):
    """The answer was a redirect, which is never followed (the request was answered)."""

    def __init__(self, status: int, location: str | None) -> None:
        self.status = status
        self.location_host = _host(location)
        super().__init__(f"HTTP {status} redirect" + (f" to {self.location_host}" if self.location_host else ""))


def _host(location: str | None) -> str | None:
    """Only the redirect target's host: its path or query may carry anything."""
    if not location:
        return None
    try:
        return httpx.URL(location).host or None
    except httpx.InvalidURL:
        return None


@dataclass(frozen=True)
class Reply:
    """A whole, capped answer: what the rails read instead of an `httpx.Response`."""

    status_code: int
    headers: httpx.Headers
    content: bytes

    def json(self) -> Any:
        """The body as JSON; ValueError (as with httpx) when it is not."""
        return json.loads(self.content)


async def exchange(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    seconds: float = EXCHANGE_SECONDS,
    limit: int = API_BODY_LIMIT,
    **request: Any,
) -> Reply:
    """Send one request and read its whole answer within `seconds` (and the call's deadline).

    Raises `DeadlinePassed` (never sent), `ExchangeTimeout` (may have been delivered),
    `Redirected` or `ResponseTooLarge` (answered, not read), or httpx's transport errors.
    """
    deadline = current_deadline(time.monotonic() + seconds)
    bound = deadline - time.monotonic()  # type: ignore[operator]
    if bound <= 0:
        raise DeadlinePassed("The call's deadline passed before the request was sent.")
    timeout = httpx.Timeout(bound, connect=min(bound, CONNECT_SECONDS))
    with anyio.move_on_after(bound):
        async with client.stream(method, url, timeout=timeout, **request) as response:
            if 300 <= response.status_code < 400:
                raise Redirected(response.status_code, response.headers.get("location"))
            return Reply(response.status_code, response.headers, await _read_capped(response, limit))
    raise ExchangeTimeout(f"No complete answer within {math.ceil(bound)} s.")


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    """The decoded body, refused as soon as it (or its declared length) passes `limit`."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ResponseTooLarge(response.status_code, limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise ResponseTooLarge(response.status_code, limit)
        chunks.append(chunk)
    return b"".join(chunks)
