"""Operator controls through the real MCP client against the sandbox: allowed sites and types,
the daily credit budget (across processes, with refunds) and the per-minute cap."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from child_process import child_env
from conftest import ROOT, Agent, sandbox_env
from host_launch import launched
from in_process import run_main
from mcp import Client

from nonecap_mcp.config import load_settings
from nonecap_mcp.errors import ConfigurationError
from nonecap_mcp.sandbox import SANDBOX_WALLET_KEY, Sandbox
from nonecap_mcp.tools import build_server

pytestmark = pytest.mark.anyio


def args(sitekey: str = "sandbox-solve-100ms", url: str = "https://shop.example/login", **extra: Any) -> dict[str, Any]:
    return {"type": "hcaptcha", "sitekey": sitekey, "url": url, "wait_seconds": 5, **extra}


def creates(sandbox: Sandbox) -> int:
    return sum(1 for r in sandbox.requests if r.method == "POST" and r.path == "/v1/solves")


async def agent_with(sandbox: Sandbox, **env: str) -> Client:
    return Client(build_server(load_settings(sandbox_env(sandbox, **env))))


async def test_site_not_in_the_allowlist_is_refused_naming_url(sandbox: Sandbox) -> None:
    async with await agent_with(sandbox, NONECAP_ALLOWED_SITES="shop.example,*.corp.example") as client:
        agent = Agent(client)
        for url in ("https://evil.example/", "https://corp.example/", "https://shop.example.evil.example/"):
            text = await agent.error("create_solve", args(url=url))
            assert "site_not_allowed" in text and "url" in text and "NONECAP_ALLOWED_SITES" in text
        assert creates(sandbox) == 0  # nothing sent
        assert (await agent.ok("create_solve", args(url="https://a.b.corp.example/x")))["status"] == "solved"
        assert (await agent.ok("create_solve", args()))["status"] == "solved"
        assert creates(sandbox) == 2


async def test_a_url_a_browser_would_read_as_another_host_is_refused_naming_url(sandbox: Sandbox) -> None:
    """urlsplit and a browser must agree on the host the allowlist checks: a backslash (a browser
    reads `https://evil.example\\@shop.example/` as evil.example), a user:password@ before the
    host, a %-escape inside it, or brackets around anything but an IPv6 address (urlsplit takes
    `evil.example[v1.a.corp.example]` for the bracket's content) are refused before the allowlist
    is asked, nothing sent; an IPv6 literal still passes validation."""
    async with await agent_with(sandbox, NONECAP_ALLOWED_SITES="shop.example,*.corp.example") as client:
        agent = Agent(client)
        for url in ("https://evil.example\\@shop.example/", "https://evil.example\\.corp.example/",
                    "https:/\\evil.example/", "https://evil.example@shop.example/", "https://shop.example@evil.example/",
                    "https://evil.example%2f.corp.example/", "https://shop.example/a\\b",
                    "https://evil.example[v1.a.corp.example]/", "https://[v1.shop.example]/"):  # fmt: skip
            text = await agent.error("create_solve", args(url=url))
            assert "invalid_argument" in text and "param: url" in text, (url, text)
        assert creates(sandbox) == 0
        assert "site_not_allowed" in await agent.error("create_solve", args(url="https://[2001:db8::1]:8443/"))


async def test_type_not_allowed_is_refused_naming_type(sandbox: Sandbox) -> None:
    async with await agent_with(sandbox, NONECAP_ALLOWED_TYPES="hcaptcha_enterprise") as client:
        text = await Agent(client).error("create_solve", args())
        assert "type_not_allowed" in text and "type" in text
    assert creates(sandbox) == 0


async def test_daily_credit_budget_refuses_and_refunds_come_back(sandbox: Sandbox) -> None:
    async with await agent_with(sandbox, NONECAP_DAILY_CREDIT_BUDGET="2") as client:
        agent = Agent(client)
        assert (await agent.ok("create_solve", args()))["status"] == "solved"
        failed = await agent.ok("create_solve", args("sandbox-fail-proxy_error"))
        assert failed["status"] == "failed"  # refunded by the API, so its credit comes back
        assert (await agent.ok("create_solve", args()))["status"] == "solved"
        sent = creates(sandbox)
        balance = await agent.ok("get_balance")
        assert balance["daily_credit_budget"] == 2 and balance["credit_budget_left_today"] == 0
        text = await agent.error("create_solve", args())
        assert "credit_budget_exceeded" in text and "change_policy" in text
        assert creates(sandbox) == sent  # refused before anything was sent
        await agent.ok("list_solves")  # seeing the failed solve again refunds nothing twice
        assert "credit_budget_exceeded" in await agent.error("create_solve", args())
        assert creates(sandbox) == sent


async def test_a_pending_solve_seen_cancelled_returns_its_credit(sandbox: Sandbox) -> None:
    async with await agent_with(sandbox, NONECAP_DAILY_CREDIT_BUDGET="1") as client:
        agent = Agent(client)
        pending = await agent.ok("create_solve", args("sandbox-solve-20s", wait_seconds=0))
        assert "credit_budget_exceeded" in await agent.error("create_solve", args())
        assert (await agent.ok("cancel_solve", {"id": pending["id"]}))["status"] == "cancelled"
        assert (await agent.ok("create_solve", args()))["status"] == "solved"


async def test_rate_cap_refuses_with_retry_after_and_sends_nothing(sandbox: Sandbox) -> None:
    async with await agent_with(sandbox, NONECAP_MAX_SOLVES_PER_MINUTE="2") as client:
        agent = Agent(client)
        await agent.ok("create_solve", args())
        await agent.ok("create_solve", args("sandbox-fail-proxy_error"))  # a failed solve still counts as started
        text = await agent.error("create_solve", args())
        assert "operator_rate_capped" in text and '"retry_after_seconds": 60' in text
        assert creates(sandbox) == 2


async def test_two_processes_never_pass_the_budget_together(sandbox: Sandbox, tmp_path: Path) -> None:
    env = {"PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring", "HOME": str(tmp_path),
           **sandbox_env(sandbox, NONECAP_DAILY_CREDIT_BUDGET="3")}
    outcomes: list[bool] = []

    async def run(agent: Agent) -> None:
        result = await agent.call("create_solve", args())
        outcomes.append(not result.is_error)

    # A launched as a host launches it, B in this test's process: two processes on one quota file.
    cmd = [sys.executable, "-m", "nonecap_mcp"]
    async with launched(cmd, env, tmp_path / "a.log", cwd=ROOT, mode="legacy") as a, \
            Client(build_server(load_settings(env)), mode="legacy") as b:
        async with anyio.create_task_group() as tg:
            for i in range(8):
                tg.start_soon(run, a if i % 2 else Agent(b))
    assert outcomes.count(True) == 3 and creates(sandbox) == 3


@pytest.mark.parametrize(("var", "value"), [
    ("NONECAP_ALLOWED_SITES", "https://shop.example"), ("NONECAP_ALLOWED_TYPES", "recaptcha"),
    ("NONECAP_DAILY_CREDIT_BUDGET", "-1"), ("NONECAP_DAILY_CREDIT_BUDGET", "lots"), ("NONECAP_MAX_SOLVES_PER_MINUTE", "0"),
])
def test_bad_operator_settings_name_the_variable(var: str, value: str) -> None:
    with pytest.raises(ConfigurationError) as err:
        load_settings({var: value})
    assert var in err.value.message


def spend(sandbox: Sandbox, *flags: str) -> str:
    """`nonecap-mcp spend` as an operator runs it, on the test's state dir."""
    env = child_env(NONECAP_STATE_DIR=sandbox_env(sandbox)["NONECAP_STATE_DIR"])
    done = subprocess.run([sys.executable, "-m", "nonecap_mcp", "spend", *flags], env=env, capture_output=True,
                          text=True, timeout=30, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout


def spend_here(sandbox: Sandbox, *flags: str) -> str:
    """The same command through the CLI's own entry point in this process (`in_process.run_main`):
    what it reports, without a Python start-up per report (`spend` above runs it as its own process)."""
    done = run_main(["spend", *flags], {**os.environ, "NONECAP_STATE_DIR": sandbox_env(sandbox)["NONECAP_STATE_DIR"]})
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_spend_reports_credits_per_day_in_three_formats(sandbox: Sandbox) -> None:
    async with await agent_with(sandbox) as client:
        agent = Agent(client)
        await agent.ok("create_solve", args())
        await agent.ok("create_solve", args())
        await agent.ok("create_solve", args("sandbox-fail-proxy_error"))  # refunded: a solve, not a credit
    today = datetime.now(UTC).date().isoformat()
    rows = json.loads(spend(sandbox, "--json"))
    assert [(r["day"], r["rail"], r["solves"], r["credits"]) for r in rows] == [(today, "credits", 3, 2)]
    table = list(csv.DictReader(io.StringIO(spend_here(sandbox, "--csv", "--days", "2"))))
    assert [(r["day"], r["solves"], r["credits"]) for r in table] == [(today, "3", "2")]
    chart = spend_here(sandbox)
    assert today in chart and "#" * 40 in chart


async def test_spend_counts_x402_solves_from_the_ledger_not_refused_starts(sandbox: Sandbox) -> None:
    """A paid solve is a solve with its USD; a start the policy refused before signing (a 402
    paying someone else) is neither, though the rate limit saw it start."""
    async with await agent_with(sandbox, NONECAP_WALLET_PRIVATE_KEY=SANDBOX_WALLET_KEY) as client:
        agent = Agent(client)
        assert (await agent.ok("create_solve", args(rail="x402")))["status"] == "solved"
        sandbox.set_x402(1, {"payTo": "0x000000000000000000000000000000000000bEEF"})
        assert "x402" in await agent.error("create_solve", args(rail="x402"))
    [row] = json.loads(spend_here(sandbox, "--json"))
    assert (row["rail"], row["solves"], row["solved"], row["usd_settled"]) == ("x402", 1, 1, "0.012"), row

