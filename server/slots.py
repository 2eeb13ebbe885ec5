"""Waiting for a solve slot: at most N of the account's solves in flight across every process sharing the store.

The account's in-flight cap counts solves, not requests: a create that hands back a pending
solve has not finished using the account's capacity. The slots themselves are rows of the
create log (shared by every process on the state dir, or every replica on the PostgreSQL
store, which is how replicas share one cap): a create under way, or one whose
outcome is unknown, and a claimed solve until it is seen finished (by any get, list or
cancel) or its 120 s budget has surely passed. This module only waits: calls that find
every slot busy wait here, inside their own deadline, and never send a create the account
would refuse with 429 because of our own concurrency.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable

import anyio

from nonecap_mcp.errors import NoneCapError
from nonecap_mcp.config import scaled
from nonecap_mcp.guidance import API_ERRORS

POLL_SECONDS = scaled(0.5)  # how soon a slot freed by another process is noticed
REFRESH_SECONDS = scaled(1.0)  # while calls wait, how often the running solves are looked at again


class SlotGate:
    """Waits, within a deadline, until `try_take` gets one of `size` slots."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._freed: anyio.Event | None = None
        self._refreshing = False
        self._refreshed = -math.inf

    async def take(
        self,
        try_take: Callable[[int], Awaitable[bool]],
        deadline: float | None,
        refresh: Callable[[float | None], Awaitable[None]],
    ) -> None:
        """Return once `try_take(size)` took a slot; raise `concurrency_limit_exceeded` at
        `deadline` (monotonic). While waiting, `refresh` is asked (once a second, one caller
        at a time) to look at the running solves again, so slots of solves that finished
        unobserved come back without waiting for their lease."""
        while not await try_take(self.size):
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise NoneCapError(
                    "concurrency_limit_exceeded",
                    f"All {self.size} solve slots stayed busy for the whole wait (solves started from this machine "
                    "still running upstream); nothing was sent or created.",
                    guidance=API_ERRORS["concurrency_limit_exceeded"],
                )
            if not self._refreshing and now - self._refreshed >= REFRESH_SECONDS:
                self._refreshing = True
                try:
                    await refresh(deadline)
                finally:
                    self._refreshing, self._refreshed = False, time.monotonic()
                continue
            if self._freed is None:
                self._freed = anyio.Event()
            with anyio.move_on_after(min(POLL_SECONDS, deadline - now if deadline is not None else math.inf)):
                await self._freed.wait()

    def freed(self) -> None:
        """A slot of this process came free: wake the calls waiting here at once."""
        if self._freed is not None:
            self._freed.set()
            self._freed = None
