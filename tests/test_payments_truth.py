"""Truthful x402 payments when the rail, or a gateway in front of it, fails or lies.

A hostile gateway on 127.0.0.1 sits between the server and the sandbox rail: it passes every
request through, and for the paid createTask it lets the sandbox run (and settle) the solve,
then answers something else: an HTML 502 or 500, a 307, a 504 without the rail's JSON, a 200
with odd field types or no solution. The server must count such a payment as spent, find out
from the chain (EIP-3009 authorizationState on the sandbox's /rpc) that it settled, and never
let the daily budget be exceeded. Everything runs through the real MCP client; nothing in the
server is patched.
"""

from __future__ import annotations

import json
import shutil
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from conftest import Agent, scaled
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from test_tools_x402 import orphan, solve_args, x402_env

from nonecap_mcp.config import load_settings
from nonecap_mcp.sandbox import SANDBOX_API_KEY, SANDBOX_WALLET_ADDRESS, Sandbox
from nonecap_mcp.tools import build_server
from nonecap_mcp.x402.ledger import Ledger, X402Solve

pytestmark = pytest.mark.anyio
PRICE_ENV = {"NONECAP_DAILY_BUDGET_USD": "0.012"}  # room for exactly one solve at $0.012
Answer = tuple[int, dict[str, str], bytes]
Rewrite = Callable[[httpx.Response], Answer]
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}


def html(status: int) -> Rewrite:
    return lambda _upstream: (status, {"Content-Type": "text/html"}, f"<html><h1>{status}</h1>nginx</html>".encode())


def redirect(_upstream: httpx.Response) -> Answer:
    return 307, {"Location": "https://elsewhere.example/x402/createTask"}, b""


def gateway_timeout(_upstream: httpx.Response) -> Answer:
    return 504, {"Content-Type": "text/plain"}, b"Gateway Time-out"


def json_rewrite(change: Callable[[dict[str, Any]], None]) -> Rewrite:
    """The rail's own 200 (receipt header included) with its JSON body changed."""

    def rewrite(upstream: httpx.Response) -> Answer:
        body = upstream.json()
        change(body)
        headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
        return upstream.status_code, headers, json.dumps(body).encode()

    return rewrite


class Gateway:
    """A proxy in front of the sandbox that rewrites the answer to the paid createTask.

    `rewrite` sees the sandbox's own answer, so the solve ran and settled before the lie.
    `close_after_probe` instead stops listening once the unpaid 402 is answered: the paid
    request then never connects.
    """

    def __init__(self, upstream: str, rewrite: Rewrite | None = None, *, close_after_probe: bool = False) -> None:
        self.upstream, self.rewrite, self.close_after_probe = upstream, rewrite, close_after_probe
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                with httpx.Client(base_url=gateway.upstream, timeout=90) as client:
                    upstream = client.request(self.command, self.path, content=body, headers=headers)
                paid = self.path == "/x402/createTask" and ("X-PAYMENT" in self.headers or "PAYMENT-SIGNATURE" in self.headers)
                status, out_headers, out = (
                    gateway.rewrite(upstream) if paid and gateway.rewrite else
                    (upstream.status_code, {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP},
                     upstream.content)
                )
                probe = self.path == "/x402/createTask" and not paid and status == 402
                if probe and gateway.close_after_probe:
                    gateway.server.shutdown()  # from a handler thread: waits for the accept loop only
                    gateway.server.socket.close()
                self.send_response(status)
                for name, value in out_headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(out)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(out)
                self.close_connection = True

            do_GET = do_POST = _forward

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Gateway:
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        if not self.close_after_probe:
            self.server.shutdown()
        self.server.server_close()


@asynccontextmanager
async def payer_through(sandbox: Sandbox, state_dir: Path, gateway: Gateway | None, **env: str) -> AsyncIterator[Agent]:
    extra = {"NONECAP_X402_BASE": gateway.url} if gateway else {}
    async with Client(build_server(load_settings(x402_env(sandbox, state_dir, **extra, **env))), mode="legacy") as client:
        yield Agent(client)


def payments(state_dir: Path, solve_id: str) -> list[str]:
    return [p["state"] for p in Ledger(state_dir / "ledger.sqlite3").payments_for(solve_id)]


LIES = {
    "html_502": html(502),
    "html_500": html(500),
    "redirect_307": redirect,
    "504_without_json": gateway_timeout,
}


@pytest.mark.parametrize("lie", sorted(LIES))
async def test_a_gateway_lying_after_settlement_never_lets_the_budget_be_exceeded(
    sandbox: Sandbox, tmp_path: Path, lie: str
) -> None:
    with Gateway(sandbox.url, LIES[lie]) as gateway:
        async with payer_through(sandbox, tmp_path, gateway, **PRICE_ENV) as agent:
            first = await agent.ok("create_solve", solve_args("sandbox-solve-100ms"))
            second = await agent.error("create_solve", solve_args("sandbox-solve-100ms"))
            balance = await agent.ok("get_balance")
    assert len(sandbox.settlements) == 1  # the sandbox settled the first payment behind the lie
    # Not "failed and free": the chain shows the authorization used, so it is spent.
    assert first["status"] == "failed" and first["error"]["code"] == "x402_result_lost"
    assert first["cost_usd"] == "0.012" and first["token"] is None
    assert payments(tmp_path, first["id"]) == ["settled"]
    assert "budget_exceeded" in second and len(sandbox.payment_attempts) == 1  # the second was never signed
    assert balance["x402_spent_today_usd"] == "0.012" and balance["x402_held_usd"] == "0"
    assert balance["x402_budget_left_usd"] == "0"


async def test_a_settled_payment_behind_a_lie_stays_spent_after_its_authorization_expires(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """A failed authorization is only held until it expires; a settled one is spent for good."""
    sandbox.set_x402(overrides={"maxTimeoutSeconds": 7})  # the authorization expires 7 s after signing
    with Gateway(sandbox.url, html(502)) as gateway:
        async with payer_through(sandbox, tmp_path, gateway, **PRICE_ENV) as agent:
            await agent.ok("create_solve", solve_args("sandbox-solve-100ms"))
            await anyio.sleep(8)
            second = await agent.error("create_solve", solve_args("sandbox-solve-100ms"))
    assert "budget_exceeded" in second
    assert len(sandbox.settlements) == 1 and len(sandbox.payment_attempts) == 1  # $0.012 spent, never $0.024


async def test_a_lie_with_the_chain_unreachable_is_unknown_and_counted_until_the_chain_answers(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    with Gateway(sandbox.url, html(502)) as gateway:
        sandbox.inject_fault(method="POST", path="/rpc", action="status", status=503, times=1000)
        async with payer_through(sandbox, tmp_path, gateway, **PRICE_ENV) as agent:
            first = await agent.ok("create_solve", solve_args("sandbox-solve-100ms"))
            second = await agent.error("create_solve", solve_args("sandbox-solve-100ms"))
            assert first["error"]["code"] == "payment_outcome_unknown" and payments(tmp_path, first["id"]) == ["unknown"]
            assert "HTTP 502" in first["error"]["message"] and "budget_exceeded" in second
    assert len(sandbox.settlements) == 1 and len(sandbox.payment_attempts) == 1


async def test_start_up_resolves_an_unknown_payment_from_the_chain(sandbox: Sandbox, tmp_path: Path) -> None:
    with Gateway(sandbox.url, html(502)) as gateway:
        sandbox.inject_fault(method="POST", path="/rpc", action="status", status=503, times=1)  # the first look only
        async with payer_through(sandbox, tmp_path, gateway) as agent:
            first = await agent.ok("create_solve", solve_args("sandbox-solve-100ms"))
    assert payments(tmp_path, first["id"]) == ["unknown"] and len(sandbox.settlements) == 1
    async with payer_through(sandbox, tmp_path, None):
        with anyio.fail_after(10):
            while payments(tmp_path, first["id"]) != ["settled"]:
                await anyio.sleep(0.1)
    record = Ledger(tmp_path / "ledger.sqlite3").get_solve(first["id"])
    assert record is not None and record.error_code == "x402_result_lost" and record.cost_usd == "0.012"


async def test_a_settled_200_with_odd_field_types_still_yields_the_token(sandbox: Sandbox, tmp_path: Path) -> None:
    def odd(body: dict[str, Any]) -> None:
        body.update(resultToken={"nested": body["resultToken"]}, taskId=12345, cost="free", solveTimeMs=None)

    with Gateway(sandbox.url, json_rewrite(odd)) as gateway:
        async with payer_through(sandbox, tmp_path, gateway) as agent:
            solve = await agent.ok("create_solve", solve_args("sandbox-solve-100ms"))
            again = await agent.ok("get_solve", {"id": solve["id"], "wait_seconds": 0})
    assert solve["status"] == "solved" and solve["token"].startswith("P1_SANDBOX") and solve["cost_usd"] == "0.012"
    assert again["token"] == solve["token"]
    assert payments(tmp_path, solve["id"]) == ["settled"]


async def test_a_paid_200_without_a_solution_is_not_solved(sandbox: Sandbox, tmp_path: Path) -> None:
    with Gateway(sandbox.url, json_rewrite(lambda body: body.pop("solution"))) as gateway:
        async with payer_through(sandbox, tmp_path, gateway) as agent:
            solve = await agent.ok("create_solve", solve_args("sandbox-solve-100ms"))
    assert solve["status"] == "failed" and solve["token"] is None
    assert solve["error"]["code"] == "x402_no_solution" and solve["guidance"]["action"] == "contact_support"
    assert solve["cost_usd"] == "0.012" and payments(tmp_path, solve["id"]) == ["settled"]


async def test_a_paid_request_that_never_connected_is_failed_without_a_traceback(
    sandbox: Sandbox, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with Gateway(sandbox.url, close_after_probe=True) as gateway:
        async with payer_through(sandbox, tmp_path, gateway) as agent:
            solve = await agent.ok("create_solve", solve_args("sandbox-solve-100ms"))
    assert solve["status"] == "failed" and solve["error"]["code"] == "x402_connection_error"
    assert "NONECAP_X402_BASE" in solve["guidance"]["hint"] and "NONECAP_API_BASE" not in solve["guidance"]["hint"]
    assert payments(tmp_path, solve["id"]) == ["failed"]
    assert sandbox.payment_attempts == [] and sandbox.settlements == []
    assert "Traceback" not in caplog.text


async def test_a_ledger_that_cannot_be_written_keeps_the_settled_token(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    state_dir = tmp_path / "state"
    async with payer_through(sandbox, state_dir, None) as agent:
        started = await agent.ok("create_solve", solve_args("sandbox-solve-1500ms", wait_seconds=0))
        assert started["status"] == "solving"
        shutil.rmtree(state_dir)
        state_dir.write_text("")  # like a full or vanished disk: nothing can be written there now
        done = await agent.ok("get_solve", {"id": started["id"], "wait_seconds": 15})
    assert len(sandbox.settlements) == 1
    assert done["status"] == "solved" and done["token"].startswith("P1_SANDBOX") and done["cost_usd"] == "0.012"


async def test_an_orphan_check_honours_wait_seconds(sandbox: Sandbox, tmp_path: Path) -> None:
    """Another process is paying for this solve: get_solve waits for it, up to wait_seconds."""
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    solve_id = orphan(ledger, valid_before=int(time.time()) + 600, nonce="0x" + "cd" * 32)
    record = ledger.get_solve(solve_id)
    assert record is not None
    record.created_at = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())  # fresh: its owner may be alive
    ledger.upsert_solve(record)
    async with payer_through(sandbox, tmp_path, None) as agent:
        began = time.monotonic()
        still = await agent.ok("get_solve", {"id": solve_id, "wait_seconds": 2})
        assert still["status"] == "solving" and time.monotonic() - began >= 2

        async def owner_finishes() -> None:
            await anyio.sleep(1)
            finished = X402Solve(**{**record.__dict__, "status": "failed", "error_code": "x402_unsolvable",
                                    "error_message": "No provider could solve it.", "finished_at": record.created_at})
            await anyio.to_thread.run_sync(lambda: ledger.record_outcome("0x" + "cd" * 32, "failed", solve=finished))

        began = time.monotonic()
        async with anyio.create_task_group() as group:
            group.start_soon(owner_finishes)
            done = await agent.ok("get_solve", {"id": solve_id, "wait_seconds": 20})
        assert done["status"] == "failed" and done["error"]["code"] == "x402_unsolvable"
        assert time.monotonic() - began < 5


async def test_spent_and_held_are_labelled_apart(sandbox: Sandbox, tmp_path: Path) -> None:
    async with payer_through(sandbox, tmp_path, None) as agent:
        await agent.ok("create_solve", solve_args("sandbox-solve-100ms"))
        await agent.ok("create_solve", solve_args("sandbox-fail-proxy_error"))
        balance = await agent.ok("get_balance")
    assert balance["x402_spent_today_usd"] == "0.012"  # one success
    assert balance["x402_held_usd"] == "0.012"  # the free failure, held until its authorization expires
    assert balance["x402_budget_left_usd"] == "0.976" and balance["x402_daily_budget_usd"] == "1.00"


async def test_a_corrupt_ledger_does_not_drop_the_credits_already_read(sandbox: Sandbox, tmp_path: Path) -> None:
    (tmp_path / "ledger.sqlite3").write_bytes(b"this is not a database, it was corrupted" * 200)
    env = {"NONECAP_API_KEY": SANDBOX_API_KEY, "NONECAP_API_BASE": sandbox.url}
    async with payer_through(sandbox, tmp_path, None, **env) as agent:
        balance = await agent.ok("get_balance")
    assert balance["credits_balance"] == 100 and balance["wallet_address"] == SANDBOX_WALLET_ADDRESS
    assert balance["usdc_balance"] == "5" and balance["x402_spent_today_usd"] is None
    [note] = balance["notes"]
    assert note.startswith("x402: x402_spent_today_usd, x402_held_usd, x402_budget_left_usd unavailable (local_state_error)")


class _OddAccount(BaseHTTPRequestHandler):
    """A /v1/me whose credits_balance is not an integer."""

    value = "1.5"

    def do_GET(self) -> None:
        body = ('{"id": "acct_1", "email": "a@b.example", "credits_balance": %s}' % self.value).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@contextmanager
def odd_account(value: str) -> Iterator[str]:
    handler = type("Odd", (_OddAccount,), {"value": value})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("value", ["1.5", "NaN"])
async def test_an_unreadable_credits_balance_names_the_field_and_keeps_the_wallet(
    sandbox: Sandbox, tmp_path: Path, value: str
) -> None:
    with odd_account(value) as api:
        async with payer_through(sandbox, tmp_path, None, NONECAP_API_KEY=SANDBOX_API_KEY, NONECAP_API_BASE=api) as agent:
            balance = await agent.ok("get_balance")
    assert balance["credits_balance"] is None and balance["wallet_address"] == SANDBOX_WALLET_ADDRESS
    [note] = balance["notes"]
    assert note.startswith("credits: credits_balance, account_id, key_mode unavailable (unexpected_response)")
    assert "credits_balance" in note.split(":", 2)[2]


async def test_the_setup_timeout_has_its_own_code(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.inject_fault(method="POST", path="/x402/createTask", action="delay", seconds=scaled(14))  # past the set-up's floor
    async with payer_through(sandbox, tmp_path, None) as agent:
        began = time.monotonic()
        text = await agent.error("create_solve", solve_args("sandbox-solve-100ms", wait_seconds=0))
    assert time.monotonic() - began < scaled(13)
    assert "x402_setup_timeout: " in text and "nothing was signed or paid" in text
    assert '"action": "retry"' in text and sandbox.payment_attempts == []


async def _pay_twice(agent: Agent, results: list[str]) -> None:
    """Two paid solves at once through one server."""
    async with anyio.create_task_group() as group:
        for _ in range(2):
            async def one() -> None:
                result = await agent.call("create_solve", solve_args("sandbox-solve-300ms"))
                results.append(result.content[0].text if result.is_error else "paid")  # type: ignore[union-attr]
            group.start_soon(one)


async def _serve_and_pay(env: dict[str, str], ready: anyio.Event, results: list[str]) -> None:
    params = StdioServerParameters(command=sys.executable, args=["-m", "nonecap_mcp", "serve"], env=env)
    async with Client(stdio_client(params), mode="legacy") as client:
        ready.set()
        await _pay_twice(Agent(client), results)


async def _pay_in_process(sandbox: Sandbox, state_dir: Path, ready: anyio.Event, results: list[str]) -> None:
    async with payer_through(sandbox, state_dir, None, **PRICE_ENV) as agent:
        await ready.wait()  # the other process is up: their payments race
        await _pay_twice(agent, results)


async def test_two_server_processes_sharing_a_state_dir_never_exceed_the_budget(sandbox: Sandbox, tmp_path: Path) -> None:
    """One server launched as a host launches it, the other in this test's process: two processes
    on one ledger file, paying at the same moment (the second needs no start-up of its own to be
    a separate process)."""
    from child_process import child_env

    env = child_env(**x402_env(sandbox, tmp_path, **PRICE_ENV))
    results: list[str] = []
    ready = anyio.Event()
    with anyio.fail_after(60):
        async with anyio.create_task_group() as group:
            group.start_soon(_serve_and_pay, env, ready, results)
            group.start_soon(_pay_in_process, sandbox, tmp_path, ready, results)
    assert sorted(r if r == "paid" else "budget_exceeded" * ("budget_exceeded" in r) for r in results) == [
        "budget_exceeded", "budget_exceeded", "budget_exceeded", "paid"]
    assert len(sandbox.settlements) == 1
    assert Ledger(tmp_path / "ledger.sqlite3").counted_today_atomic() == 12000
