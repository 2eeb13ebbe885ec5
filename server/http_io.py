"""One bounded HTTP exchange: connect, headers and a capped body within one deadline.

httpx's timeouts are per phase and its read timeout per chunk, so an upstream that accepts
and never answers, or trickles a byte a second, can hold a request for ever; and
`response.json()` buffers whatever size the body has. Every rail (the credits API, the
x402 rail, the Base RPC) sends through `exchange`, or, where a client library sends for us
(the credits rail on NoneCap's official client), through `BoundedTransport` below it; both
bound the whole exchange, read the body as a stream up to a cap, and refuse redirects
(never followed: the request carries an API key or a payment).

Every exchange also ends before the enclosing tool call's deadline (`nonecap_mcp.deadline`).
"""

from __future__ import annotations

import functools
import json
import math
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import anyio
import httpx

from nonecap_mcp.deadline import current_deadline
from nonecap_mcp.config import scaled

KIB = 1024
API_BODY_LIMIT = 1024 * KIB  # JSON answers of the credits API and the x402 rail are a few KiB
RPC_BODY_LIMIT = 64 * KIB  # an eth_call answer is one 32-byte word
EXCHANGE_SECONDS = scaled(10.0)  # a request without a long-poll: connect, answer and body
CONNECT_SECONDS = scaled(10.0)


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The process's one TLS context (system trust, SSL_CERT_FILE honoured), shared by every
    client we open: loading the CA bundle costs tens of milliseconds of CPU on the event loop,
    which each new client (one per RPC call, one per rail) would otherwise pay again."""
    return httpx.create_ssl_context()


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


def _bound(seconds: float) -> float:
    """Seconds this exchange may take: `seconds`, or less if the call's deadline is sooner.
    Raises `DeadlinePassed` when nothing is left (so nothing is sent)."""
    deadline = current_deadline(time.monotonic() + seconds)
    bound = deadline - time.monotonic()  # type: ignore[operator]
    if bound <= 0:
        raise DeadlinePassed("The call's deadline passed before the request was sent.")
    return bound


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
    bound = _bound(seconds)
    timeout = httpx.Timeout(bound, connect=min(bound, CONNECT_SECONDS))
    with anyio.move_on_after(bound):
        async with client.stream(method, url, timeout=timeout, **request) as response:
            return Reply(response.status_code, response.headers, await _read_answer(response, limit))
    raise ExchangeTimeout(f"No complete answer within {math.ceil(bound)} s.")


class BoundedTransport(httpx.AsyncBaseTransport):
    """An httpx transport that gives every exchange `exchange`'s bounds, for a client that
    sends with `httpx.AsyncClient.request` and reads whole answers (NoneCap's official client):
    the call's deadline (or the request's own read timeout, if sooner), no redirects, a body
    read as a stream with a cap before the client sees it.

    Every whole answer goes to `on_reply(request, reply, seconds)`, and to the `capture()`
    block the request was sent in, so the caller can read what was actually answered (its
    headers, its bytes) whatever the client above made of it.
    """

    def __init__(
        self,
        on_reply: Callable[[httpx.Request, Reply, float], None],
        inner: httpx.AsyncBaseTransport | None = None,
        *,
        limit: int = API_BODY_LIMIT,
    ) -> None:
        self._on_reply = on_reply
        self._inner = inner or httpx.AsyncHTTPTransport(verify=tls_context())
        self._limit = limit

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        started = time.monotonic()
        bound = _bound((request.extensions.get("timeout") or {}).get("read") or EXCHANGE_SECONDS)
        connect = min(bound, CONNECT_SECONDS)
        request.extensions = {**request.extensions, "timeout": {"connect": connect, "read": bound, "write": bound, "pool": bound}}
        with anyio.move_on_after(bound):
            response = await self._inner.handle_async_request(request)
            try:
                reply = Reply(response.status_code, response.headers, await _read_answer(response, self._limit))
            finally:
                await response.aclose()
            if (seen := _captured.get()) is not None:
                seen.reply = reply
            self._on_reply(request, reply, time.monotonic() - started)
            # The body is decoded already: its encoding and framing headers no longer describe it.
            framing = ("content-encoding", "content-length", "transfer-encoding")
            headers = [(k, v) for k, v in reply.headers.multi_items() if k.lower() not in framing]
            return httpx.Response(reply.status_code, headers=headers, content=reply.content, request=request)
        raise ExchangeTimeout(f"No complete answer within {math.ceil(bound)} s.", request=request)

    async def aclose(self) -> None:
        await self._inner.aclose()


@dataclass
class Captured:
    """The last whole answer `BoundedTransport` read inside a `capture()` block."""

    reply: Reply | None = None


_captured: ContextVar[Captured | None] = ContextVar("nonecap_captured", default=None)


@contextmanager
def capture() -> Iterator[Captured]:
    """Collect the answer to the request sent inside this block (see `BoundedTransport`)."""
    seen = Captured()
    token = _captured.set(seen)
    try:
        yield seen
    finally:
        _captured.reset(token)


async def _read_answer(response: httpx.Response, limit: int) -> bytes:
    """The decoded body of an answer that is not a redirect (never followed), refused as
    soon as it (or its declared length) passes `limit`."""
    if 300 <= response.status_code < 400:
        raise Redirected(response.status_code, response.headers.get("location"))
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
