"""The live NoneCap API past the v1 seed, end to end through the real MCP client (both eras)
against the sandbox: new solve fields, codes, reasons and error classes with their guidance,
the plan, report_solve, the prompt, the resources and MCP log notifications."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any, get_args

import nonecap
import pytest
from conftest import Agent, one_era, record, sandbox_env
from mcp import Client, MCPDeprecationWarning, MCPError
from mcp.types import INVALID_PARAMS, LoggingMessageNotificationParams

from nonecap_mcp.config import Settings, load_settings
from nonecap_mcp.guidance import API_ERRORS, SOLVE_FAILURES, SOLVE_REASONS, SOLVE_WARNINGS, for_solve
from nonecap_mcp.sandbox import Sandbox
from nonecap_mcp.sandbox.errors import STATUS_BY_CODE
from nonecap_mcp.sandbox.outcomes import NOT_RETRYABLE, REASON_MESSAGES, REFUSALS, WARNING_MESSAGES
from nonecap_mcp.sandbox.solves import SANDBOX_USER_AGENT
from nonecap_mcp.tools import build_server

pytestmark = pytest.mark.anyio

URL = "https://shop.example/login"
NEW_CODES = ("internal_error", "unsolvable_variant", "capacity_exhausted")
UNKNOWN_ID = "solve_01HQF7K3JKWZX0000000000000"
FAKE_KEY = "nc_live_" + "Z" * 32  # not a registered secret: the test proves it is masked


def solve_args(sitekey: str, **extra: Any) -> dict[str, Any]:
    return {"type": "hcaptcha", "sitekey": sitekey, "url": URL, "wait_seconds": 10, **extra}


def message(error_text: str) -> str:
    """The tool error without the SDK's "Error executing tool <name>: " prefix."""
    return error_text.split(": ", 1)[1]


def guidance_of(error_text: str) -> dict[str, Any]:
    return json.loads(error_text.split("guidance: ", 1)[1])


# -- solve fields, codes and reasons ----------------------------------------------------


async def test_a_solved_solve_carries_resp_key_and_the_user_agent_to_submit_with(agent: Agent) -> None:
    solve = await agent.ok("create_solve", solve_args("sandbox-solve-50ms"))
    assert solve["status"] == "solved" and solve["resp_key"].startswith("E0_")
    assert solve["user_agent"] == SANDBOX_USER_AGENT and solve["warnings"] == []
    mine = await agent.ok("create_solve", solve_args("sandbox-solve-50ms", user_agent="MyBrowser/1.0"))
    assert mine["user_agent"] == "MyBrowser/1.0"
    pending = await agent.ok("create_solve", solve_args("sandbox-hang", wait_seconds=0))
    assert (pending["resp_key"], pending["user_agent"], pending["token"]) == (None, None, None)


@pytest.mark.parametrize("warning", sorted(WARNING_MESSAGES))
async def test_warnings_ride_on_the_solve(agent: Agent, warning: str) -> None:
    """A warning's advice is about the next solves (this token is good): it reaches the agent as
    the solved solve's guidance, the sandbox knowing every warning the official client names."""
    solve = await agent.ok("create_solve", solve_args(f"sandbox-warn-{warning}-50ms"))
    assert solve["status"] == "solved" and solve["token"]
    assert solve["warnings"] == [{"code": warning, "message": WARNING_MESSAGES[warning]}]
    assert solve["guidance"] == SOLVE_WARNINGS[warning].model_dump() and not solve["guidance"]["retryable"]
    assert "use this token now" in solve["guidance"]["hint"]


def test_only_a_known_warning_brings_guidance_to_a_solved_solve() -> None:
    assert WARNING_MESSAGES.keys() == SOLVE_WARNINGS.keys()
    assert for_solve("solved", None, None, ["a_warning_from_the_future"]) is None
    assert for_solve("solved", None, None, ["a_warning_from_the_future", "proxy_recommended"]) is SOLVE_WARNINGS["proxy_recommended"]


@pytest.mark.parametrize("code", NEW_CODES)
async def test_new_failure_codes_have_their_guidance(agent: Agent, code: str) -> None:
    solve = await agent.ok("create_solve", solve_args(f"sandbox-fail-{code}-50ms"))
    assert solve["status"] == "failed" and solve["credits_charged"] == 0
    assert solve["error"]["code"] == code and solve["error"]["reason"] is None
    assert solve["error"]["retryable"] is (code not in NOT_RETRYABLE)
    assert solve["guidance"] == SOLVE_FAILURES[code].model_dump()


@pytest.mark.parametrize("reason", sorted(REASON_MESSAGES))
async def test_every_reason_beats_its_codes_guidance(agent: Agent, reason: str) -> None:
    solve = await agent.ok("create_solve", solve_args(f"sandbox-fail-proxy_error-{reason}-50ms"))
    assert solve["error"] == {
        "code": "proxy_error", "message": REASON_MESSAGES[reason], "reason": reason,
        "retryable": reason not in NOT_RETRYABLE,
    }  # fmt: skip
    assert solve["guidance"] == SOLVE_REASONS[reason].model_dump() != SOLVE_FAILURES["proxy_error"].model_dump()


def test_reason_guidance_is_specific() -> None:
    actions = {reason: guidance.action for reason, guidance in SOLVE_REASONS.items()}
    assert actions["sitekey_rate_limited"] == "wait_and_retry"
    assert actions["proxy_rejected"] == actions["proxy_stalled"] == "retry_with_new_proxy"
    assert actions["proxy_tls"] == actions["proxy_egress_blocked"] == "fix_proxy"
    assert set(SOLVE_REASONS) == set(REASON_MESSAGES)  # every reason the API documents has guidance


async def test_an_unknown_reason_falls_back_on_the_code(agent: Agent, sandbox: Sandbox) -> None:
    """A reason newer than this client must not break anything: the code's guidance applies."""
    solve = await agent.ok("create_solve", solve_args("sandbox-fail-token_not_granted-50ms"))
    assert solve["guidance"] == SOLVE_FAILURES["token_not_granted"].model_dump()


async def test_enterprise_without_rqdata_is_sent(agent: Agent, sandbox: Sandbox) -> None:
    solve = await agent.ok("create_solve", solve_args("sandbox-solve-50ms", type="hcaptcha_enterprise"))
    assert solve["status"] == "solved" and solve["type"] == "hcaptcha_enterprise"


# -- error classes ----------------------------------------------------------------------


@pytest.mark.parametrize("code", sorted(REFUSALS))
async def test_refused_creates_are_errors_with_guidance_and_charge_nothing(
    agent: Agent, sandbox: Sandbox, code: str
) -> None:
    text = await agent.error("create_solve", solve_args(f"sandbox-refuse-{code}"))
    retry_after, _ = REFUSALS[code]
    assert message(text).startswith(f"{code} (HTTP {STATUS_BY_CODE[code]}, request req_")
    assert guidance_of(text) == API_ERRORS[code].model_copy(update={"retry_after_seconds": retry_after}).model_dump()
    balance = await agent.ok("get_balance")
    assert balance["credits_balance"] == 100 and balance["plan_remaining_today"] == 1000
    assert [r.path for r in sandbox.requests if r.method == "POST"] == ["/v1/solves"]  # sent once, not reconciled


@pytest.mark.parametrize(
    ("code", "status"), [("payload_too_large", 413), ("unsupported_media_type", 415), ("forbidden", 403)]
)
async def test_new_error_classes_carry_guidance(agent: Agent, sandbox: Sandbox, code: str, status: int) -> None:
    sandbox.inject_fault(method="POST", path="/v1/solves", action="status", code=code)
    text = await agent.error("create_solve", solve_args("sandbox-solve-50ms"))
    assert message(text).startswith(f"{code} (HTTP {status}, request req_")
    assert guidance_of(text) == API_ERRORS[code].model_dump()


@one_era
@pytest.mark.parametrize(
    ("status", "action"),
    [(429, "wait_and_retry"), (401, "check_api_key"), (402, "top_up"), (403, "check_api_key"), (409, "fix_parameter")],
)
async def test_a_code_this_client_does_not_know_is_guided_by_its_status(
    agent: Agent, sandbox: Sandbox, status: int, action: str
) -> None:
    """NoneCap adds codes (the official client passes new ones through as plain strings): a new
    throttle must read "wait", not "fix your call"; only a plain 4xx falls back on fix_parameter."""
    sandbox.inject_fault(method="POST", path="/v1/solves", action="status", status=status, code="ext_new_code", retry_after=1)
    text = await agent.error("create_solve", solve_args("sandbox-solve-50ms"))
    assert message(text).startswith(f"ext_new_code (HTTP {status}, request req_")
    assert guidance_of(text)["action"] == action


def test_every_code_and_reason_of_the_official_client_has_guidance() -> None:
    """Pinned to the client's own lists, so a `nonecap` upgrade that adds one fails here."""
    assert set(get_args(nonecap.SolveErrorCode)) <= set(SOLVE_FAILURES)
    assert set(get_args(nonecap.SolveErrorReason)) <= set(SOLVE_REASONS)


# -- plan ---------------------------------------------------------------------------------


async def test_get_balance_shows_the_plans_day(agent: Agent) -> None:
    before = await agent.ok("get_balance")
    assert before["plan_remaining_today"] == 1000 and before["plan_resets_at"].endswith("T00:00:00.000Z")
    await agent.ok("create_solve", solve_args("sandbox-solve-50ms"))
    await agent.ok("create_solve", solve_args("sandbox-fail-vision_error-50ms"))  # refunded: not used
    assert (await agent.ok("get_balance"))["plan_remaining_today"] == 999


# -- report_solve -------------------------------------------------------------------------


async def test_report_then_correct_the_verdict(agent: Agent, sandbox: Sandbox) -> None:
    solve = await agent.ok("create_solve", solve_args("sandbox-solve-50ms"))
    first = await agent.ok("report_solve", {"id": solve["id"], "outcome": "accepted"})
    assert (first["solve_id"], first["outcome"], first["report_count"]) == (solve["id"], "accepted", 1)
    again = await agent.ok("report_solve", {"id": solve["id"], "outcome": "accepted"})
    assert again["report_count"] == 1  # identical: nothing rewritten
    corrected = await agent.ok(
        "report_solve", {"id": solve["id"], "outcome": "rejected", "reason": "invalid-response", "context": "3rd try"}
    )
    assert (corrected["outcome"], corrected["reason"], corrected["context"]) == ("rejected", "invalid-response", "3rd try")
    assert corrected["report_count"] == 2 and corrected["created_at"] == first["created_at"]
    assert len([r for r in sandbox.requests if r.path == f"/v1/solves/{solve['id']}/feedback"]) == 3
    assert (await agent.ok("get_balance"))["credits_balance"] == 99  # reporting is free


async def test_report_errors_are_explained(agent: Agent, sandbox: Sandbox) -> None:
    unknown = await agent.error("report_solve", {"id": UNKNOWN_ID, "outcome": "accepted"})
    assert message(unknown).startswith("not_found (HTTP 404") and guidance_of(unknown)["action"] == "check_solve_id"
    failed = await agent.ok("create_solve", solve_args("sandbox-fail-vision_error-50ms"))
    not_solved = await agent.error("report_solve", {"id": failed["id"], "outcome": "rejected"})
    assert message(not_solved).startswith("not_eligible (HTTP 404") and "failed" in not_solved
    before = len(sandbox.requests)
    x402 = await agent.error("report_solve", {"id": "x402_01HQF7K3JKWZX", "outcome": "accepted"})
    assert message(x402).startswith("feedback_not_supported") and guidance_of(x402)["action"] == "none"
    bad = await agent.error("report_solve", {"id": failed["id"], "outcome": "great"})
    assert "outcome" in bad and guidance_of(bad)["action"] == "fix_parameter"
    assert len(sandbox.requests) == before  # refused locally, nothing sent


@one_era
async def test_a_report_whose_answer_was_lost_is_sent_again(agent: Agent, sandbox: Sandbox) -> None:
    """A report only restates a verdict, so unlike a create it is safe to repeat when its answer is
    lost mid-request: the first was recorded, the second restates it (no new count), and the agent
    sees a result instead of an error."""
    solve = await agent.ok("create_solve", solve_args("sandbox-solve-50ms"))
    sandbox.inject_fault(method="POST", path="/v1/solves/*", action="drop_after")
    report = await agent.ok("report_solve", {"id": solve["id"], "outcome": "accepted"})
    assert (report["outcome"], report["report_count"]) == ("accepted", 1)
    assert sum(r.method == "POST" and r.path.endswith("/feedback") for r in sandbox.requests) == 2


@one_era
async def test_a_long_rejection_text_is_reported_cut_to_what_nonecap_keeps(agent: Agent) -> None:
    solve = await agent.ok("create_solve", solve_args("sandbox-solve-50ms"))
    report = await agent.ok("report_solve", {"id": solve["id"], "outcome": "rejected", "reason": "r" * 600, "context": "c" * 3000})
    assert (report["outcome"], report["reason"], report["context"]) == ("rejected", "r" * 512, "c" * 2000)


async def test_report_solve_is_an_idempotent_change_hidden_when_read_only(sandbox: Sandbox, mode: str) -> None:
    async with Client(build_server(load_settings(sandbox_env(sandbox))), mode=mode) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert len(tools) == 7
    hints = tools["report_solve"].annotations
    assert hints is not None
    assert (hints.read_only_hint, hints.destructive_hint, hints.idempotent_hint, hints.open_world_hint) == (
        False, False, True, None,  # open world is the spec's default
    )  # fmt: skip
    async with Client(build_server(load_settings(sandbox_env(sandbox, NONECAP_READ_ONLY="1"))), mode=mode) as client:
        assert "report_solve" not in {t.name for t in (await client.list_tools()).tools}
        assert (await client.list_prompts()).prompts == []  # the workflow creates solves


# -- prompt and resources -------------------------------------------------------------------


async def test_the_solve_captcha_prompt(agent: Agent) -> None:
    prompts = {p.name: p for p in (await agent.client.list_prompts()).prompts}
    assert [a.name for a in prompts["solve_captcha"].arguments or []] == ["url"]
    text = (await agent.client.get_prompt("solve_captcha", {"url": URL})).messages[0].content.text  # type: ignore[union-attr]
    for step in (URL, "rqdata", "create_solve", "get_solve", "pending", "how_to_use", "guidance", "report_solve"):
        assert step in text
    for kind in ("hcaptcha", "recaptcha_v2", "turnstile"):  # every token type a rail sells, with its field
        assert f"`{kind}`" in text
    for field in ("h-captcha-response", "g-recaptcha-response", "cf-turnstile-response"):
        assert field in text


async def test_resources_are_listed_and_read_as_the_tools_models(agent: Agent) -> None:
    assert {str(r.uri) for r in (await agent.client.list_resources()).resources} == {
        "nonecap://pricing", "nonecap://balance",
    }  # fmt: skip
    templates = (await agent.client.list_resource_templates()).resource_templates
    assert [t.uri_template for t in templates] == ["nonecap://solves/{id}"]
    solve = await agent.ok("create_solve", solve_args("sandbox-solve-50ms"))

    async def read(uri: str) -> dict[str, Any]:
        contents = (await agent.client.read_resource(uri)).contents[0]
        assert contents.mime_type == "application/json"
        return json.loads(contents.text)  # type: ignore[union-attr]

    assert await read(f"nonecap://solves/{solve['id']}") == solve
    assert await read("nonecap://balance") == await agent.ok("get_balance")
    assert await read("nonecap://pricing") == await agent.ok("get_pricing")
    with pytest.raises(MCPError) as missing:
        await agent.client.read_resource(f"nonecap://solves/{UNKNOWN_ID}")
    assert missing.value.code == INVALID_PARAMS and "check_solve_id" in missing.value.message


async def test_every_advertised_capability_is_served(agent: Agent) -> None:
    capabilities = agent.client.server_capabilities
    assert capabilities.tools and capabilities.prompts and capabilities.resources and capabilities.logging
    assert (await agent.client.list_tools()).tools and (await agent.client.list_prompts()).prompts
    assert (await agent.client.list_resources()).resources
    assert not capabilities.resources.subscribe and not capabilities.resources.list_changed
    assert not capabilities.tools.list_changed and not capabilities.prompts.list_changed  # nothing notifies
    assert not capabilities.completions


# -- logging --------------------------------------------------------------------------------


@pytest.fixture
async def listener(settings: Settings, mode: str) -> AsyncIterator[tuple[Client, list[LoggingMessageNotificationParams]]]:
    """A client that collects log notifications; on 2026-07-28 it opts in at debug."""
    received: list[LoggingMessageNotificationParams] = []

    async def collect(params: LoggingMessageNotificationParams) -> None:
        received.append(params)

    server = build_server(settings)

    def leak() -> str:
        """A hostile log line: a key inside a message, which must reach the client masked."""
        logging.getLogger("nonecap_mcp.test").warning("upstream echoed %s back", FAKE_KEY)
        return "logged"

    server.tool()(leak)
    log_level = "debug" if mode == "auto" else None
    async with Client(server, mode=mode, logging_callback=collect, log_level=log_level) as client:
        yield client, received


async def test_log_notifications_carry_our_redacted_lines(
    listener: tuple[Client, list[LoggingMessageNotificationParams]], mode: str
) -> None:
    client, received = listener
    record(await client.call_tool("get_balance", {}))
    # Before any setLevel, a handshake-era client gets the server's level (WARNING): not INFO lines.
    assert [r.data for r in received] == ([] if mode == "legacy" else [received[0].data])
    if mode == "legacy":
        with pytest.warns(MCPDeprecationWarning):
            await client.set_logging_level("debug")
        record(await client.call_tool("get_balance", {}))
    line = received[-1]
    assert (line.level, line.logger) == ("info", "nonecap_mcp.http") and line.data.startswith("GET /v1/me -> 200")
    record(await client.call_tool("leak", {}))
    leaked = received[-1]
    assert leaked.level == "warning" and FAKE_KEY not in leaked.data and "nc_live_…ZZZZ" in leaked.data


async def test_set_level_filters_and_opting_out_gets_nothing(settings: Settings, mode: str) -> None:
    received: list[LoggingMessageNotificationParams] = []

    async def collect(params: LoggingMessageNotificationParams) -> None:
        received.append(params)

    log_level = "error" if mode == "auto" else None
    async with Client(build_server(settings), mode=mode, logging_callback=collect, log_level=log_level) as client:
        if mode == "legacy":
            with pytest.warns(MCPDeprecationWarning):
                await client.set_logging_level("error")
        record(await client.call_tool("get_balance", {}))
    assert received == []  # INFO lines stay below the level asked for
