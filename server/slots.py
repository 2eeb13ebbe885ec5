"""The local gate: at most N solves of this process running upstream at once.

The account's in-flight cap counts solves, not requests: a create that hands back a pending
solve has not finished using the account's capacity. So a slot is held from before the POST
until the solve is seen terminal (by any get, list or cancel in this process), or until its
120 s budget has surely passed (the lease). A create whose outcome is unknown keeps its slot
under the same lease, since a solve may be running for it. Calls that find every slot busy
wait here, inside their own deadline, and never send a create the account would refuse
with 429 because of our own concurrency.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio

from nonecap_mcp.errors import NoneCapError
from nonecap_mcp.guidance import API_ERRORS
from nonecap_mcp.models import Solve

LEASE_SECONDS = 125.0  # the API's 120 s solve budget, from before the POST, plus margin
REFRESH_SECONDS = 1.0  # while calls wait, how often the held solves are looked at again


@dataclass(eq=False)
class Slot:
    """One unit of the account's capacity; `solve_id` once its create is known."""

    solve_id: str | None = None
    lease_until: float = math.inf  # monotonic; infinite while its create call still runs


class SlotGate:
    """N slots, taken before a create and freed when its solve is seen finished."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._held: list[Slot] = []
        self._freed: anyio.Event | None = None
        self._refreshing = False
        self._refreshed = -math.inf

    def pending_ids(self) -> list[str]:
        """Solve ids whose slots are held only because they may still be running."""
        return [slot.solve_id for slot in self._live() if slot.solve_id is not None and slot.lease_until < math.inf]

    def _live(self) -> list[Slot]:
        now = time.monotonic()
        self._held = [slot for slot in self._held if slot.lease_until > now]
        return self._held

    async def take(self, deadline: float | None, refresh: Callable[[float | None], Awaitable[None]]) -> Slot:
        """A free slot, waiting at most until `deadline` (monotonic). While waiting, `refresh`
        is asked (once a second, one caller at a time) to look at the held solves again, so
        slots of solves that finished unobserved come back without waiting for their lease."""
        while len(self._live()) >= self._size:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise NoneCapError(
                    "concurrency_limit_exceeded",
                    f"All {self._size} local solve slots stayed busy for the whole wait (solves of this server "
                    "still running upstream); nothing was sent or created.",
                    guidance=API_ERRORS["concurrency_limit_exceeded"],
                )
            if not self._refreshing and now - self._refreshed >= REFRESH_SECONDS and self.pending_ids():
                self._refreshing = True
                try:
                    await refresh(deadline)
                finally:
                    self._refreshing, self._refreshed = False, time.monotonic()
                continue
            lease_end = min((slot.lease_until for slot in self._held), default=math.inf)
            wake = min(deadline if deadline is not None else math.inf, lease_end, now + REFRESH_SECONDS)
            if self._freed is None:
                self._freed = anyio.Event()
            with anyio.move_on_after(max(0.0, wake - now)):
                await self._freed.wait()
        slot = Slot()
        self._held.append(slot)
        return slot

    def bind(self, slot: Slot, solve: Solve) -> None:
        """The slot's create made this solve; a finished solve frees it at once."""
        slot.solve_id = solve.id
        self.observe(solve)

    def observe(self, solve: Solve) -> None:
        """A solve was seen: if it is finished, its slot (if any) is free."""
        if solve.is_terminal:
            for slot in [slot for slot in self._held if slot.solve_id == solve.id]:
                self.free(slot)

    def finish(self, slot: Slot, started: float | None) -> None:
        """The create call that took `slot` is over. Nothing may run upstream for it
        (`started` None): free. Otherwise the slot stays until its solve is seen finished
        or the lease from `started` (monotonic, before the first POST) runs out."""
        if started is None:
            self.free(slot)
        elif slot in self._held:
            slot.lease_until = started + LEASE_SECONDS

    def free(self, slot: Slot) -> None:
        if slot in self._held:
            self._held.remove(slot)
        if self._freed is not None:
            self._freed.set()
            self._freed = None
