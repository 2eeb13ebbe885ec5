"""Progress notifications while a tool waits on one long-poll request.

The wait is a single `?wait` request, not a polling loop; this only ticks the host's
progress bar beside it so a user (and a host's timeout reset) sees that work goes on.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
from mcp.server.mcpserver import Context

T = TypeVar("T")
TICK_SECONDS = 1.0


async def with_progress(ctx: Context[Any], wait: int, label: str, call: Callable[[], Awaitable[T]]) -> T:
    """Run `call()` while reporting elapsed seconds of `wait` as MCP progress."""
    if wait <= 0:
        return await call()
    outcome: list[T] = []
    failure: list[BaseException] = []

    async def tick() -> None:
        started = time.monotonic()
        while True:
            elapsed = min(time.monotonic() - started, float(wait))
            await ctx.report_progress(elapsed, total=float(wait), message=f"{label}: waited {elapsed:.0f} of {wait} s")
            await anyio.sleep(TICK_SECONDS)

    async with anyio.create_task_group() as group:
        group.start_soon(tick)
        try:
            outcome.append(await call())
        except Exception as exc:  # re-raised below, outside the task group, unwrapped
            failure.append(exc)
        group.cancel_scope.cancel()
    if failure:
        raise failure[0]
    return outcome[0]
