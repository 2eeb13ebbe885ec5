"""The x402 rail behind the same tools, end to end: MCP client → server → sandbox x402 rail.

The sandbox verifies every signature (recovering the signer), settles only on success,
refuses replays, and can be told to send hostile 402s or lose a paid response.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import SCALE_ENV, Agent, one_era
from mcp import Client
from mcp.types import ElicitResult

from nonecap_mcp.config import load_settings
from nonecap_mcp.sandbox import SANDBOX_PAY_TO, SANDBOX_WALLET_ADDRESS, SANDBOX_WALLET_KEY, Sandbox
from nonecap_mcp.tools import build_server
from nonecap_mcp.x402.ledger import Ledger

pytestmark = pytest.mark.anyio
URL = "https://shop.example/checkout"
PRICE = Decimal("0.012")  # the sandbox's published HardCaptchaTokenProxyLess price


def x402_env(sandbox: Sandbox, state_dir: Path, **extra: str) -> dict[str, str]:
    """A host config for the x402 rail only: a wallet, no API key (the credits base is the sandbox's
    too, so a server started in the suite's compressed time is allowed to start)."""
    return {
        "NONECAP_API_BASE": sandbox.url,
        "NONECAP_X402_BASE": sandbox.url,
        "NONECAP_BASE_RPC_URL": f"{sandbox.url}/rpc",
        "NONECAP_WALLET_PRIVATE_KEY": SANDBOX_WALLET_KEY,
        "NONECAP_STATE_DIR": str(state_dir),
        "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
        **SCALE_ENV,
        **extra,
    }


def solve_args(sitekey: str, **extra: Any) -> dict[str, Any]:
    return {"type": "hcaptcha", "sitekey": sitekey, "url": URL, "wait_seconds": 10, **extra}


def paid_posts(sandbox: Sandbox) -> int:
    """createTask requests the rail saw; each solve makes one unpaid probe and one paid request."""
    return sum(1 for r in sandbox.requests if r.method == "POST" and r.path == "/x402/createTask")


@pytest.fixture
def x402_settings_env(sandbox: Sandbox, tmp_path: Path) -> dict[str, str]:
    return x402_env(sandbox, tmp_path)


@pytest.fixture
async def payer(x402_settings_env: dict[str, str], mode: str) -> AsyncIterator[Agent]:
    async with Client(build_server(load_settings(x402_settings_env)), mode=mode) as client:
        yield Agent(client)


@pytest.mark.parametrize("version", [1, 2])
async def test_paid_solve_settles_once_and_reports_cost(payer: Agent, sandbox: Sandbox, version: int) -> None:
    sandbox.set_x402(version=version)
    solve = await payer.ok("create_solve", solve_args("sandbox-solve-200ms"))
    assert solve["rail"] == "x402" and solve["status"] == "solved" and solve["id"].startswith("x402_")
    assert solve["token"].startswith("P1_SANDBOX") and solve["cost_usd"] == "0.012"
    assert solve["settlement_tx"].startswith("0x") and "h-captcha-response" in solve["how_to_use"]
    assert [s.tx for s in sandbox.settlements] == [solve["settlement_tx"]]
    assert sandbox.usdc_balance(SANDBOX_WALLET_ADDRESS) == Decimal("5") - PRICE
    assert paid_posts(sandbox) == 2


async def test_failed_solve_costs_nothing(payer: Agent, sandbox: Sandbox, tmp_path: Path) -> None:
    solve = await payer.ok("create_solve", solve_args("sandbox-fail-proxy_error"))
    assert solve["status"] == "failed" and solve["error"]["code"] == "x402_unsolvable"
    assert solve["guidance"]["action"] == "retry" and solve["cost_usd"] is None
    assert sandbox.settlements == [] and sandbox.usdc_balance(SANDBOX_WALLET_ADDRESS) == Decimal("5")
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    assert [p["state"] for p in ledger.payments_for(solve["id"])] == ["failed"]
    assert ledger.counted_today_atomic() == 12000  # held against the budget until the authorization expires


async def test_slow_paid_solve_continues_in_the_background(payer: Agent, sandbox: Sandbox) -> None:
    pending = await payer.ok("create_solve", solve_args("sandbox-solve-2500ms", wait_seconds=1))
    assert pending["status"] == "solving" and pending["guidance"]["action"] == "poll"
    done = await payer.ok("get_solve", {"id": pending["id"], "wait_seconds": 10})
    assert done["status"] == "solved" and done["token"].startswith("P1_") and len(sandbox.settlements) == 1


async def test_after_a_restart_results_are_refetched_for_free(x402_settings_env: dict[str, str], sandbox: Sandbox, mode: str) -> None:
    async with Client(build_server(load_settings(x402_settings_env)), mode=mode) as client:
        first = await Agent(client).ok("create_solve", solve_args("sandbox-solve-100ms"))
    async with Client(build_server(load_settings(x402_settings_env)), mode=mode) as client:
        again = await Agent(client).ok("get_solve", {"id": first["id"], "wait_seconds": 0})
        listed = await Agent(client).ok("list_solves", {"rail": "x402"})
    assert again["token"] == first["token"] and again["cost_usd"] == "0.012"
    assert any(r.path == "/x402/getTaskResult" for r in sandbox.requests)
    assert [s["id"] for s in listed["data"]] == [first["id"]]
    assert len(sandbox.settlements) == 1  # the re-fetch paid nothing


async def test_x402_solves_cannot_be_cancelled_and_say_why(payer: Agent) -> None:
    solve = await payer.ok("create_solve", solve_args("sandbox-solve-100ms"))
    text = await payer.error("cancel_solve", {"id": solve["id"]})
    assert "not_cancellable" in text and "nothing is charged unless" in text


HOSTILE = [
    ({"payTo": "0x" + "12" * 20}, "payTo"),
    ({"maxAmountRequired": "5000000"}, "maxAmountRequired"),
    ({"asset": "0x" + "34" * 20}, "asset"),
    ({"network": "base-sepolia"}, "network"),
    ({"extra": {"name": "USDC", "version": "2"}}, "extra"),
    ({"maxTimeoutSeconds": 10**9}, "maxTimeoutSeconds"),
    ({"scheme": "upto"}, "scheme"),
]


@pytest.mark.parametrize(("override", "field"), HOSTILE)
async def test_hostile_402_is_refused_with_nothing_signed(
    payer: Agent, sandbox: Sandbox, tmp_path: Path, override: dict[str, Any], field: str
) -> None:
    sandbox.set_x402(version=1, overrides=override)
    text = await payer.error("create_solve", solve_args("sandbox-solve-100ms"))
    assert "payment_refused" in text and field in text and "Nothing was signed or paid" in text
    assert paid_posts(sandbox) == 1  # only the unpaid probe
    assert Ledger(tmp_path / "ledger.sqlite3").counted_today_atomic() == 0


async def test_price_above_the_operator_cap_is_refused(sandbox: Sandbox, tmp_path: Path, mode: str) -> None:
    env = x402_env(sandbox, tmp_path, NONECAP_MAX_PRICE_USD="0.01")
    async with Client(build_server(load_settings(env)), mode=mode) as client:
        text = await Agent(client).error("create_solve", solve_args("sandbox-solve-100ms"))
    assert "payment_refused" in text and '"action": "change_policy"' in text and "0.01" in text
    assert sandbox.settlements == []


async def test_daily_budget_holds_under_concurrent_calls_and_restarts(sandbox: Sandbox, tmp_path: Path, mode: str) -> None:
    env = x402_env(sandbox, tmp_path, NONECAP_DAILY_BUDGET_USD="0.03")  # room for two solves at 0.012
    outcomes: list[bool] = []
    async with Client(build_server(load_settings(env)), mode=mode) as client:
        agent = Agent(client)

        async def one() -> None:
            result = await agent.call("create_solve", solve_args("sandbox-solve-300ms"))
            outcomes.append(not result.is_error)
            if result.is_error:
                assert "budget_exceeded" in result.content[0].text  # type: ignore[union-attr]

        async with anyio.create_task_group() as group:
            for _ in range(5):
                group.start_soon(one)
    assert sorted(outcomes) == [False, False, False, True, True]
    assert len(sandbox.settlements) == 2
    async with Client(build_server(load_settings(env)), mode=mode) as client:
        text = await Agent(client).error("create_solve", solve_args("sandbox-solve-100ms"))
    assert "budget_exceeded" in text and len(sandbox.settlements) == 2


async def test_lost_paid_response_is_resolved_from_the_chain_and_never_paid_twice(
    payer: Agent, sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.inject_fault(method="POST", path="/x402/createTask", action="drop_after", skip=1)  # the paid request
    solve = await payer.ok("create_solve", solve_args("sandbox-solve-100ms"))
    # The answer was lost, but authorizationState on chain shows the authorization used: settled.
    assert solve["status"] == "failed" and solve["error"]["code"] == "x402_result_lost"
    assert solve["cost_usd"] == "0.012" and solve["guidance"]["retryable"] is False
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    assert [p["state"] for p in ledger.payments_for(solve["id"])] == ["settled"]
    assert ledger.counted_today_atomic() == 12000  # spent
    assert paid_posts(sandbox) == 2 and len(sandbox.settlements) == 1  # sent once; settled once upstream


async def test_lost_paid_response_with_the_chain_unreachable_stays_unknown(
    payer: Agent, sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.inject_fault(method="POST", path="/x402/createTask", action="drop_after", skip=1)
    sandbox.inject_fault(method="POST", path="/rpc", action="drop_before", times=50)
    solve = await payer.ok("create_solve", solve_args("sandbox-solve-100ms"))
    assert solve["status"] == "failed" and solve["error"]["code"] == "payment_outcome_unknown"
    assert solve["guidance"]["action"] == "check_status_first"
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    assert [p["state"] for p in ledger.payments_for(solve["id"])] == ["unknown"]
    assert ledger.counted_today_atomic() == 12000  # counted as spent
    assert paid_posts(sandbox) == 2 and len(sandbox.settlements) == 1


@pytest.mark.parametrize("answer", ["accept", "decline"])
async def test_payment_above_threshold_asks_the_user(sandbox: Sandbox, tmp_path: Path, mode: str, answer: str) -> None:
    asked: list[str] = []

    async def elicit(_ctx: Any, params: Any) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action="accept", content={"confirm": True}) if answer == "accept" else ElicitResult(action="decline")

    env = x402_env(sandbox, tmp_path, NONECAP_CONFIRM_ABOVE_USD="0.01")
    async with Client(build_server(load_settings(env)), mode=mode, elicitation_callback=elicit) as client:
        result = await Agent(client).call("create_solve", solve_args("sandbox-solve-100ms"))
    assert asked and "$0.012" in asked[0]
    assert result.is_error is (answer == "decline")
    assert len(sandbox.settlements) == (answer == "accept")


async def test_without_elicitation_an_explicit_confirmation_is_required(sandbox: Sandbox, tmp_path: Path, mode: str) -> None:
    env = x402_env(sandbox, tmp_path, NONECAP_CONFIRM_ABOVE_USD="0.01")
    async with Client(build_server(load_settings(env)), mode=mode) as client:
        agent = Agent(client)
        text = await agent.error("create_solve", solve_args("sandbox-solve-100ms"))
        assert "confirmation_required" in text and "confirm_payment=true" in text and sandbox.settlements == []
        solve = await agent.ok("create_solve", solve_args("sandbox-solve-100ms", confirm_payment=True))
    assert solve["status"] == "solved" and len(sandbox.settlements) == 1


async def test_balance_and_pricing_show_the_wallet_and_the_published_table(payer: Agent, sandbox: Sandbox) -> None:
    await payer.ok("create_solve", solve_args("sandbox-solve-100ms"))
    balance = await payer.ok("get_balance")
    assert balance["wallet_address"] == SANDBOX_WALLET_ADDRESS and balance["usdc_balance"] == "4.988"
    assert balance["x402_spent_today_usd"] == "0.012" and balance["x402_daily_budget_usd"] == "1.00"
    assert balance["credits_balance"] is None and not any(n.startswith("credits:") for n in balance["notes"])  # never set up: no noise
    pricing = await payer.ok("get_pricing")
    x402 = {p["task_type"]: p["price"] for p in pricing["prices"] if p["rail"] == "x402"}
    assert x402["HardCaptchaTokenProxyLess"] == "0.012" and pricing["x402_pay_to"] == SANDBOX_PAY_TO


async def test_x402_refuses_what_it_cannot_do_before_paying(payer: Agent, sandbox: Sandbox) -> None:
    text = await payer.error("create_solve", solve_args("sandbox-solve-100ms", proxy="http://u:p@proxy.example:8080"))
    assert "param: proxy" in text
    text = await payer.error("create_solve", solve_args("s", type="hcaptcha_enterprise", rqdata="abc"))
    assert "param: type" in text
    assert sandbox.settlements == []


async def test_no_wallet_and_no_key_says_how_to_set_one_up(sandbox: Sandbox, tmp_path: Path) -> None:
    env = x402_env(sandbox, tmp_path)
    del env["NONECAP_WALLET_PRIVATE_KEY"]
    async with Client(build_server(load_settings(env)), mode="legacy") as client:
        text = await Agent(client).error("create_solve", solve_args("sandbox-solve-100ms"))
    assert "no_payment_method" in text and "wallet create" in text


@pytest.mark.parametrize(("status", "action"), [(400, "fix_parameter"), (429, "wait_and_retry"), (503, "wait_and_retry")])
async def test_rail_failures_before_paying_are_tool_errors_with_guidance(
    payer: Agent, sandbox: Sandbox, status: int, action: str
) -> None:
    sandbox.inject_fault(method="POST", path="/x402/createTask", action="status", status=status, retry_after=0, times=5)
    text = await payer.error("create_solve", solve_args("sandbox-solve-100ms"))
    assert f"x402_http_{status}" in text and f'"action": "{action}"' in text
    assert sandbox.payment_attempts == [] and sandbox.settlements == []


@pytest.mark.parametrize(("status", "solve_status", "action"), [(402, "failed", "none"), (504, "expired", "retry"), (503, "failed", "wait_and_retry")])
async def test_rail_failures_of_the_paid_request_are_recorded_unsettled(
    payer: Agent, sandbox: Sandbox, tmp_path: Path, status: int, solve_status: str, action: str
) -> None:
    sandbox.inject_fault(method="POST", path="/x402/createTask", action="status", status=status, retry_after=0, skip=1, times=5)
    solve = await payer.ok("create_solve", solve_args("sandbox-solve-100ms"))
    assert solve["status"] == solve_status and solve["guidance"]["action"] == action and solve["cost_usd"] is None
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    assert [p["state"] for p in ledger.payments_for(solve["id"])] == ["failed"]
    assert sandbox.settlements == []


async def test_a_retried_paid_request_reuses_the_same_signature(payer: Agent, sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.inject_fault(method="POST", path="/x402/createTask", action="status", status=503, retry_after=0, skip=1)
    solve = await payer.ok("create_solve", solve_args("sandbox-solve-100ms"))
    assert solve["status"] == "solved"
    payments = Ledger(tmp_path / "ledger.sqlite3").payments_for(solve["id"])
    assert [p["state"] for p in payments] == ["settled"]  # one authorization, signed once
    assert [a.nonce for a in sandbox.payment_attempts] == [payments[0]["nonce"]]
    assert paid_posts(sandbox) == 3 and len(sandbox.settlements) == 1  # probe, 503, the same header again


def orphan(ledger: Ledger, *, valid_before: int, nonce: str = "0x" + "ab" * 32) -> str:
    """What a process that died mid-payment leaves behind: a solving record and a sent payment."""
    from nonecap_mcp.x402.ledger import X402Solve, new_x402_id

    solve_id = new_x402_id()
    ledger.reserve_payment(nonce=nonce, solve_id=solve_id, amount_atomic=12000, pay_to=SANDBOX_PAY_TO, network="base",
                           asset="0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913", task_type="HardCaptchaTokenProxyLess",
                           valid_before=valid_before, daily_budget_atomic=10**6, payer=SANDBOX_WALLET_ADDRESS,
                           solve=X402Solve(id=solve_id, type="hcaptcha", sitekey="k", url=URL, status="solving",
                                           task_id=None, result_token=None, error_code=None, error_message=None,
                                           cost_usd=None, settlement_tx=None, created_at="2026-01-01T00:00:00.000Z",
                                           finished_at=None))
    ledger.mark_payment(nonce, "sent")
    return solve_id


async def test_a_payment_orphaned_by_a_crash_is_released_once_expired_unused(payer: Agent, tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    solve_id = orphan(ledger, valid_before=0)  # long expired, never settled on the sandbox chain
    solve = await payer.ok("get_solve", {"id": solve_id, "wait_seconds": 0})
    assert solve["status"] == "failed" and solve["error"]["code"] == "x402_not_settled" and solve["cost_usd"] is None
    assert [p["state"] for p in ledger.payments_for(solve_id)] == ["failed"]
    assert ledger.counted_today_atomic() == 0  # released


async def test_a_payment_orphaned_by_a_crash_reads_as_unknown_while_it_may_settle(
    payer: Agent, sandbox: Sandbox, tmp_path: Path
) -> None:
    import time

    ledger = Ledger(tmp_path / "ledger.sqlite3")
    solve_id = orphan(ledger, valid_before=int(time.time()) + 600)  # still valid: it could yet settle
    solve = await payer.ok("get_solve", {"id": solve_id, "wait_seconds": 0})
    assert solve["status"] == "failed" and solve["error"]["code"] == "payment_outcome_unknown"
    assert [p["state"] for p in ledger.payments_for(solve_id)] == ["unknown"]
    assert ledger.counted_today_atomic() == 12000
    assert any(r.path == "/rpc" for r in sandbox.requests)  # the chain was asked


async def test_wallet_only_balance_survives_an_rpc_outage(payer: Agent, sandbox: Sandbox) -> None:
    sandbox.inject_fault(method="POST", path="/rpc", action="drop_before", times=10)
    balance = await payer.ok("get_balance")
    assert balance["wallet_address"] == SANDBOX_WALLET_ADDRESS and balance["usdc_balance"] is None
    assert balance["x402_spent_today_usd"] == "0" and balance["x402_daily_budget_usd"] == "1.00"
    [x402_note] = balance["notes"]  # no note about the credits rail, which was never set up
    assert x402_note.startswith("x402: usdc_balance unavailable (rpc_error)")


async def test_no_payment_method_says_configure_payment(sandbox: Sandbox, tmp_path: Path) -> None:
    env = x402_env(sandbox, tmp_path)
    del env["NONECAP_WALLET_PRIVATE_KEY"]
    async with Client(build_server(load_settings(env)), mode="legacy") as client:
        agent = Agent(client)
        balance_text = await agent.error("get_balance")
        x402_text = await agent.error("create_solve", solve_args("sandbox-solve-100ms", rail="x402"))
    assert "no_payment_method" in balance_text and '"action": "configure_payment"' in balance_text
    assert "missing_wallet" in x402_text and '"action": "configure_payment"' in x402_text


async def test_unusable_state_dir_is_a_local_state_error(sandbox: Sandbox, tmp_path: Path, mode: str) -> None:
    # A path under a regular file cannot be created even by root (a read-only dir can).
    (tmp_path / "not-a-dir").write_text("")
    env = x402_env(sandbox, tmp_path / "not-a-dir" / "state")
    async with Client(build_server(load_settings(env)), mode=mode) as client:
        agent = Agent(client)
        texts = [await agent.error("create_solve", solve_args("sandbox-solve-100ms")),
                 await agent.error("list_solves", {"rail": "x402"})]
    for text in texts:
        assert "local_state_error: NotADirectoryError:" in text
        assert '"action": "check_state_dir"' in text and '"retryable": false' in text
    assert sandbox.payment_attempts == [] and sandbox.settlements == []


async def test_confirm_payment_cannot_skip_a_host_that_can_ask(sandbox: Sandbox, tmp_path: Path, mode: str) -> None:
    async def decline(_ctx: Any, _params: Any) -> ElicitResult:
        return ElicitResult(action="decline")

    env = x402_env(sandbox, tmp_path, NONECAP_CONFIRM_ABOVE_USD="0.01")
    async with Client(build_server(load_settings(env)), mode=mode, elicitation_callback=decline) as client:
        result = await Agent(client).call("create_solve", solve_args("sandbox-solve-100ms", confirm_payment=True))
    assert result.is_error and sandbox.settlements == [] and sandbox.payment_attempts == []


def consenting(asked: list[str]) -> Callable[[Any, Any], Awaitable[ElicitResult]]:
    """A user who agrees to every payment; what they were asked goes into `asked`."""

    async def elicit(_ctx: Any, params: Any) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action="accept", content={"confirm": True})

    return elicit


async def test_bad_arguments_ask_nobody_and_send_nothing(sandbox: Sandbox, tmp_path: Path, mode: str) -> None:
    asked: list[str] = []
    env = x402_env(sandbox, tmp_path, NONECAP_CONFIRM_ABOVE_USD="0.01")
    async with Client(build_server(load_settings(env)), mode=mode, elicitation_callback=consenting(asked)) as client:
        text = await Agent(client).error("create_solve", solve_args("sandbox-solve-100ms", url="not a url"))
    assert "param: url" in text and asked == [] and sandbox.requests == []


async def test_a_broken_api_key_never_falls_back_to_paying_usdc(sandbox: Sandbox, tmp_path: Path) -> None:
    env = x402_env(sandbox, tmp_path, NONECAP_API_KEY="nc_live_" + "A" * 31)  # one character short
    async with Client(build_server(load_settings(env)), mode="legacy") as client:
        text = await Agent(client).error("create_solve", solve_args("sandbox-solve-100ms"))
    assert "invalid_api_key" in text and "NONECAP_API_KEY" in text
    assert sandbox.requests == []


async def test_a_failed_free_refetch_still_shows_the_paid_solve(x402_settings_env: dict[str, str], sandbox: Sandbox) -> None:
    async with Client(build_server(load_settings(x402_settings_env)), mode="legacy") as client:
        first = await Agent(client).ok("create_solve", solve_args("sandbox-solve-100ms"))
    sandbox.inject_fault(method="POST", path="/x402/getTaskResult", action="status", status=500, times=5)
    async with Client(build_server(load_settings(x402_settings_env)), mode="legacy") as client:
        again = await Agent(client).ok("get_solve", {"id": first["id"], "wait_seconds": 0})
    assert again["status"] == "solved" and again["token"] is None and again["cost_usd"] == "0.012"
    assert again["guidance"]["action"] == "retry" and "get_solve" in again["guidance"]["hint"]


@one_era
async def test_a_ledger_failing_mid_payment_does_not_take_the_server_down(
    payer: Agent, sandbox: Sandbox, tmp_path: Path
) -> None:
    import shutil

    solve = await payer.ok("create_solve", solve_args("sandbox-solve-1500ms", wait_seconds=0))
    shutil.rmtree(tmp_path)  # the ledger vanishes while the paid request is in flight
    await anyio.sleep(2.5)
    assert len(sandbox.settlements) == 1
    pricing = await payer.ok("get_pricing")  # the server is still up
    assert pricing["prices"]
    assert solve["status"] == "solving"


class _HtmlPage(BaseHTTPRequestHandler):
    """A CDN or captive-portal page where the rail's JSON should be."""

    def do_GET(self) -> None:
        body = b"<html>502 Bad Gateway</html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *_: Any) -> None:
        pass


async def test_a_rail_answering_html_is_explained_not_a_bare_error(sandbox: Sandbox, tmp_path: Path, mode: str) -> None:
    page = ThreadingHTTPServer(("127.0.0.1", 0), _HtmlPage)
    threading.Thread(target=page.serve_forever, daemon=True).start()
    try:
        env = x402_env(sandbox, tmp_path, NONECAP_X402_BASE=f"http://127.0.0.1:{page.server_address[1]}")
        async with Client(build_server(load_settings(env)), mode=mode) as client:
            agent = Agent(client)
            pricing = await agent.ok("get_pricing")
            text = await agent.error("create_solve", solve_args("sandbox-solve-100ms"))
    finally:
        page.shutdown()
    assert any("unexpected_response" in note for note in pricing["notes"])
    assert "unexpected_response" in text and "not JSON" in text and sandbox.settlements == []
