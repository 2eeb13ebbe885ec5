"""The team server: `serve --http` driven by the SDK's streamable HTTP client, as a real process.

Clients are registered with the real `clients` CLI; every request goes over a socket on
127.0.0.1 to a server that talks to the shared sandbox.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from child_process import child_env
from conftest import Agent, sandbox_env
from nonecap_mcp.sandbox import Sandbox


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nonecap_mcp", *args], env=env, capture_output=True, text=True, timeout=30)


class Team:
    """One `serve --http` process and the tokens of its clients."""

    def __init__(self, url: str, env: dict[str, str], tokens: dict[str, str]) -> None:
        self.url, self.env, self.tokens = url, env, tokens

    def client(self, name: str | None, mode: str = "auto") -> Client:
        headers = {"Authorization": f"Bearer {self.tokens[name]}"} if name else {}
        http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=60.0))
        return Client(streamable_http_client(f"{self.url}/mcp", http_client=http), mode=mode)


@pytest.fixture(scope="module")
def team(_sandbox_server: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    state = tmp_path_factory.mktemp("team-state")
    env = child_env(**sandbox_env(_sandbox_server, NONECAP_STATE_DIR=str(state)))
    tokens = {}
    for name, flags in (("alice", ()), ("viewer", ("--read-only",)), ("capped", ("--daily-credit-budget", "2"))):
        added = _cli(env, "clients", "add", name, *flags)
        assert added.returncode == 0, added.stderr
        tokens[name] = added.stdout.strip()
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "nonecap_mcp", "serve", "--http", f"127.0.0.1:{port}",
                                "--log-json", "--log-level", "INFO"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert process.poll() is None and time.monotonic() < deadline, "serve --http did not come up"
        time.sleep(0.1)
    try:
        yield Team(url, env, tokens)
    finally:
        process.terminate()
        process.wait(timeout=10)
        assert process.stderr is not None
        log = process.stderr.read()
        assert all(token not in log for token in tokens.values())
        lines = [json.loads(line) for line in log.splitlines() if line.strip()]
        assert lines and all({"time", "level", "logger", "message"} <= line.keys() for line in lines)


@pytest.fixture
async def alice(team: Team, sandbox: Sandbox, mode: str) -> AsyncIterator[Agent]:
    async with team.client("alice", mode) as client:
        yield Agent(client)


def test_clients_add_prints_only_the_token_and_list_never_shows_it(team: Team) -> None:
    assert all(token.startswith("ncm_") and len(token) > 40 for token in team.tokens.values())
    listed = _cli(team.env, "clients", "list")
    assert "alice" in listed.stdout and "viewer" in listed.stdout and "read-only" in listed.stdout
    assert all(token not in listed.stdout + listed.stderr for token in team.tokens.values())
    registry = (Path(team.env["NONECAP_STATE_DIR"]) / "state.sqlite3").read_bytes()
    assert all(token.encode() not in registry for token in team.tokens.values())


@pytest.mark.parametrize("authorization", [None, "Bearer ncm_wrong", "Basic YWxpY2U6eA==", "Bearer"])
def test_mcp_without_a_valid_token_is_401_with_www_authenticate(team: Team, authorization: str | None) -> None:
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    if authorization:
        headers["Authorization"] = authorization
    response = httpx.post(f"{team.url}/mcp", headers=headers, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer ")


def test_health_and_readiness_need_no_token(team: Team) -> None:
    assert httpx.get(f"{team.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{team.url}/readyz").json() == {"status": "ready"}


def test_a_foreign_host_header_is_refused(team: Team) -> None:
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 must not reach the tools."""
    response = httpx.post(f"{team.url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers={
        "Host": "evil.example", "Authorization": f"Bearer {team.tokens['alice']}",
        "Accept": "application/json, text/event-stream"})
    assert response.status_code in (400, 403, 421)


@pytest.mark.anyio
async def test_a_solve_over_http_with_progress(alice: Agent, sandbox: Sandbox) -> None:
    seen: list[float] = []

    async def progress(value: float, total: float | None, message: str | None) -> None:
        seen.append(value)

    solve = await alice.ok("create_solve", {"type": "hcaptcha", "sitekey": "sandbox-solve-2500ms",
                                            "url": "https://example.com/login", "wait_seconds": 10},
                           progress_callback=progress)
    assert solve["status"] == "solved" and solve["token"].startswith("P1_SANDBOX_")
    assert seen, "progress must reach an HTTP client too"
    again = await alice.ok("get_solve", {"id": solve["id"], "wait_seconds": 0})
    assert again["id"] == solve["id"]


@pytest.mark.anyio
async def test_a_read_only_client_neither_sees_nor_runs_spending_tools(team: Team, sandbox: Sandbox) -> None:
    async with team.client("viewer") as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert "create_solve" not in names and "cancel_solve" not in names
        assert {"get_balance", "get_solve", "list_solves", "get_pricing"} <= names
        result = await client.call_tool("create_solve", {"type": "hcaptcha", "sitekey": "x", "url": "https://example.com"})
        assert result.is_error and "read_only_client" in result.content[0].text  # type: ignore[union-attr]
    assert not [r for r in sandbox.requests if r.method == "POST"], "a read-only client's create reached the API"


def test_a_removed_client_is_refused_at_once(team: Team) -> None:
    token = _cli(team.env, "clients", "add", "temp").stdout.strip()
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream",
               "Content-Type": "application/json"}
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    assert httpx.post(f"{team.url}/mcp", headers=headers, json=ping).status_code != 401
    assert _cli(team.env, "clients", "remove", "temp").returncode == 0
    assert httpx.post(f"{team.url}/mcp", headers=headers, json=ping).status_code == 401


@pytest.mark.anyio
async def test_metrics_count_tool_calls_by_tool_and_outcome(team: Team, sandbox: Sandbox) -> None:
    async with team.client("alice") as client:
        await client.call_tool("get_pricing", {})
        await client.call_tool("get_solve", {"id": "solve_doesnotexist"})
    async with team.client("viewer") as client:
        await client.call_tool("cancel_solve", {"id": "solve_doesnotexist"})
    text = httpx.get(f"{team.url}/metrics").text
    assert 'nonecap_tool_calls_total{outcome="ok",tool="get_pricing"}' in text
    assert 'nonecap_tool_calls_total{outcome="error",tool="get_solve"}' in text
    assert 'nonecap_tool_calls_total{outcome="refused",tool="cancel_solve"}' in text
    assert "nonecap_tool_call_seconds_bucket" in text


@pytest.mark.anyio
async def test_a_clients_credit_budget_is_its_own_and_solves_carry_its_name(team: Team, sandbox: Sandbox) -> None:
    page = {"type": "hcaptcha", "sitekey": "sandbox-solve-50ms", "url": "https://example.com/login", "wait_seconds": 10}
    async with team.client("capped") as capped, team.client("alice") as alice_client:
        capped_agent, alice = Agent(capped), Agent(alice_client)
        made = [await capped_agent.ok("create_solve", page) for _ in range(2)]
        assert {solve["client"] for solve in made} == {"capped"}
        text = await capped_agent.error("create_solve", page)
        assert "credit_budget_exceeded" in text and "client capped's daily credit budget is 2" in text
        assert len([r for r in sandbox.requests if r.method == "POST" and r.path == "/v1/solves"]) == 2  # nothing sent
        theirs = await alice.ok("create_solve", page)  # the server has no budget: alice goes on
        assert theirs["client"] == "alice"
        listed = {s["id"]: s.get("client") for s in (await alice.ok("list_solves", {"limit": 10}))["data"]}
        assert [listed[s["id"]] for s in (*made, theirs)] == ["capped", "capped", "alice"]
        assert (await alice.ok("get_solve", {"id": made[0]["id"]}))["client"] == "capped"
    rows = json.loads(_cli(team.env, "spend", "--json").stdout)
    credits = {r["client"]: r["credits"] for r in rows if r["rail"] == "credits"}
    assert credits["capped"] == 2 and credits["alice"] >= 1  # alice also solved in other tests of this module
