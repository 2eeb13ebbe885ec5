"""The server as hosts launch it: a subprocess speaking MCP over stdio."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from conftest import ROOT, Agent, sandbox_env
from host_launch import launched

from nonecap_mcp.sandbox import Sandbox

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def stdio_agent(env: dict[str, str], tmp_path: Path, *args: str, mode: str = "legacy") -> AsyncIterator[Agent]:
    """Spawn `python -m nonecap_mcp` like a desktop host does; its stderr goes to a file we check."""
    async with launched([sys.executable, "-m", "nonecap_mcp", *args], env, tmp_path / "stderr.log", cwd=ROOT, mode=mode) as agent:
        yield agent


def _base_env(**extra: str) -> dict[str, str]:
    return {"PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring", "HOME": os.environ.get("HOME", "/tmp"),
            "XDG_STATE_HOME": os.environ["XDG_STATE_HOME"], **extra}  # conftest points it at a scratch dir


ALL_TOOLS = {"create_solve", "get_solve", "list_solves", "cancel_solve", "get_balance", "get_pricing", "report_solve"}


async def test_stdio_solve_end_to_end(sandbox: Sandbox, tmp_path: Path) -> None:
    """Today's desktop hosts' era; the 2026-07-28 era runs over stdio in the --sandbox test below."""
    async with stdio_agent(_base_env(**sandbox_env(sandbox), NONECAP_LOG_LEVEL="INFO"), tmp_path) as agent:
        names = {tool.name for tool in (await agent.client.list_tools()).tools}
        assert names == ALL_TOOLS
        solve = await agent.ok("create_solve", {"type": "hcaptcha", "sitekey": "sandbox-solve-100ms", "url": "https://a.example/", "wait_seconds": 5})
        assert solve["status"] == "solved" and solve["token"].startswith("P1_")
        failed = await agent.ok("create_solve", {"type": "hcaptcha", "sitekey": "sandbox-fail-proxy_error", "url": "https://a.example/", "wait_seconds": 5})
        assert failed["guidance"]["action"] == "fix_proxy"
    assert "POST /v1/solves -> 200" in (tmp_path / "stderr.log").read_text()  # logs go to stderr, never stdout


async def test_stdio_sandbox_flag_runs_offline_without_a_key(tmp_path: Path) -> None:
    """In the 2026-07-28 era (the SDK's default): the tools, results and a paid solve over stdio."""
    async with stdio_agent(_base_env(), tmp_path, "serve", "--sandbox", mode="auto") as agent:
        assert {tool.name for tool in (await agent.client.list_tools()).tools} == ALL_TOOLS
        assert (await agent.ok("get_balance"))["sandbox"] is True
        solve = await agent.ok("create_solve", {"type": "hcaptcha", "sitekey": "sandbox-solve-100ms", "url": "https://a.example/", "wait_seconds": 5})
        assert "SANDBOX" in solve["token"]
        paid = await agent.ok("create_solve", {"type": "hcaptcha", "sitekey": "sandbox-solve-100ms", "url": "https://a.example/", "wait_seconds": 5, "rail": "x402"})
        assert paid["rail"] == "x402" and paid["cost_usd"] == "0.012" and "SANDBOX" in paid["token"]


async def test_read_only_flag_hides_spending_tools_and_a_server_without_credentials_guides(tmp_path: Path) -> None:
    """Launched with no credentials at all, the server still starts and lists its tools (all seven
    on a bare launch, in the start-up test below); a call tells the agent how to add a key."""
    async with stdio_agent(_base_env(), tmp_path, "--read-only") as agent:
        tools = (await agent.client.list_tools()).tools
        text = await agent.error("get_balance")
    assert {t.name for t in tools} == {"get_solve", "list_solves", "get_balance", "get_pricing"}
    assert all(t.annotations and t.annotations.read_only_hint for t in tools)
    assert "no_payment_method" in text and "NONECAP_API_KEY" in text and "nonecap-mcp auth login" in text


# What only a tool call (or the team server) needs: none of it may load before tools/list is answered.
# The tool layer itself is listed from surface.json (tools/server.py) and registered at the first call.
OFF_THE_START_UP_PATH = (
    "eth_account", "eth_keys", "keyring", "psycopg", "prometheus_client",  # wallet, credentials, team extra
    "httpx", "nonecap", "nonecap_mcp.credits_api", "nonecap_mcp.x402.rail", "nonecap_mcp.x402.client", "nonecap_mcp.install",
    "nonecap_mcp.tools.solves", "nonecap_mcp.tools.account", "nonecap_mcp.tools.feedback", "nonecap_mcp.tools.resources",
    "nonecap_mcp.tools.prompts", "nonecap_mcp.tools.errors", "nonecap_mcp.models", "nonecap_mcp.validation",
    "nonecap_mcp.guidance", "nonecap_mcp.x402.policy", "nonecap_mcp.x402.ledger", "nonecap_mcp.credentials",
    "nonecap_mcp.quota", "nonecap_mcp.create_log", "nonecap_mcp.hosts",
    "argparse",  # a bare start (how hosts launch it) has no command line to parse
)


async def test_start_up_to_tools_list_loads_nothing_only_a_call_needs(tmp_path: Path) -> None:
    """A host's launch → initialize → tools/list, then the pipe closes. The server's own
    `-X importtime` trace (on its stderr) names every module it loaded on the way."""
    env = _base_env(NONECAP_STATE_DIR=str(tmp_path / "state"))  # no ledger from earlier runs to check at start-up
    command = [sys.executable, "-X", "importtime", "-m", "nonecap_mcp"]
    async with launched(command, env, tmp_path / "stderr.log", cwd=ROOT) as agent:
        assert {tool.name for tool in (await agent.client.list_tools()).tools} == ALL_TOOLS  # no credentials: all seven
    trace = (tmp_path / "stderr.log").read_text().splitlines()
    loaded = {line.rpartition("|")[2].strip() for line in trace if line.startswith("import time:")}
    assert {"mcp.server.mcpserver", "nonecap_mcp.tools", "nonecap_mcp.tools.state"} <= loaded  # the trace is whole
    heavy = sorted(m for m in loaded if any(m == name or m.startswith(name + ".") for name in OFF_THE_START_UP_PATH))
    assert heavy == []


def test_the_stdio_server_is_built_without_collections_and_frozen(tmp_path: Path) -> None:
    """Building the server a host launches runs no garbage collection (unpaused, some 200 ran while
    the SDK loaded); what it built is frozen out of later ones, and collection is back on for calls."""
    probe = """if True:
        import gc, json
        from nonecap_mcp.cli import stdio_server
        from nonecap_mcp.config import load_settings
        settings = load_settings()
        runs = []
        gc.callbacks.append(lambda phase, info: runs.append(info["generation"]) if phase == "start" else None)
        stdio_server(settings)
        print(json.dumps({"collections": len(runs), "frozen": gc.get_freeze_count(), "enabled": gc.isenabled()}))
    """
    env = _base_env(NONECAP_STATE_DIR=str(tmp_path / "state"))
    out = subprocess.run([sys.executable, "-c", probe], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    seen = json.loads(out.stdout)
    assert seen["collections"] == 0 and seen["enabled"]
    assert seen["frozen"] > 50_000  # the SDK's and pydantic's objects, not just a few of ours
