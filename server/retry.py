"""When and how long to wait before repeating a request: capped, jittered exponential backoff.

Shared by both payment rails so they back off the same way. Retry-After is honoured as a
floor; a server asking for longer than we are willing to hold a tool call gets no retry,
and the caller reports the wait to the agent instead.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff `min(base * 2**attempt, max_delay)` jittered into [d/2, d]."""

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
        if deadline is not None and time.monotonic() + wait > deadline:
            return None
        return wait


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds, from either delta-seconds or an HTTP date; None if absent or junk."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
