"""The paid x402 request's overall cap: after the call it goes on in the background, but not
forever, and whatever it ends as, the payment it signed once is never re-sent.

Apart from the rest of the x402 rail's tests because each waits out the cap (75 s, 15 s in the
suite's time scale) on its own worker, while the rest of the suite runs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from conftest import Agent, scaled
from mcp import Client
from test_tools_x402 import paid_posts, solve_args, x402_env

from nonecap_mcp.config import load_settings
from nonecap_mcp.sandbox import Sandbox
from nonecap_mcp.tools import build_server
from nonecap_mcp.x402.ledger import Ledger

pytestmark = pytest.mark.anyio


@pytest.fixture
def x402_settings_env(sandbox: Sandbox, tmp_path: Path) -> dict[str, str]:
    return x402_env(sandbox, tmp_path)


def since_the_paid_send(sandbox: Sandbox) -> float:
    """Seconds since the rail received the paid request (the second createTask; the first is the
    unpaid probe): the cap runs from there, not from the call's set-up (price, probe, signing)."""
    sends = [r.time for r in sandbox.requests if r.method == "POST" and r.path == "/x402/createTask"]
    return time.time() - sends[1]


async def finished(payer: Agent, solve_id: str) -> dict[str, Any]:
    """get_solve until the solve ends (three 55 s waits at most): in real time
    (NONECAP_TIME_SCALE=1) the paid request's 75 s cap outlasts one wait."""
    for _ in range(3):
        solve = await payer.ok("get_solve", {"id": solve_id, "wait_seconds": 55})
        if solve["status"] not in ("pending", "solving"):
            break
    return solve


async def test_the_paid_request_is_cut_at_its_cap_and_then_counted_as_spent(
        x402_settings_env: dict[str, str], sandbox: Sandbox, tmp_path: Path) -> None:
    """The paid request goes on in the background after the call, but not forever: at its cap
    (the rail's 60 s solve cap plus margin: 75 s, in the suite's time scale) it ends, and the
    payment, which may have settled, stays counted: payment_outcome_unknown, never re-sent."""
    sandbox.inject_fault(method="POST", path="/x402/createTask", action="delay", seconds=scaled(75) + 30, skip=1)
    async with Client(build_server(load_settings(x402_settings_env)), mode="legacy") as client:
        payer = Agent(client)
        started = time.monotonic()
        pending = await payer.ok("create_solve", solve_args("sandbox-solve-100ms", wait_seconds=3))  # room to set up under load
        assert pending["status"] == "solving" and time.monotonic() - started < 3 + scaled(10)
        done = await finished(payer, pending["id"])
        took = since_the_paid_send(sandbox)
    assert done["status"] == "failed" and done["error"]["code"] == "payment_outcome_unknown"
    assert scaled(75) - 1 < took < scaled(75) + scaled(10), took
    assert [p["state"] for p in Ledger(tmp_path / "ledger.sqlite3").payments_for(pending["id"])] == ["unknown"]
    assert paid_posts(sandbox) == 2  # the probe and the one paid request: never re-sent


async def test_the_paid_request_with_its_retries_is_cut_at_the_same_cap(
        x402_settings_env: dict[str, str], sandbox: Sandbox, tmp_path: Path) -> None:
    """The cap bounds the paid request as a whole, not each exchange: after two 503s that ask
    for the longest wait we honour (Retry-After 20 s, 8 s in all), the same payment is sent a
    third time and the rail stalls. That last exchange is cut at what is left of the 75 s, not
    75 s of its own; the payment, signed once, stays counted as spent."""
    sandbox.inject_fault(method="POST", path="/x402/createTask", action="status", status=503, retry_after=20, skip=1, times=2)
    sandbox.inject_fault(method="POST", path="/x402/createTask", action="delay", seconds=scaled(75) + 30)  # the third send
    async with Client(build_server(load_settings(x402_settings_env)), mode="legacy") as client:
        payer = Agent(client)
        pending = await payer.ok("create_solve", solve_args("sandbox-solve-100ms", wait_seconds=3))  # room to set up under load
        assert pending["status"] == "solving"
        done = await finished(payer, pending["id"])
        took = since_the_paid_send(sandbox)
    assert done["status"] == "failed" and done["error"]["code"] == "payment_outcome_unknown"
    assert paid_posts(sandbox) == 4  # the probe, two 503s and the stalled third send of the same header
    # 75 s from the first paid send: each exchange's own cap alone would end it at 2 x 20 + 75 s.
    assert scaled(75) - 1 < took < scaled(75) + scaled(10), took
    assert [p["state"] for p in Ledger(tmp_path / "ledger.sqlite3").payments_for(pending["id"])] == ["unknown"]  # signed once
