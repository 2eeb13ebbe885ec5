"""The team server: `serve --http` driven by the SDK's streamable HTTP client, as a real process.

Clients are registered with the real `clients` CLI; every request goes over a socket on
127.0.0.1 to a server that talks to the shared sandbox. The first client is added by a
`nonecap-mcp clients add` process, as an operator does (its stdout is exactly the token); the
other `clients` and `spend` commands run the same CLI in this process (`_cli`), which spares a
Python start-up each, as the server they talk to shares nothing with them but the store.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from child_process import child_env, run_python
from conftest import Agent, sandbox_env
from in_process import run_main
from nonecap_mcp.sandbox import SANDBOX_WALLET_KEY, Sandbox


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cli_process(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`nonecap-mcp *args` as a process of its own."""
    return subprocess.run([sys.executable, "-m", "nonecap_mcp", *args], env=env, capture_output=True, text=True, timeout=30)


def serve_http(env: dict[str, str], *, stderr: Any, flags: tuple[str, ...] = ()) -> tuple[subprocess.Popen[str], str]:
    """Start `nonecap-mcp serve --http` on a free port of 127.0.0.1; return it and its URL once /healthz answers."""
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "nonecap_mcp", "serve", "--http", f"127.0.0.1:{port}", *flags],
                               env=env, stdout=subprocess.DEVNULL, stderr=stderr, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    with httpx.Client(timeout=1) as http:  # one for every poll: each new client loads the CA bundle (~35 ms of CPU)
        while True:
            try:
                if http.get(f"{url}/healthz").status_code == 200:
                    return process, url
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "serve --http did not come up"
            time.sleep(0.1)


@functools.cache
def _tls() -> ssl.SSLContext:
    """The TLS settings every test client shares (they speak plain HTTP to 127.0.0.1): a client
    given none builds its own, loading the CA bundle (~35 ms of CPU) for every MCP session."""
    return ssl.create_default_context()


def http_client(url: str, token: str | None, mode: str = "auto") -> Client:
    """The SDK's streamable HTTP client for the server at `url`, bearing `token`."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=60.0), verify=_tls())
    return Client(streamable_http_client(f"{url}/mcp", http_client=http), mode=mode)


async def warm_wallet(client: Client) -> None:
    """Load the server's x402 wallet. Its first use imports eth_account (~0.5 s of CPU), which on a
    loaded box can outlast a call's bound: a test's bounded call must not be the one to pay for it.
    A balance reads the wallet's address and pays nothing; one stopped at its bound leaves the
    import going on, so the next one finds it done."""
    with anyio.fail_after(60):
        while (await client.call_tool("get_balance", {})).is_error:
            pass


class Team:
    """One `serve --http` process and the tokens of its clients."""

    def __init__(self, url: str, env: dict[str, str], tokens: dict[str, str]) -> None:
        self.url, self.env, self.tokens = url, env, tokens

    def client(self, name: str | None, mode: str = "auto") -> Client:
        return http_client(self.url, self.tokens[name] if name else None, mode)


@pytest.fixture(scope="module")
def team(_sandbox_server: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    state = tmp_path_factory.mktemp("team-state")
    env = child_env(**sandbox_env(_sandbox_server, NONECAP_STATE_DIR=str(state), NONECAP_DAILY_CREDIT_BUDGET="1000",
                                         NONECAP_WALLET_PRIVATE_KEY=SANDBOX_WALLET_KEY))
    tokens = {}
    for own_process, name, flags in ((True, "alice", ()), (False, "viewer", ("--read-only",)),
                                     (False, "capped", ("--daily-credit-budget", "2")), (False, "frugal", ("--daily-budget-usd", "0.02"))):
        argv = ["clients", "add", name, *flags]  # one as its own process, the entry point as installed
        added = _cli_process(env, *argv) if own_process else run_main(argv, env)
        assert added.returncode == 0, added.stderr
        tokens[name] = added.stdout.strip()
    process, url = serve_http(env, stderr=subprocess.PIPE, flags=("--log-json", "--log-level", "INFO"))
    try:
        team = Team(url, env, tokens)

        async def warm() -> None:
            async with team.client("alice") as client:
                await warm_wallet(client)

        anyio.run(warm)
        yield team
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
    listed = run_main(["clients", "list"], team.env)
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
    token = run_main(["clients", "add", "temp"], team.env).stdout.strip()
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream",
               "Content-Type": "application/json"}
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    assert httpx.post(f"{team.url}/mcp", headers=headers, json=ping).status_code != 401
    assert run_main(["clients", "remove", "temp"], team.env).returncode == 0
    assert httpx.post(f"{team.url}/mcp", headers=headers, json=ping).status_code == 401


@pytest.mark.anyio
async def test_metrics_count_tool_calls_by_tool_and_outcome(team: Team, sandbox: Sandbox) -> None:
    async with team.client("alice") as client:
        await client.call_tool("get_pricing", {})
        await client.call_tool("get_solve", {"id": "solve_doesnotexist"})
    async with team.client("viewer") as client:
        await client.call_tool("cancel_solve", {"id": "solve_doesnotexist"})
        for i in range(3):  # made-up names share one label: a client cannot grow /metrics at will
            await client.call_tool(f"no_such_tool_{i}_" + "x" * 2000, {})
    text = httpx.get(f"{team.url}/metrics").text
    assert "no_such_tool" not in text and 'tool="unknown"' in text and len(text) < 64 * 1024
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
    rows = json.loads(run_main(["spend", "--json"], team.env).stdout)
    credits = {r["client"]: r["credits"] for r in rows if r["rail"] == "credits"}
    assert credits["capped"] == 2 and credits["alice"] >= 1  # alice also solved in other tests of this module


def _samples(team: Team) -> dict[str, float]:
    text = httpx.get(f"{team.url}/metrics").text
    return {name: float(value) for name, value in (line.rsplit(" ", 1) for line in text.splitlines()
                                                   if line and not line.startswith("#"))}


@pytest.mark.anyio
async def test_metrics_show_upstream_statuses_solve_latency_spend_and_budget(team: Team, sandbox: Sandbox) -> None:
    spend, solved = 'nonecap_spend_total{client="alice",rail="credits"}', 'nonecap_solve_seconds_count{rail="credits",status="solved"}'
    before = _samples(team)
    async with team.client("alice") as client:
        agent = Agent(client)
        solve = await agent.ok("create_solve", {"type": "hcaptcha", "sitekey": "sandbox-solve-50ms",
                                                "url": "https://example.com/login", "wait_seconds": 10})
        for _ in range(3):  # seen finished again and again: counted once
            await agent.ok("get_solve", {"id": solve["id"]})
        await agent.ok("get_balance")
    after = _samples(team)
    assert after[spend] - before.get(spend, 0) == 1 and after[solved] - before.get(solved, 0) == 1
    assert after['nonecap_upstream_requests_total{rail="credits",status="200"}'] >= 5
    assert 0 < after['nonecap_budget_left{rail="credits"}'] < 1000


@pytest.mark.anyio
async def test_a_clients_usd_budget_holds_its_x402_payments(team: Team, sandbox: Sandbox) -> None:
    page = {"type": "hcaptcha", "sitekey": "sandbox-solve-50ms", "url": "https://example.com/login", "rail": "x402",
            "wait_seconds": 15}

    def paid() -> int:
        return len([r for r in sandbox.requests if r.path == "/x402/createTask" and r.status != 402])

    async with team.client("frugal") as frugal_client, team.client("alice") as alice_client:
        frugal, alice = Agent(frugal_client), Agent(alice_client)
        first = await frugal.ok("create_solve", page)  # $0.012 of its $0.02
        assert first["status"] == "solved" and first["client"] == "frugal"
        text = await frugal.error("create_solve", page)
        assert "budget_exceeded" in text and "Client frugal's daily x402 budget reached" in text
        assert paid() == 1  # the refused payment was never sent
        assert (await alice.ok("create_solve", page))["status"] == "solved"  # the server's budget still allows
        assert paid() == 2
        assert (await alice.ok("get_solve", {"id": first["id"]}))["client"] == "frugal"  # read back: still frugal's
        listed = {s["id"]: s.get("client") for s in (await alice.ok("list_solves", {"rail": "x402"}))["data"]}
        assert listed[first["id"]] == "frugal"
    # `spend` gives each client its own x402 row, with its own USD (none left in a client-less row).
    rows = {r["client"]: r for r in json.loads(run_main(["spend", "--json"], team.env).stdout) if r["rail"] == "x402"}
    assert set(rows) == {"frugal", "alice"}
    assert all((row["solved"], row["usd_settled"], row["usd_unknown"]) == (1, "0.012", "0") for row in rows.values())
    table = csv.DictReader(io.StringIO(run_main(["spend", "--csv"], team.env).stdout))
    assert {(r["client"], r["usd_settled"]) for r in table if r["rail"] == "x402"} == {("frugal", "0.012"), ("alice", "0.012")}
    chart = [line.split() for line in run_main(["spend"], team.env).stdout.splitlines() if " x402 " in line]
    assert sorted((line[2], line[6]) for line in chart) == [("alice", "0.012"), ("frugal", "0.012")]


def test_the_http_server_is_built_without_collections_and_frozen(sandbox: Sandbox, tmp_path: Path) -> None:
    """Like the stdio server (test_stdio), the team server is built with the collector paused and
    frozen: its start-up (starlette and uvicorn besides the SDK) runs no collection."""
    probe = """if True:
        import gc, json
        from nonecap_mcp.cli import http_server
        from nonecap_mcp.config import load_settings
        settings = load_settings()  # before counting: what `main` does first, outside the build
        runs = []
        gc.callbacks.append(lambda phase, info: runs.append(info["generation"]) if phase == "start" else None)
        server = http_server(settings, "127.0.0.1:0", ())
        print(json.dumps({"collections": len(runs), "frozen": gc.get_freeze_count(), "enabled": gc.isenabled(),
                          "app": type(server.config.app).__name__}))
    """
    done = run_python(probe, child_env(**sandbox_env(sandbox, NONECAP_STATE_DIR=str(tmp_path / "state"))))
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["collections"] == 0 and seen["enabled"] and seen["app"] == "BearerAuth"
    assert seen["frozen"] > 50_000


def test_a_port_already_taken_is_a_failed_start(sandbox: Sandbox, tmp_path: Path) -> None:
    """A replica that cannot listen exits non-zero (uvicorn's start-up failure, 3) so that its
    supervisor sees it, rather than ending as if it had served and stopped."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _cli_process(child_env(**sandbox_env(sandbox, NONECAP_STATE_DIR=str(tmp_path / "state"))),
                            "serve", "--http", f"127.0.0.1:{port}")
    assert done.returncode == 3, done.stderr
    assert "address already in use" in done.stderr.lower()
