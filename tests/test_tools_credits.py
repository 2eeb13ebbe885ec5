"""The credits rail's tools end to end through the real MCP client (both protocol eras) against the
sandbox. Its concurrency (the local slot gate, lost creates reconciled) is in test_credits_concurrency."""

from __future__ import annotations

import json
import time
from typing import Any

import anyio
import pytest
from conftest import PROXY_PASSWORD, Agent, balance, sandbox_env, scaled, solve_args, unscaled, upstream
from mcp import Client, MCPError

from nonecap_mcp.config import load_settings
from nonecap_mcp.guidance import API_ERRORS, SOLVE_FAILURES
from nonecap_mcp.sandbox import LOCKED_API_KEY, Sandbox
from nonecap_mcp.sandbox.errors import STATUS_BY_CODE
from nonecap_mcp.tools import build_server

pytestmark = pytest.mark.anyio


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
    ipv6 = proxy | {"host": "2001:db8::7"}  # an IP address, bare in the object form
    solve = await agent.ok("create_solve", solve_args("sandbox-solve-100ms", proxy=ipv6, wait_seconds=5))
    assert solve["status"] == "solved"  # accepted by us and by the API (a 422 would be a tool error)
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
    retry_after = round(unscaled(1))  # costs 1 s in any time scale: beyond the backoff's own (at most half of it)
    sandbox.inject_fault(method="POST", path="/v1/solves", action="status", status=503, code="pool_exhausted", retry_after=retry_after)
    started = time.monotonic()
    solve = await agent.ok("create_solve", solve_args("sandbox-solve-100ms", wait_seconds=5))
    assert solve["status"] == "solved"
    assert time.monotonic() - started >= scaled(retry_after)  # the server's Retry-After, honoured (scaled)
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


async def test_cancel_whose_answer_was_lost_is_retried_idempotently(agent: Agent, sandbox: Sandbox) -> None:
    solve = await agent.ok("create_solve", solve_args("sandbox-hang", wait_seconds=0))
    sandbox.inject_fault(method="DELETE", path=f"/v1/solves/{solve['id']}", action="drop_after")
    cancelled = await agent.ok("cancel_solve", {"id": solve["id"]})
    assert cancelled["status"] == "cancelled"
    assert [r.status for r in upstream(sandbox, "DELETE")] == [None, 409]  # lost, then "already cancelled"
    assert await balance(agent) == 100


@pytest.mark.parametrize("param", ["url", "webhook_url"])
async def test_unparseable_url_names_the_parameter(agent: Agent, sandbox: Sandbox, param: str) -> None:
    text = await agent.error("create_solve", solve_args("sandbox-solve-100ms", **{param: "http://[abc/"}))
    assert text.startswith("Error executing tool create_solve: invalid_argument:") and f"param: {param}" in text
    assert upstream(sandbox) == []


async def test_malformed_key_says_check_api_key_not_retry(sandbox: Sandbox, mode: str) -> None:
    server = build_server(load_settings(sandbox_env(sandbox, NONECAP_API_KEY="nc_live_" + "A" * 31)))
    async with Client(server, mode=mode) as client:
        text = await Agent(client).error("get_balance")
    assert "invalid_api_key" in text and '"action": "check_api_key", "retryable": false' in text
    assert upstream(sandbox) == []
