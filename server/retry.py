"""When and how long to wait before repeating a request: capped, jittered exponential backoff.

Shared by both payment rails so they back off the same way. Retry-After is honoured as a
floor; a server asking for longer than we are willing to hold a tool call gets no retry,
and the caller reports the wait to the agent instead (capped: an absurd Retry-After never
becomes an hour-long sleep or `Infinity` in guidance). No retry, nor its sleep, passes the
tool call's deadline (`deadline.call_deadline`).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TypeVar

import anyio
import httpx

from nonecap_mcp.deadline import current_deadline
from nonecap_mcp.config import scaled

T = TypeVar("T")
log = logging.getLogger("nonecap_mcp.http")

# Decides about one failure: None = do not retry; otherwise the server's Retry-After (or 0.0).
Classifier = Callable[[Exception], float | None]

# Transport failures where the request certainly never reached the server: safe to repeat,
# whatever it would have done. Any other httpx.TransportError may have been delivered.
# (http_io.DeadlinePassed is a ConnectTimeout: a request the deadline stopped before sending.)
NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
RETRY_AFTER_CAP = 3600.0  # longest Retry-After we repeat to the agent, in seconds


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff `min(base * 2**attempt, max_delay)` jittered into [d/2, d].

    The policy speaks real seconds, as servers do in Retry-After; the sleep it returns is in the
    process's time scale (`config.scaled`), so a compressed test run backs off in proportion.
    """

    max_retries: int = 2
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 20.0

    def delay(self, attempt: int, retry_after: float | None = None, deadline: float | None = None) -> float | None:
        """Seconds to sleep before retry number `attempt + 1`, or None when we must not retry."""
        if attempt >= self.max_retries:
            return None
        backoff = min(self.base_delay * 2**attempt, self.max_delay)
        wait = random.uniform(backoff / 2, backoff)
        if retry_after is not None:
            if retry_after > self.max_retry_after:
                return None
            wait = max(wait, retry_after)
        wait = scaled(wait)
        if deadline is not None and time.monotonic() + wait > deadline:
            return None
        return wait


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as whole seconds from 0 to RETRY_AFTER_CAP, from either delta-seconds or an
    HTTP date; None if absent or junk."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        seconds = RETRY_AFTER_CAP if len(value) > 9 else float(value)  # never float("9" * 400) = inf
    else:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, OverflowError):
            return None
    return float(min(RETRY_AFTER_CAP, max(0, math.ceil(seconds))))


async def call_with_retries(
    attempt: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    retry_after_if_retryable: Classifier,
    deadline: float | None = None,
    label: str = "request",
) -> T:
    """Run `attempt()` until it returns, retrying the failures the classifier accepts.

    Each rail decides what is safe to repeat (a paid or creating request rarely is); this
    loop only owns the timing, within `deadline` and the tool call's. The final exception is
    re-raised with `retried` set.
    """
    tries = 0
    while True:
        try:
            return await attempt()
        except Exception as exc:
            retry_after = retry_after_if_retryable(exc)
            delay = None if retry_after is None else policy.delay(tries, retry_after or None, current_deadline(deadline))
            if delay is None:
                exc.retried = tries > 0  # type: ignore[attr-defined]
                raise
            log.info("retrying %s in %.2f s after %s", label, delay, getattr(exc, "code", type(exc).__name__))
            await anyio.sleep(delay)
            tries += 1
