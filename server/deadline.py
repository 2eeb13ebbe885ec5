"""A tool call's deadline, shared by every HTTP exchange and retry inside it.

A tool call sets its deadline once (`call_deadline`); every exchange and every retry
inside that call ends before it, with no deadline threaded through the rails. Work that
outlives the call (the paid x402 request, which runs in the background) runs `detached`
under its own bound. Apart from `http_io` (and httpx), so that the tool layer can set
deadlines without loading an HTTP client at start-up.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_call_deadline: ContextVar[float | None] = ContextVar("nonecap_call_deadline", default=None)


@contextmanager
def call_deadline(seconds: float) -> Iterator[float]:
    """Every exchange (and retry) inside this block ends within `seconds` from now, or
    earlier if an enclosing block says so. Yields the deadline (monotonic)."""
    deadline = time.monotonic() + seconds
    outer = _call_deadline.get()
    token = _call_deadline.set(deadline if outer is None else min(outer, deadline))
    try:
        yield _call_deadline.get()  # type: ignore[misc]
    finally:
        _call_deadline.reset(token)


@contextmanager
def detached(seconds: float) -> Iterator[None]:
    """Work that outlives the tool call that started it: bounded by `seconds` from now
    instead of the call's deadline."""
    token = _call_deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _call_deadline.reset(token)


def current_deadline(deadline: float | None = None) -> float | None:
    """The earlier of `deadline` and the enclosing call's deadline (monotonic), if any."""
    outer = _call_deadline.get()
    if deadline is None or outer is None:
        return outer if deadline is None else deadline
    return min(deadline, outer)


def seconds_left() -> float:
    """Time to the enclosing call's deadline (infinite outside a call), never negative."""
    deadline = _call_deadline.get()
    return math.inf if deadline is None else max(0.0, deadline - time.monotonic())
