"""The credits rail under concurrency, through the real MCP client against the sandbox: the local
slot gate (calls queue instead of collecting 429s; a solve handed back pending keeps its slot) and
lost creates reconciled without ever adopting another call's solve or re-sending blindly."""

from __future__ import annotations

import sys
import time
from typing import Any

import anyio
import pytest
from conftest import REAL_TIME_ENV, Agent, balance, one_era, sandbox_env, scaled, solve_args, unscaled, upstream
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.stdio import stdio_client

from nonecap_mcp.config import load_settings
from nonecap_mcp.sandbox import Sandbox
from nonecap_mcp.tools import build_server
from nonecap_mcp.tools.errors import INNER_SLACK_SECONDS

pytestmark = pytest.mark.anyio


@one_era
async def test_parallel_calls_beyond_the_cap_queue_locally(agent: Agent, sandbox: Sandbox) -> None:
    results: list[dict[str, Any]] = []

    async def one() -> None:
        results.append(await agent.ok("create_solve", solve_args("sandbox-solve-400ms", wait_seconds=20)))

    async with anyio.create_task_group() as group:
        for _ in range(8):
            group.start_soon(one)
    assert [r["status"] for r in results] == ["solved"] * 8
    statuses = [r.status for r in upstream(sandbox, "POST")]
    assert len(statuses) == 8 and 429 not in statuses  # queued locally, never refused upstream


@one_era
async def test_solves_handed_back_pending_keep_their_slots(agent: Agent, sandbox: Sandbox) -> None:
    """The gate counts what runs upstream: a sixth create waits locally, then says wait_for_slot
    without sending anything the account would refuse with 429."""
    for _ in range(5):  # returned pending, still in flight upstream
        await agent.ok("create_solve", solve_args("sandbox-hang", wait_seconds=0))
    text = await agent.error("create_solve", solve_args("sandbox-solve-100ms", wait_seconds=1))
    assert "concurrency_limit_exceeded: " in text and "nothing was sent" in text and '"action": "wait_for_slot"' in text
    assert [r.status for r in upstream(sandbox, "POST")] == [202] * 5  # the sixth was never sent
    first = (await agent.ok("list_solves", {"limit": 5}))["data"][-1]["id"]
    await agent.ok("cancel_solve", {"id": first})  # seen finished: its slot is free again
    sixth = await agent.ok("create_solve", solve_args("sandbox-solve-100ms", wait_seconds=5))
    assert sixth["status"] == "solved" and 429 not in [r.status for r in upstream(sandbox, "POST")]


async def test_cancelling_one_of_two_same_page_calls_cancels_only_its_own(agent: Agent, sandbox: Sandbox) -> None:
    results: list[dict[str, Any]] = []

    async def first() -> None:
        results.append(await agent.ok("create_solve", solve_args("sandbox-solve-2s", wait_seconds=20)))

    async with anyio.create_task_group() as group:
        group.start_soon(first)
        await first_post_arrived(sandbox)  # the first call's create is in flight
        with pytest.raises(MCPError):
            await agent.client.call_tool("create_solve", solve_args("sandbox-solve-2s", wait_seconds=20), read_timeout_seconds=0.7)
    assert results[0]["status"] == "solved"
    listed = {s["id"]: s["status"] for s in (await agent.ok("list_solves"))["data"]}
    assert listed == {results[0]["id"]: "solved", **{i: "cancelled" for i in listed if i != results[0]["id"]}}
    assert len(listed) == 2 and await balance(agent) == 99


@one_era
async def test_a_lost_answer_never_adopts_another_calls_solve(agent: Agent, sandbox: Sandbox) -> None:
    results: list[Any] = []

    async def first() -> None:
        results.append(await agent.ok("create_solve", solve_args("sandbox-solve-1500ms", wait_seconds=10)))

    sandbox.inject_fault(method="POST", path="/v1/solves", action="drop_after", skip=1)
    async with anyio.create_task_group() as group:
        group.start_soon(first)
        await first_post_arrived(sandbox)  # the first call's create is in flight
        text = await agent.error("create_solve", solve_args("sandbox-solve-1500ms", wait_seconds=10))
    assert "outcome_unknown" in text and '"action": "check_status_first"' in text
    assert results[0]["status"] == "solved"
    assert len(upstream(sandbox, "POST")) == 2  # the lost one was not re-sent


async def first_post_arrived(sandbox: Sandbox) -> None:
    """Wait (under any load) until the sandbox has received a create, not a fixed sleep."""
    with anyio.fail_after(10):
        while not upstream(sandbox, "POST"):
            await anyio.sleep(0.02)


@one_era
async def test_a_call_queues_for_a_local_slot_then_goes_ahead(sandbox: Sandbox, mode: str) -> None:
    server = build_server(load_settings(sandbox_env(sandbox, NONECAP_MAX_CONCURRENCY="1")))
    async with Client(server, mode=mode) as client:
        agent = Agent(client)
        async with anyio.create_task_group() as group:
            # The first call holds the only slot for well within the second's slot wait (the 10 s floor, cut by its bound).
            group.start_soon(agent.ok, "create_solve", solve_args(f"sandbox-solve-{round(scaled(1500))}ms", wait_seconds=5))
            await first_post_arrived(sandbox)
            started = time.monotonic()
            second = await agent.ok("create_solve", solve_args("sandbox-solve-100ms", wait_seconds=0))
            assert time.monotonic() - started >= scaled(1.0)  # it waited for the slot, not for a 429
    assert second["id"].startswith("solve_")
    assert 429 not in [r.status for r in upstream(sandbox, "POST")]


async def test_a_slot_that_never_frees_is_reported_not_waited_on_forever(sandbox: Sandbox) -> None:
    server = build_server(load_settings(sandbox_env(sandbox, NONECAP_MAX_CONCURRENCY="1")))
    async with Client(server, mode="legacy") as client:
        agent = Agent(client)
        async with anyio.create_task_group() as group:
            group.start_soon(agent.ok, "create_solve", solve_args("sandbox-hang", wait_seconds=1))
            await first_post_arrived(sandbox)  # the first call holds the only slot, handed back pending or not
            started = time.monotonic()
            text = await agent.error("create_solve", solve_args("sandbox-solve-100ms", wait_seconds=1))
            # The slot wait's 10 s floor, cut where the call's bound (wait + 10 s) leaves its exchanges off
            # (its slack for our own work, uncompressed): in real time 9 s (test_the_slot_wait_floor_holds_at_its_real_value).
            assert 1 + scaled(10) - INNER_SLACK_SECONDS - 0.3 < time.monotonic() - started < 1 + scaled(10)
    assert "concurrency_limit_exceeded" in text and "nothing was sent" in text
    assert len(upstream(sandbox, "POST")) == 1


@one_era
async def test_a_create_started_during_reconciliation_is_never_adopted(agent: Agent, sandbox: Sandbox) -> None:
    """The other call sees the lost call's open intent, so it POSTs without ?wait and claims
    its id at once; the lost call's second listing then cannot take it, finds nothing of
    its own, and re-sends (its first POST never arrived). That second listing is held up
    upstream (half an exchange's bound), so the other create lands before it under any load."""
    sandbox.inject_fault(method="POST", path="/v1/solves", action="drop_before")
    sandbox.inject_fault(method="GET", path="/v1/solves", action="delay", seconds=scaled(5), skip=1)
    results: dict[str, Any] = {}

    async def lost() -> None:
        results["lost"] = await agent.ok("create_solve", solve_args("sandbox-solve-2s", wait_seconds=10))

    async with anyio.create_task_group() as group:
        group.start_soon(lost)
        with anyio.fail_after(10):  # the lost call's first listing arrived: it is between its two listings now
            while not [r for r in sandbox.requests if r.method == "GET" and r.path == "/v1/solves"]:
                await anyio.sleep(0.01)
        results["other"] = await agent.ok("create_solve", solve_args("sandbox-solve-2s", wait_seconds=10))
    assert results["lost"]["id"] != results["other"]["id"]
    assert results["lost"]["status"] == results["other"]["status"] == "solved"
    assert [r.status for r in upstream(sandbox, "POST")] == [None, 202, 200]
    assert "wait" not in upstream(sandbox, "POST")[1].query  # the other call learned its id at once
    assert await balance(agent) == 98


@one_era
async def test_another_clients_earlier_solve_is_never_adopted(agent: Agent, sandbox: Sandbox, settings: Any, mode: str) -> None:
    earlier = await agent.ok("create_solve", solve_args("sandbox-solve-100ms", wait_seconds=5))
    await anyio.sleep(3)
    sandbox.inject_fault(method="POST", path="/v1/solves", action="drop_before")
    async with Client(build_server(settings), mode=mode) as fresh:  # a new process: no clock learned yet
        mine = await Agent(fresh).ok("create_solve", solve_args("sandbox-solve-100ms", wait_seconds=5))
    assert mine["id"] != earlier["id"] and mine["status"] == "solved"
    assert len((await agent.ok("list_solves"))["data"]) == 2


@one_era
async def test_a_failed_follow_up_wait_still_returns_the_solve_id(agent: Agent, sandbox: Sandbox) -> None:
    results: list[dict[str, Any]] = []

    async def first() -> None:
        results.append(await agent.ok("create_solve", solve_args("sandbox-solve-2s", wait_seconds=10)))

    sandbox.inject_fault(method="GET", path="/v1/solves/*", action="status", status=500, code="internal_error", times=3)
    async with anyio.create_task_group() as group:
        group.start_soon(first)
        await first_post_arrived(sandbox)  # the first call's create is in flight
        second = await agent.ok("create_solve", solve_args("sandbox-solve-2s", wait_seconds=10))
    assert second["id"].startswith("solve_") and second["status"] in ("pending", "solving")
    assert second["guidance"]["action"] == "poll"
    assert results[0]["status"] == "solved" and len(upstream(sandbox, "POST")) == 2


@one_era
async def test_a_retried_create_waits_only_for_what_is_left(agent: Agent, sandbox: Sandbox) -> None:
    retry_after = round(unscaled(2))  # costs the call 2 s whatever the time scale
    sandbox.inject_fault(method="POST", path="/v1/solves", action="status", status=503, code="pool_exhausted", retry_after=retry_after)
    started = time.monotonic()
    solve = await agent.ok("create_solve", solve_args("sandbox-hang", wait_seconds=5))
    assert solve["status"] == "solving" and time.monotonic() - started < 5 + scaled(1.5)
    waits = [int(r.query.get("wait", 0)) for r in upstream(sandbox, "POST")]
    assert waits[0] >= 4 and waits[1] <= 3
    await agent.ok("cancel_solve", {"id": solve["id"]})


@pytest.mark.real_time
async def test_the_slot_wait_floor_holds_at_its_real_value(sandbox: Sandbox) -> None:
    """A server in real time (the suite's is compressed), its only slot held by a solve still
    running upstream: a call with wait_seconds=1 still queues for the 10 s floor, cut by its
    1 + 10 s bound, then says wait_for_slot without sending anything."""
    from child_process import child_env

    env = child_env(**sandbox_env(sandbox, NONECAP_MAX_CONCURRENCY="1") | REAL_TIME_ENV)
    params = StdioServerParameters(command=sys.executable, args=["-m", "nonecap_mcp", "serve"], env=env)
    async with Client(stdio_client(params), mode="legacy") as client:
        agent = Agent(client)
        await agent.ok("create_solve", solve_args("sandbox-hang", wait_seconds=0))  # handed back pending: keeps the slot
        started = time.monotonic()
        text = await agent.error("create_solve", solve_args("sandbox-solve-100ms", wait_seconds=1))
        took = time.monotonic() - started
    assert 8.5 < took < 1 + 10, took
    assert "concurrency_limit_exceeded" in text and '"action": "wait_for_slot"' in text
    assert len(upstream(sandbox, "POST")) == 1
