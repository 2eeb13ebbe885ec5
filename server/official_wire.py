"""The credits rail's wire: NoneCap's official client (`nonecap` on PyPI) under our bounds.

`nonecap.AsyncNoneCap` builds every request (path, query, body, the key's header) from its
typed resource methods, and reads error envelopes into its error tree (code, message,
param). What it does not do, or does in a way that would break a promise of ours, is done
at the narrowest point around it (nonecap 0.11):

- It sends with `http_client.request`, reads each answer whole and takes any status below
  400 (a 3xx too) for success. So the pooled client it is handed sends through
  `http_io.BoundedTransport`: the call's deadline, a capped body read as a stream, redirects
  refused. Those refusals are not httpx errors and pass through it unchanged; timeouts and
  connection errors come back wrapped in its `APIConnectionError` and are unwrapped to the
  httpx exception behind them, so our rules of what may have been sent (`retry.NEVER_SENT`)
  classify them as before.
- A 2xx answer is read by our models (`models`) from the bytes the transport captured,
  never from its parsed objects: its parsers raise KeyError on a missing field (a created
  solve's id lost with the body, issue 6 §4), coerce (`int()` of a 1.5 balance, `bool()` of
  any has_more) and invent (a missing balance reads 0, a missing has_more False, a missing
  `retryable` True), where get_balance must say what it could not read and reconciliation
  must not take an unreadable has_more for "no more".
- Request-Id, Retry-After (delta-seconds or an HTTP date, capped) and Date come from the
  answer's headers: it reads X-Request-Id (the API sends Request-Id), digits-only Retry-After,
  and exposes no headers at all. An error code that is not an identifier is an echo of what
  was sent, not a code, and is dropped with its message; so is a non-JSON body it quotes.
- It has no retries, no idempotent-create safety and no deadline: `credits_api` keeps those.

`nonecap` is imported at the first request, off the stdio start-up path.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import httpx

from nonecap_mcp import __version__
from nonecap_mcp.errors import APIError, api_error_class
from nonecap_mcp.http_io import BoundedTransport, Reply, capture
from nonecap_mcp.retry import parse_retry_after

if TYPE_CHECKING:
    import nonecap

WireCall = Callable[["nonecap.AsyncNoneCap"], Awaitable[object]]
_CODE = re.compile(r"[a-z][a-z0-9_]{0,63}")  # the shape of every documented error code


def pooled_client(base_url: str, on_reply: Callable[[httpx.Request, Reply, float], None]) -> httpx.AsyncClient:
    """The process's one pooled client for the credits API, bounded below (see module doc)."""

    async def identify(request: httpx.Request) -> None:  # nonecap sets its own User-Agent per request
        request.headers["User-Agent"] = f"nonecap-mcp/{__version__} {request.headers.get('user-agent', '')}".rstrip()

    return httpx.AsyncClient(
        base_url=base_url, transport=BoundedTransport(on_reply), follow_redirects=False, event_hooks={"request": [identify]}
    )


async def send(http: httpx.AsyncClient, api_key: str, call: WireCall) -> Reply:
    """Run one `nonecap` call on `http` and return the answer as it was read.

    A 2xx is returned whatever nonecap made of its body (see module doc). Raises our typed
    `APIError` for an error answer; the httpx exception behind a transport failure;
    `Redirected` or `ResponseTooLarge` from the transport.
    """
    import nonecap

    client = nonecap.AsyncNoneCap(api_key=api_key, base_url=str(http.base_url), http_client=http)
    with capture() as seen:
        try:
            await call(client)
        except nonecap.APIConnectionError as exc:
            cause = exc.__cause__
            raise (cause if isinstance(cause, Exception) else httpx.TransportError(type(exc).__name__)) from None
        except nonecap.NoneCapError as exc:  # raised only on an answer, which the transport captured
            if seen.reply is None or seen.reply.status_code >= 400:
                raise _error(exc, seen.reply or Reply(exc.status or 500, httpx.Headers(), b"")) from None
            # a 2xx it could not decode: ours reads it
        except (KeyError, TypeError, ValueError, AttributeError):
            if seen.reply is None or not 200 <= seen.reply.status_code < 300:
                raise
            # its parser refused a 2xx body: ours reads it
    if seen.reply is None:  # every answer passes the transport; without one nothing was read
        raise httpx.TransportError("no answer was read")
    return seen.reply


def _error(exc: nonecap.NoneCapError, reply: Reply) -> APIError:
    """Our typed error for an error answer nonecap read: its code, message and param when the
    code is an identifier; the status, Request-Id and Retry-After from the answer itself."""
    status, headers = reply.status_code, reply.headers
    if isinstance(exc.code, str) and _CODE.fullmatch(exc.code):
        code, message, param = exc.code, str(exc.message or ""), exc.param
    else:
        code, message, param = f"http_{status}", f"NoneCap answered HTTP {status} without an error envelope.", None
    return api_error_class(status)(
        code,
        message,
        http_status=status,
        param=param,
        request_id=headers.get("request-id"),
        retry_after=parse_retry_after(headers.get("retry-after")),
    )
