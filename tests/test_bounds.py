"""Bounded calls and bounded bodies, against a hostile upstream on 127.0.0.1.

One small raw-socket HTTP server plays every upstream at once (credits API, x402 rail and
Base RPC) and misbehaves on purpose: it accepts and never answers, trickles a byte a
second, streams a 200+ MB body, answers HTML 502, redirects, or asks for an absurd
Retry-After. The real MCP client drives a real server against it; each call must come back
within its bound (wait_seconds + 10 s, or 20 s without a wait) with a code and guidance: in the
suite's time scale, and once at the real values (`real_time`).
"""

from __future__ import annotations

import json
import os
import queue
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from child_process import TESTS_DIR
from conftest import REAL_TIME_ENV, ROOT, SECRETS, Agent, Timed, sandbox_env, scaled, timed, upstream
from hostile import MIB, SOLVE_ID, Hostile, hostile_env
from keyring_backends import HangingKeyring
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from nonecap_mcp import keystore
from nonecap_mcp.config import load_settings
from nonecap_mcp.errors import NoneCapError
from nonecap_mcp.models import Balance
from nonecap_mcp.sandbox import SANDBOX_WALLET_KEY, Sandbox
from nonecap_mcp.tools import build_server
from nonecap_mcp.tools.account import _fill

PAGE = {"type": "hcaptcha", "sitekey": "10000000-ffff-ffff-ffff-000000000001", "url": "https://a.example/"}


@pytest.fixture
def hostile(request: pytest.FixtureRequest) -> Iterator[Hostile]:
    with Hostile(request.param) as server:
        yield server


# label: (tool, arguments, bound in seconds): every tool, with a short wait where it takes one.
# (A bound is what the server promises: 20 s, or the agent's wait, never scaled, + 10 s.)
CALLS: dict[str, tuple[str, dict[str, Any], float]] = {
    "get_balance": ("get_balance", {}, scaled(20)),
    "get_pricing": ("get_pricing", {}, scaled(20)),
    "list_solves": ("list_solves", {}, scaled(20)),
    "cancel_solve": ("cancel_solve", {"id": SOLVE_ID}, scaled(20)),
    "get_solve": ("get_solve", {"id": SOLVE_ID, "wait_seconds": 2}, 2 + scaled(10)),
    "create_solve": ("create_solve", {**PAGE, "wait_seconds": 2}, 2 + scaled(10)),
    "create_solve x402": ("create_solve", {**PAGE, "wait_seconds": 2, "rail": "x402"}, 2 + scaled(10)),
}


async def call_all(agent: Agent) -> dict[str, Timed]:
    """Every call of CALLS at once, by label."""
    results: dict[str, Timed] = {}

    async def one(label: str, name: str, arguments: dict[str, Any]) -> None:
        results[label] = await timed(agent, name, arguments)

    async with anyio.create_task_group() as group:
        for label, (name, arguments, _) in CALLS.items():
            group.start_soon(one, label, name, arguments)
    return results


async def hostile_calls(mode: str, tmp_path: Path, into: dict[str, tuple[Hostile, dict[str, Timed]]]) -> None:
    with Hostile(mode) as server:
        async with Client(build_server(load_settings(hostile_env(server, tmp_path / mode))), mode="legacy") as client:
            into[mode] = (server, await call_all(Agent(client)))


@pytest.mark.anyio
async def test_every_call_returns_within_its_bound_when_upstream_stalls_or_trickles(tmp_path: Path) -> None:
    runs: dict[str, tuple[Hostile, dict[str, Timed]]] = {}
    async with anyio.create_task_group() as group:  # side by side: each takes its calls' full bounds
        for mode in ("stall", "trickle"):
            group.start_soon(hostile_calls, mode, tmp_path, runs)
    for hostile, results in runs.values():
        check_bounded(hostile, results)


@pytest.mark.anyio
@pytest.mark.real_time
@pytest.mark.parametrize("hostile", ["stall"], indirect=True)
async def test_the_bounds_hold_at_their_real_values(hostile: Hostile, tmp_path: Path) -> None:
    """A server in real time (the suite's is compressed): 20 s without a wait, wait + 10 s with
    one, each call ending a little before its bound (its exchanges stop 2 s early), not sooner."""
    params = StdioServerParameters(command=sys.executable, args=["-m", "nonecap_mcp", "serve"], cwd=str(ROOT),
                                   env=server_env(**hostile_env(hostile, tmp_path) | REAL_TIME_ENV))
    taken: dict[str, float] = {}
    async with Client(stdio_client(params), mode="legacy") as client:
        agent = Agent(client)

        async def one(name: str, arguments: dict[str, Any]) -> None:
            started = time.monotonic()
            await agent.call(name, arguments)
            taken[name] = time.monotonic() - started

        async with anyio.create_task_group() as group:
            group.start_soon(one, "get_balance", {})
            group.start_soon(one, "create_solve", {**PAGE, "wait_seconds": 2})
    assert 20 - 4 < taken["get_balance"] < 20, taken
    assert 2 + 10 - 4 < taken["create_solve"] < 2 + 10, taken


def check_bounded(hostile: Hostile, results: dict[str, Timed]) -> None:
    for label, call in results.items():  # none got an answer, none outlived its bound
        assert call.within(CALLS[label][2]), (label, call)
    text = {label: call.text for label, call in results.items()}
    # get_balance degrades rather than fails: each missing figure is named with its reason.
    assert not results["get_balance"].is_error and "connection_error" in text["get_balance"] and "rpc_error" in text["get_balance"]
    assert "x402 price table unavailable (x402_connection_error)" in text["get_pricing"]
    for label in ("list_solves", "cancel_solve", "get_solve"):
        assert "connection_error: " in text[label] and "No complete answer within" in text[label]
        assert '"action": "retry"' in text[label]
    assert "outcome_unknown: " in text["create_solve"] and '"action": "check_status_first"' in text["create_solve"]
    assert "connection_error: " in text["create_solve x402"] and "x402" in text["create_solve x402"]
    # The create whose answer never came was never sent again; nothing was paid.
    assert hostile.requests.count(("POST", "/v1/solves")) == 1
    assert ("POST", "/x402/createTask") not in hostile.requests


@pytest.mark.anyio
@pytest.mark.parametrize("hostile", ["redirect"], indirect=True)
async def test_a_redirect_is_its_own_error_and_never_followed(hostile: Hostile, tmp_path: Path) -> None:
    async with Client(build_server(load_settings(hostile_env(hostile, tmp_path))), mode="legacy") as client:
        agent = Agent(client)
        listed = await agent.error("list_solves")
        created = await agent.error("create_solve", {**PAGE, "wait_seconds": 2})
        balance = await agent.ok("get_balance")
    assert "redirected: " in listed and "HTTP 307 redirect to 127.0.0.1" in listed and "token=abc" not in listed
    assert '"action": "check_status_first"' in listed and "NONECAP_API_BASE" in listed
    # A create that was redirected may or may not exist: never "refused", never "fix_parameter".
    assert "fix_parameter" not in created and "unexpected_response" not in created
    assert "check_status_first" in created
    assert any("(redirected)" in note for note in balance["notes"]) and any("rpc_error" in note for note in balance["notes"])
    assert ("GET", "/elsewhere") not in hostile.requests and ("POST", "/elsewhere") not in hostile.requests


@pytest.mark.anyio
@pytest.mark.parametrize("hostile", ["html502"], indirect=True)
async def test_an_html_gateway_error_is_explained_and_a_create_is_reconciled_not_resent(hostile: Hostile, tmp_path: Path) -> None:
    async with Client(build_server(load_settings(hostile_env(hostile, tmp_path))), mode="legacy") as client:
        agent = Agent(client)
        listed = await agent.error("list_solves")
        created = await agent.error("create_solve", {**PAGE, "wait_seconds": 2})
    assert "http_502 (HTTP 502" in listed and '"action": "retry"' in listed
    assert "outcome_unknown: " in created and "check_status_first" in created
    assert hostile.requests.count(("POST", "/v1/solves")) == 1


@pytest.mark.anyio
@pytest.mark.parametrize("hostile", ["waf403"], indirect=True)
async def test_a_firewalls_403_never_sends_the_user_to_replace_a_working_key(hostile: Hostile, tmp_path: Path) -> None:
    """Only NoneCap's own error envelope speaks for the key: an HTML 403 from something in front of
    the API is an unexplained refusal, not `check_api_key`."""
    async with Client(build_server(load_settings(hostile_env(hostile, tmp_path))), mode="legacy") as client:
        text = await Agent(client).error("list_solves")
    assert "http_403 (HTTP 403" in text and '"action": "fix_parameter"' in text and "check_api_key" not in text


@pytest.mark.anyio
@pytest.mark.parametrize("hostile", ["throttle"], indirect=True)
async def test_an_absurd_retry_after_is_capped_and_never_slept(hostile: Hostile, tmp_path: Path) -> None:
    async with Client(build_server(load_settings(hostile_env(hostile, tmp_path))), mode="legacy") as client:
        started = time.monotonic()
        text = await Agent(client).error("list_solves")
    assert time.monotonic() - started < scaled(3)
    assert '"retry_after_seconds": 3600.0' in text and "Infinity" not in text
    assert hostile.requests.count(("GET", "/v1/solves")) == 1  # asked to wait that long: not retried


@pytest.mark.anyio
async def test_a_hang_that_is_no_http_exchange_is_stopped_at_the_call_bound(sandbox: Sandbox) -> None:
    """The cancel scope behind every call is what bounds one when something other than an
    HTTP exchange hangs: here an OS keyring that never answers (the key is not in the env),
    with the keyring's own timeout (30 s) set longer than the call's 20 s bound."""
    env = {key: value for key, value in sandbox_env(sandbox).items() if key != "NONECAP_API_KEY"}
    env |= {"PYTHON_KEYRING_BACKEND": "keyring_backends.HangingKeyring", "PYTHONPATH": str(TESTS_DIR),
            "NONECAP_KEYRING_TIMEOUT": "30"}
    params = StdioServerParameters(command=sys.executable, args=["-m", "nonecap_mcp", "serve"], cwd=str(ROOT), env=server_env(**env))
    async with Client(stdio_client(params), mode="legacy") as client:
        started = time.monotonic()
        text = await Agent(client).error("list_solves")
        took = time.monotonic() - started
    assert took < scaled(20), (took, text)
    assert "deadline_exceeded: " in text  # not the keyring's own timeout, 30 s on
    assert upstream(sandbox) == []  # stopped while still reading the key: nothing was sent


@pytest.mark.anyio
async def test_a_silent_keyring_costs_get_balance_only_the_wallets_figures(sandbox: Sandbox) -> None:
    """Degrade, don't drop, whatever hangs: the wallet key's keyring read never answers (its own
    timeout, 30 s, is past the call's bound), and the credits already read still come back, with
    a note naming the wallet figures the call ran out of time for."""
    backend = HangingKeyring()
    keystore.set_backend(backend)
    try:
        settings = load_settings(sandbox_env(sandbox, NONECAP_KEYRING_TIMEOUT="30"))
        async with Client(build_server(settings), mode="legacy") as client:
            call = await timed(Agent(client), "get_balance", {})
            again = await timed(Agent(client), "get_balance", {})
    finally:
        backend.release.set()
        keystore.set_backend(None)
    assert not call.is_error and call.within(scaled(20)), call
    balance = json.loads(call.text)
    assert balance["credits_balance"] == 100 and balance["wallet_address"] is None
    assert any(note.startswith("x402: wallet_address") and "(deadline_exceeded)" in note for note in balance["notes"]), balance
    # The read left waiting is remembered: the next call says so at once instead of waiting out its
    # own bound beside one more thread stuck on the same keyring.
    second = json.loads(again.text)
    assert not again.is_error and again.seconds < 1 and second["credits_balance"] == 100, again
    assert any("still not answering an earlier request" in note for note in second["notes"]), second


@pytest.mark.anyio
async def test_a_figure_one_step_already_explained_is_not_blamed_again_by_the_deadline() -> None:
    """The wallet's steps note their own failures (a broken ledger); when the rail's reading is then
    stopped at the deadline, its note names only what is still unexplained."""
    balance = Balance(sandbox=True, wallet_address="0x" + "11" * 20)

    async def fails(code: str) -> None:
        raise NoneCapError(code, "it failed")

    await _fill(balance, "x402", ("x402_spent_today_usd",), fails("local_state_error"))
    await _fill(balance, "x402", ("wallet_address", "x402_spent_today_usd", "usdc_balance"), fails("deadline_exceeded"))
    assert balance.notes == ["x402: x402_spent_today_usd unavailable (local_state_error): it failed",
                             "x402: usdc_balance unavailable (deadline_exceeded): it failed"]


class RawStdio:
    """`python -m nonecap_mcp serve` driven over stdio by hand, as a host would, so the test
    (not an SDK client that kills its server after 2 s) decides when stdin closes."""

    def __init__(self, env: dict[str, str], errlog: Path) -> None:
        self._err = errlog.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "nonecap_mcp", "serve"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err, env=env, cwd=str(ROOT), text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self._id = 0
        self.request("initialize", {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}})
        self._send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def _read(self) -> None:
        for line in self.process.stdout:  # type: ignore[union-attr]
            self._lines.put(line)

    def _send(self, message: dict[str, Any]) -> None:
        self.process.stdin.write(json.dumps(message) + "\n")  # type: ignore[union-attr]
        self.process.stdin.flush()  # type: ignore[union-attr]

    def request(self, method: str, params: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
        self._id += 1
        self._send({"jsonrpc": "2.0", "id": self._id, "method": method, "params": params})
        while True:
            message = json.loads(self._lines.get(timeout=timeout))
            if message.get("id") == self._id:
                return message["result"]

    def call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return self.request("tools/call", {"name": name, "arguments": arguments})

    def peak_rss_mib(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) / 1024

    def close_stdin(self, timeout: float) -> float:
        """Close stdin as a host does on exit; seconds until the process ended (or killed at `timeout`)."""
        started = time.monotonic()
        self.process.stdin.close()  # type: ignore[union-attr]
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        finally:
            self._err.close()
        return time.monotonic() - started


def server_env(**extra: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), "XDG_STATE_HOME": os.environ.get("XDG_STATE_HOME", ""),
            "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring", **extra}


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the server's peak RSS from /proc")
def test_a_200_mb_body_is_refused_at_its_cap_with_memory_near_idle(tmp_path: Path) -> None:
    with Hostile("html502") as hostile:
        server = RawStdio(server_env(**hostile_env(hostile, tmp_path)), tmp_path / "stderr.log")
        try:
            server.call("get_balance", {})  # warm: every module a balance and a price need is loaded
            server.call("get_pricing", {})
            idle = server.peak_rss_mib()
            hostile.mode = "huge"
            started = time.monotonic()
            balance = server.call("get_balance", {})["structuredContent"]
            pricing = server.call("get_pricing", {})["structuredContent"]
            elapsed = time.monotonic() - started
            peak = server.peak_rss_mib()
        finally:
            server.close_stdin(10)
    assert peak - idle < 32, f"peak RSS grew from {idle:.0f} to {peak:.0f} MiB"
    assert hostile.body_bytes_sent < 32 * MIB  # the rest of the 220 MB was never even produced
    assert elapsed < scaled(10)
    notes = " ".join(balance["notes"])
    assert "(response_too_large)" in notes and "over 1024 KiB" in notes and "rpc_error" in notes
    assert "x402 price table unavailable (response_too_large)" in " ".join(pricing["notes"])


@pytest.mark.real_time
def test_closing_stdin_ends_the_server_quickly_and_records_a_payment_in_flight_as_unknown(sandbox: Sandbox, tmp_path: Path) -> None:
    """At the real values: the slow paid request goes to the background within the call's
    wait + 10 s, and the process exits within 10 s of stdin closing."""
    sandbox.inject_fault(method="POST", path="/x402/createTask", action="delay", seconds=40, skip=1)  # the paid one hangs
    env = server_env(**sandbox_env(sandbox, NONECAP_WALLET_PRIVATE_KEY=SANDBOX_WALLET_KEY, NONECAP_STATE_DIR=str(tmp_path),
                                   NONECAP_CONFIRM_ABOVE_USD="1") | REAL_TIME_ENV)
    server = RawStdio(env, tmp_path / "stderr.log")
    try:
        started = time.monotonic()
        solve = server.call("create_solve", {**PAGE, "rail": "x402", "wait_seconds": 1})["structuredContent"]
        assert solve["status"] == "solving" and time.monotonic() - started < 1 + 10
        time.sleep(0.5)
    finally:
        took = server.close_stdin(15)
    assert took < 10 and server.process.returncode == 0
    with sqlite3.connect(tmp_path / "ledger.sqlite3") as db:
        states = db.execute("SELECT state FROM payments WHERE solve_id = ?", (solve["id"],)).fetchall()
    assert states == [("unknown",)]  # counted as spent: it may have settled
    assert not any(secret in (tmp_path / "stderr.log").read_text() for secret in SECRETS)
