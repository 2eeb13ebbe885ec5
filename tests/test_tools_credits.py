"""The six tools end to end through the real MCP client (both protocol eras) against the sandbox."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import anyio
import pytest
from conftest import PROXY_PASSWORD, REAL_TIME_ENV, Agent, sandbox_env, scaled, unscaled
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.stdio import stdio_client

from nonecap_mcp.config import load_settings
from nonecap_mcp.guidance import API_ERRORS, SOLVE_FAILURES
from nonecap_mcp.sandbox import LOCKED_API_KEY, Sandbox
from nonecap_mcp.sandbox.errors import STATUS_BY_CODE
from nonecap_mcp.tools import build_server

pytestmark = pytest.mark.anyio

URL = "https://shop.example/login"


def solve_args(sitekey: str, **extra: Any) -> dict[str, Any]:
    return {"type": "hcaptcha", "sitekey": sitekey, "url": URL, **extra}


def upstream(sandbox: Sandbox, method: str | None = None, path: str | None = None) -> list[Any]:
    return [r for r in sandbox.requests if (method is None or r.method == method) and (path is None or r.path == path)]


async def balance(agent: Agent) -> int:
    return (await agent.ok("get_balance"))["credits_balance"]


async def test_create_and_wait_returns_a_sandbox_token(agent: Agent, sandbox: Sandbox) -> None:
    solve = await agent.ok("create_solve", solve_args("sandbox-solve-200ms", wait_seconds=10))
    assert solve["status"] == "solved"
    assert solve["token"].startswith("P1_") and "SANDBOX" in solve["token"]
    assert solve["credits_charged"] == 1 and solve["guidance"] is None
    use = solve["how_to_use"]  # where the token goes, single use, its lifetime, same client
    assert "h-captcha-response" in use and "single use" in use and "120 s" in use and "user_agent" in use
    assert solve["queue_ms"] is not None and solve["resolve_ms"] is not None
    assert len(upstream(sandbox, "POST", "/v1/solves")) == 1  # one long-poll request, no polling loop
    assert await balance(agent) == 99


async def test_pending_after_wait_points_to_get_solve(agent: Agent) -> None:
    pending = await agent.ok("create_solve", solve_args("sandbox-solve-2s", wait_seconds=1))
    assert pending["status"] in ("pending", "solving")
    assert pending["guidance"]["action"] == "poll" and "get_solve" in pending["guidance"]["hint"]
    done = await agent.ok("get_solve", {"id": pending["id"], "wait_seconds": 10})
    assert done["status"] == "solved" and done["id"] == pending["id"]


@pytest.mark.parametrize("code", sorted(set(SOLVE_FAILURES) - {"cancelled", "expired"}))
async def test_every_failure_code_is_a_result_with_guidance_and_a_refund(agent: Agent, code: str) -> None:
    solve = await agent.ok("create_solve", solve_args(f"sandbox-fail-{code}", wait_seconds=10))
    assert solve["status"] == "failed" and solve["error"]["code"] == code
    assert solve["guidance"] == SOLVE_FAILURES[code].model_dump()
    assert solve["credits_charged"] == 0 and solve["how_to_use"] is None
    assert await balance(agent) == 100


async def test_expired_solve_is_never_billed(agent: Agent) -> None:
    solve = await agent.ok("create_solve", solve_args("sandbox-expire-300ms", wait_seconds=10))
    assert solve["status"] == "expired" and solve["guidance"]["action"] == "retry"
    assert solve["resolve_ms"] is None and solve["started_at"] is None
    assert await balance(agent) == 100


async def test_list_paginates_newest_first_with_filters(agent: Agent) -> None:
    ids = [(await agent.ok("create_solve", solve_args("sandbox-hang", wait_seconds=0)))["id"] for _ in range(3)]
    failed = await agent.ok("create_solve", solve_args("sandbox-fail-vision_error", wait_seconds=5))
    page1 = await agent.ok("list_solves", {"limit": 2})
    assert [s["id"] for s in page1["data"]] == [failed["id"], ids[2]]
    assert page1["has_more"] and page1["next_starting_after"] == ids[2]
    page2 = await agent.ok("list_solves", {"limit": 2, "starting_after": page1["next_starting_after"]})
    assert [s["id"] for s in page2["data"]] == [ids[1], ids[0]] and not page2["has_more"]
    assert page2["next_starting_after"] is None
    only_failed = await agent.ok("list_solves", {"status": "failed"})
    assert [s["id"] for s in only_failed["data"]] == [failed["id"]]
    for solve_id in ids:
        await agent.ok("cancel_solve", {"id": solve_id})


async def test_cancel_refunds_and_a_second_cancel_is_a_conflict(agent: Agent) -> None:
    solve = await agent.ok("create_solve", solve_args("sandbox-hang", wait_seconds=0))
    assert await balance(agent) == 99
    cancelled = await agent.ok("cancel_solve", {"id": solve["id"]})
    assert cancelled["status"] == "cancelled" and cancelled["guidance"]["action"] == "none"
    assert await balance(agent) == 100
    text = await agent.error("cancel_solve", {"id": solve["id"]})
    assert text.splitlines()[0].startswith("Error executing tool cancel_solve: conflict (HTTP 409, request req_")
    assert '"action": "none"' in text


async def test_unknown_solve_is_not_found_with_guidance(agent: Agent) -> None:
    text = await agent.error("get_solve", {"id": "solve_01HQF7K3JKWZXAAAAAAAAAAAAA", "wait_seconds": 0})
    assert "not_found (HTTP 404" in text and '"action": "check_solve_id"' in text


BAD_INPUTS = [
    ({"type": "hcaptcha_enterprise", "rqdata": "r" * 20001}, "rqdata"),  # optional, but capped
    ({"url": "ftp://shop.example/"}, "url"),
    ({"url": "not a url"}, "url"),
    ({"sitekey": "   "}, "sitekey"),
    ({"wait_seconds": 56}, "wait_seconds"),
    ({"wait_seconds": -1}, "wait_seconds"),
    ({"proxy": "shop.example:8080"}, "proxy"),
    ({"proxy": f"http://user:{PROXY_PASSWORD}@proxy.example"}, "proxy"),
    ({"proxy": f"ftp://user:{PROXY_PASSWORD}@proxy.example:21"}, "proxy"),
    ({"proxy": {"host": "proxy.example", "port": 70000, "password": PROXY_PASSWORD}}, "proxy"),
    ({"proxy": {"host": "proxy.example", "port": 8080, "password": PROXY_PASSWORD}}, "proxy"),
    ({"webhook_url": "javascript:alert(1)"}, "webhook_url"),
    ({"type": "recaptcha_v2"}, "type"),
]


@pytest.mark.parametrize(("override", "param"), BAD_INPUTS)
async def test_bad_input_names_the_parameter_and_sends_nothing(
    agent: Agent, sandbox: Sandbox, override: dict[str, Any], param: str
) -> None:
    text = await agent.error("create_solve", solve_args("sandbox-solve-100ms") | override)
    assert param in text
    assert PROXY_PASSWORD not in text
    assert upstream(sandbox) == []


async def test_bad_solve_id_is_refused_locally(agent: Agent, sandbox: Sandbox) -> None:
    text = await agent.error("get_solve", {"id": "../v1/me"})
    assert "param: id" in text and upstream(sandbox) == []


async def test_proxy_is_forwarded_and_never_echoed(agent: Agent, sandbox: Sandbox) -> None:
    proxy = {"scheme": "socks5", "host": "proxy.example", "port": 1080, "username": "u", "password": PROXY_PASSWORD}
    solve = await agent.ok("create_solve", solve_args("sandbox-solve-100ms", proxy=proxy, wait_seconds=5))
    assert solve["status"] == "solved"
    string_form = f"http://u:{PROXY_PASSWORD}@proxy.example:8080"
    solve = await agent.ok("create_solve", solve_args("sandbox-solve-100ms", proxy=string_form, wait_seconds=5))
    assert solve["status"] == "solved"


async def test_no_credits_means_top_up(agent: Agent, sandbox: Sandbox) -> None:
    sandbox.set_balance(0)
    text = await agent.error("create_solve", solve_args("sandbox-solve-100ms"))
    assert "insufficient_credits (HTTP 402" in text and '"action": "top_up"' in text
    assert len(upstream(sandbox, "POST")) == 1  # never retried


@pytest.mark.parametrize(("key", "code", "action"), [
    (LOCKED_API_KEY, "account_locked", "contact_support"),
    ("nc_live_" + "A" * 32, "unauthorized", "check_api_key"),
])
async def test_account_problems_carry_guidance(sandbox: Sandbox, mode: str, key: str, code: str, action: str) -> None:
    server = build_server(load_settings(sandbox_env(sandbox, NONECAP_API_KEY=key)))
    async with Client(server, mode=mode) as client:
        text = await Agent(client).error("get_balance")
    assert code in text and f'"action": "{action}"' in text


async def test_progress_is_reported_while_waiting(agent: Agent) -> None:
    events: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        events.append((progress, total, message))

    solve = await agent.ok("create_solve", solve_args("sandbox-solve-1500ms", wait_seconds=10), progress_callback=on_progress)
    assert solve["status"] == "solved"
    assert len(events) >= 2 and all(total == 10 for _, total, _ in events)
    assert [p for p, _, _ in events] == sorted(p for p, _, _ in events)


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


async def test_host_cancellation_cancels_the_solve_upstream(agent: Agent, sandbox: Sandbox) -> None:
    with pytest.raises(MCPError):
        await agent.client.call_tool("create_solve", solve_args("sandbox-hang", wait_seconds=30), read_timeout_seconds=0.7)
    with anyio.fail_after(10):
        while not upstream(sandbox, "DELETE"):
            await anyio.sleep(0.05)
    solves = await agent.ok("list_solves")
    assert [s["status"] for s in solves["data"]] == ["cancelled"]
    assert await balance(agent) == 100


async def test_pool_exhausted_post_is_retried_after_retry_after(agent: Agent, sandbox: Sandbox) -> None:
    sandbox.inject_fault(method="POST", path="/v1/solves", action="status", status=503, code="pool_exhausted", retry_after=1)
    started = time.monotonic()
    solve = await agent.ok("create_solve", solve_args("sandbox-solve-100ms", wait_seconds=5))
    assert solve["status"] == "solved"
    assert time.monotonic() - started >= scaled(1.0)  # the server's 1 s, in the suite's time scale
    assert [r.status for r in upstream(sandbox, "POST")] == [503, 200]


async def test_internal_error_on_create_is_reconciled_before_any_resend(agent: Agent, sandbox: Sandbox) -> None:
    """A 500 on a create leaves its outcome unknown: look first, re-send only if nothing was made."""
    sandbox.inject_fault(method="POST", path="/v1/solves", action="status", status=500, code="internal_error")
    solve = await agent.ok("create_solve", solve_args("sandbox-solve-100ms", wait_seconds=5))
    assert solve["status"] == "solved"
    assert [r.status for r in upstream(sandbox, "POST")] == [500, 200]
    assert len(upstream(sandbox, "GET", "/v1/solves")) == 2  # two listings found nothing
    assert len((await agent.ok("list_solves"))["data"]) == 1


@pytest.mark.parametrize(("status", "code"), [(500, "internal_error"), (503, "pool_exhausted"), (429, "rate_limited")])
async def test_reads_are_retried(agent: Agent, sandbox: Sandbox, status: int, code: str) -> None:
    sandbox.inject_fault(method="GET", path="/v1/me", action="status", status=status, code=code, retry_after=0, times=2)
    assert await balance(agent) == 100
    assert [r.status for r in upstream(sandbox, "GET", "/v1/me")] == [status, status, 200]


async def test_reads_give_up_after_max_retries(agent: Agent, sandbox: Sandbox) -> None:
    sandbox.inject_fault(method="GET", path="/v1/me", action="status", status=500, code="internal_error", times=5)
    text = await agent.error("get_balance")
    assert "internal_error" in text
    assert len(upstream(sandbox, "GET", "/v1/me")) == 3


async def test_lost_create_response_is_reconciled_not_resent(agent: Agent, sandbox: Sandbox) -> None:
    sandbox.inject_fault(method="POST", path="/v1/solves", action="drop_after")
    solve = await agent.ok("create_solve", solve_args("sandbox-solve-200ms", wait_seconds=5))
    assert solve["status"] == "solved"
    assert len(upstream(sandbox, "POST")) == 1  # never re-sent
    listed = await agent.ok("list_solves")
    assert [s["id"] for s in listed["data"]] == [solve["id"]]
    assert await balance(agent) == 99


async def test_create_that_never_arrived_is_sent_again_once(agent: Agent, sandbox: Sandbox) -> None:
    sandbox.inject_fault(method="POST", path="/v1/solves", action="drop_before")
    solve = await agent.ok("create_solve", solve_args("sandbox-solve-100ms", wait_seconds=5))
    assert solve["status"] == "solved"
    assert len(upstream(sandbox, "POST")) == 2
    assert len((await agent.ok("list_solves"))["data"]) == 1


async def test_unanswerable_create_is_reported_as_unknown_not_repeated(agent: Agent, sandbox: Sandbox) -> None:
    sandbox.inject_fault(method="POST", path="/v1/solves", action="drop_before", times=2)
    sandbox.inject_fault(method="GET", path="/v1/solves", action="status", status=500, code="internal_error", times=10)
    text = await agent.error("create_solve", solve_args("sandbox-solve-100ms"))
    assert "outcome_unknown" in text and '"action": "check_status_first"' in text
    assert len(upstream(sandbox, "POST")) == 1


API_STATUS = STATUS_BY_CODE  # the sandbox's table: the seed's codes and those the live API added


@pytest.mark.parametrize("code", sorted(API_ERRORS))
async def test_every_api_error_code_reaches_the_agent_with_guidance(agent: Agent, sandbox: Sandbox, code: str) -> None:
    sandbox.inject_fault(method="GET", path="/v1/me", action="status", status=API_STATUS[code], code=code, retry_after=0, times=5)
    text = await agent.error("get_balance")
    first, *rest = text.splitlines()
    assert first.startswith(f"Error executing tool get_balance: {code} (HTTP {API_STATUS[code]}, request req_")
    guidance = json.loads(rest[-1].removeprefix("guidance: "))
    assert guidance | {"retry_after_seconds": None} == API_ERRORS[code].model_dump()


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


async def test_cancel_whose_answer_was_lost_is_retried_idempotently(agent: Agent, sandbox: Sandbox) -> None:
    solve = await agent.ok("create_solve", solve_args("sandbox-hang", wait_seconds=0))
    sandbox.inject_fault(method="DELETE", path=f"/v1/solves/{solve['id']}", action="drop_after")
    cancelled = await agent.ok("cancel_solve", {"id": solve["id"]})
    assert cancelled["status"] == "cancelled"
    assert [r.status for r in upstream(sandbox, "DELETE")] == [None, 409]  # lost, then "already cancelled"
    assert await balance(agent) == 100


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


@pytest.mark.parametrize("param", ["url", "webhook_url"])
async def test_unparseable_url_names_the_parameter(agent: Agent, sandbox: Sandbox, param: str) -> None:
    text = await agent.error("create_solve", solve_args("sandbox-solve-100ms", **{param: "http://[abc/"}))
    assert text.startswith("Error executing tool create_solve: invalid_argument:") and f"param: {param}" in text
    assert upstream(sandbox) == []


async def first_post_arrived(sandbox: Sandbox) -> None:
    """Wait (under any load) until the sandbox has received a create, not a fixed sleep."""
    with anyio.fail_after(10):
        while not upstream(sandbox, "POST"):
            await anyio.sleep(0.02)


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
            assert scaled(8.5) < time.monotonic() - started < 1 + scaled(10)  # the slot wait's 10 s floor, cut by the call's bound (wait + 10 s)
    assert "concurrency_limit_exceeded" in text and "nothing was sent" in text
    assert len(upstream(sandbox, "POST")) == 1


async def test_malformed_key_says_check_api_key_not_retry(sandbox: Sandbox, mode: str) -> None:
    server = build_server(load_settings(sandbox_env(sandbox, NONECAP_API_KEY="nc_live_" + "A" * 31)))
    async with Client(server, mode=mode) as client:
        text = await Agent(client).error("get_balance")
    assert "invalid_api_key" in text and '"action": "check_api_key", "retryable": false' in text
    assert upstream(sandbox) == []


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


async def test_another_clients_earlier_solve_is_never_adopted(agent: Agent, sandbox: Sandbox, settings: Any, mode: str) -> None:
    earlier = await agent.ok("create_solve", solve_args("sandbox-solve-100ms", wait_seconds=5))
    await anyio.sleep(3)
    sandbox.inject_fault(method="POST", path="/v1/solves", action="drop_before")
    async with Client(build_server(settings), mode=mode) as fresh:  # a new process: no clock learned yet
        mine = await Agent(fresh).ok("create_solve", solve_args("sandbox-solve-100ms", wait_seconds=5))
    assert mine["id"] != earlier["id"] and mine["status"] == "solved"
    assert len((await agent.ok("list_solves"))["data"]) == 2


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
