"""Three `serve --http` replicas sharing one PostgreSQL: the single process's guarantees, across them.

Each replica is a real process with a state directory of its own (as on separate machines), so
the only thing they share is NONECAP_DATABASE_URL: the x402 ledger and its daily budget, the
record of creates in flight, the clients. They are driven with the SDK's streamable HTTP client
against the sandbox, whose request log and chain say what really happened upstream.

The tests that neither kill a replica nor need a budget of their own share one set of three
(`team`, a replica costs ~1.5 s of CPU to start): only the budget test pays by x402 there, so
its daily budget and ledger are that test's alone; the others solve on the credits rail.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import SECRETS, Agent, sandbox_env
from postgres import open_store, schema_url
from test_http import http_client, serve_http, warm_wallet

from child_process import child_env
from nonecap_mcp.clients import ClientRegistry
from nonecap_mcp.sandbox import SANDBOX_WALLET_KEY, Sandbox
from nonecap_mcp.x402.ledger import Ledger

pytestmark = pytest.mark.anyio
PRICE_USD = "0.012"  # the sandbox rail's hCaptcha price
URL = "https://shop.example/login"


@dataclass
class Replicas:
    """The running replicas, the one client token they all accept, and the shared database."""

    urls: list[str]
    processes: list[subprocess.Popen[str]]
    token: str
    database_url: str
    logs: list[Path]

    def agent(self, replica: int) -> Any:
        """An MCP client session on one replica (an async context manager yielding the Client)."""
        return http_client(self.urls[replica], self.token)

    def ledger(self) -> Ledger:
        return Ledger(open_store(self.database_url))


@contextmanager
def replicas(sandbox: Sandbox, postgres_url: str, tmp_path: Path, count: int = 3, **extra: str) -> Iterator[Replicas]:
    """`count` replicas on 127.0.0.1, each with its own state dir, all on one fresh PostgreSQL schema."""
    database_url = schema_url(postgres_url, str(tmp_path))

    def env(state: str) -> dict[str, str]:
        return child_env(**sandbox_env(sandbox, NONECAP_STATE_DIR=str(tmp_path / state), NONECAP_DATABASE_URL=database_url,
                                       NONECAP_WALLET_PRIVATE_KEY=SANDBOX_WALLET_KEY, NONECAP_CONFIRM_ABOVE_USD="1", **extra))

    token = ClientRegistry(open_store(database_url)).add("team")  # the `clients` CLI itself: test_http
    logs = [tmp_path / f"replica{i}.log" for i in range(count)]
    started: list[tuple[subprocess.Popen[str], str]] = []
    handles = [log.open("w") for log in logs]
    try:
        for i in range(count):
            started.append(serve_http(env(f"replica{i}"), stderr=handles[i]))
        yield Replicas([u for _, u in started], [p for p, _ in started], token, database_url, logs)
    finally:
        for process, _ in started:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=15)
        for handle in handles:
            handle.close()
    text = "\n".join(log.read_text() for log in logs)
    assert not any(secret in text for secret in [*SECRETS, token, database_url])


@pytest.fixture(scope="module")
def team(_sandbox_server: Sandbox, postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    """Three replicas for the module, under a daily budget of 4 prices (spent by the budget test alone)."""
    with replicas(_sandbox_server, postgres_url, tmp_path_factory.mktemp("team"),
                  NONECAP_DAILY_BUDGET_USD=str(4 * float(PRICE_USD))) as running:
        yield running


def paid(sandbox: Sandbox) -> list[Any]:
    """The paid createTask requests the rail answered (the unpaid 402 probes left out)."""
    return [r for r in sandbox.requests if r.method == "POST" and r.path == "/x402/createTask" and r.status != 402]


async def test_twelve_paid_solves_across_three_replicas_settle_exactly_the_budget(team: Replicas, sandbox: Sandbox) -> None:
    """A daily budget of 4 prices, 12 concurrent x402 solves spread over 3 replicas: exactly 4 are paid.
    Each replica gets 4, its whole budget: replicas that did not share the ledger would pay 12."""
    results: list[Any] = [None] * 12

    async def solve(i: int) -> None:
        async with team.agent(i % 3) as client:
            results[i] = await Agent(client).call("create_solve", {
                "type": "hcaptcha", "sitekey": "sandbox-solve-100ms", "url": URL, "rail": "x402", "wait_seconds": 20})

    with anyio.fail_after(120):
        async with anyio.create_task_group() as group:
            for i in range(12):
                group.start_soon(solve, i)
    solved = [r.structured_content for r in results if not r.is_error]
    refused = [r.content[0].text for r in results if r.is_error]
    assert len(solved) == 4 and all(s["status"] == "solved" and s["cost_usd"] == PRICE_USD for s in solved)
    assert len(refused) == 8 and all("budget_exceeded" in text for text in refused), refused[:3]
    assert len(sandbox.settlements) == 4 and len(paid(sandbox)) == 4
    assert team.ledger().counted_today_atomic() == 4 * 12_000


async def test_the_accounts_in_flight_cap_is_shared_by_the_replicas(team: Replicas, sandbox: Sandbox) -> None:
    """Nine 2-second credits solves at once over three replicas, each allowed the account's 5 in
    flight: together they never send a sixth, so the API never answers 429, and all nine finish.
    (It runs before the lost-create test, whose intent of unknown outcome holds a slot for a while.)"""
    results: list[Any] = [None] * 9

    async def solve(i: int) -> None:
        async with team.agent(i % 3) as client:
            results[i] = await Agent(client).ok("create_solve", {
                "type": "hcaptcha", "sitekey": "sandbox-solve-2s", "url": f"{URL}?n={i}", "rail": "credits",
                "wait_seconds": 30})

    with anyio.fail_after(90):
        async with anyio.create_task_group() as group:
            for i in range(9):
                group.start_soon(solve, i)
    assert [r["status"] for r in results] == ["solved"] * 9
    posts = [r.status for r in sandbox.requests if r.method == "POST" and r.path == "/v1/solves"]
    assert posts == [200] * 9  # no 429 concurrency_limit_exceeded: the replicas queued for a slot


async def test_a_lost_create_on_one_replica_never_adopts_another_replicas_solve(team: Replicas, sandbox: Sandbox) -> None:
    """B creates normally; A's POST is lost before it arrives. B's solve is new and on the same
    page, but B's intent is in the shared record: A reports the ambiguity, never takes it."""
    args = {"type": "hcaptcha", "sitekey": "sandbox-solve-3s", "url": URL, "rail": "credits"}
    sandbox.inject_fault(method="POST", path="/v1/solves", action="drop_before", skip=1)
    found: dict[str, Any] = {}
    async with team.agent(0) as a_client, team.agent(1) as b_client:
        async def b_creates() -> None:
            found["b"] = await Agent(b_client).ok("create_solve", {**args, "wait_seconds": 15})

        async with anyio.create_task_group() as group:
            group.start_soon(b_creates)
            with anyio.fail_after(10):
                while not [r for r in sandbox.requests if r.method == "POST" and r.path == "/v1/solves"]:
                    await anyio.sleep(0.05)
            found["a"] = await Agent(a_client).call("create_solve", {**args, "wait_seconds": 10})
    b_solve, a_result = found["b"], found["a"]
    a_text = a_result.content[0].text
    assert b_solve["status"] == "solved"
    assert a_result.is_error and "outcome_unknown" in a_text and b_solve["id"] in a_text
    assert b_solve["token"] not in a_text
    posts = [r.status for r in sandbox.requests if r.method == "POST" and r.path == "/v1/solves"]
    assert posts == [200, None]  # A's lost create was never re-sent


async def test_a_replica_killed_mid_payment_leaves_it_counted_resolved_and_never_re_signed(
        sandbox: Sandbox, postgres_url: str, tmp_path: Path) -> None:
    """Replica 0 is killed (-9) while its paid request is in flight. Replica 1 carries on under the
    same budget, which counts that payment (one solve paid, the next refused); the chain then tells
    what happened to it, and it is recorded so, once: the sandbox saw one paid request for it,
    nothing re-signed or re-sent. A replica of its own (it kills one), and a budget of its own."""
    with replicas(sandbox, postgres_url, tmp_path, count=2, NONECAP_DAILY_BUDGET_USD=str(2 * float(PRICE_USD))) as team:
        args = {"type": "hcaptcha", "sitekey": "sandbox-solve-100ms", "url": URL, "rail": "x402"}
        sandbox.inject_fault(method="POST", path="/x402/createTask", action="delay", seconds=4, skip=1)  # the paid one
        async with team.agent(0) as client:
            await warm_wallet(client)  # first: loading the wallet must not eat the set-up of the 1 s call below
            lost = await Agent(client).ok("create_solve", {**args, "wait_seconds": 1})
        assert lost["status"] == "solving"
        with anyio.fail_after(10):
            while not paid(sandbox):
                await anyio.sleep(0.05)
        os.kill(team.processes[0].pid, signal.SIGKILL)
        team.processes[0].wait(timeout=10)
        [payment] = team.ledger().payments_for(lost["id"])
        assert payment["state"] == "signed"  # in flight when its replica died: counted as spent

        async with team.agent(1) as client:
            other = Agent(client)
            # Generous waits: a cold replica's first paid solve under a loaded CI box is slow, not wrong.
            assert (await other.ok("create_solve", {**args, "wait_seconds": 40}))["status"] == "solved"
            refused = await other.error("create_solve", {**args, "wait_seconds": 40})
            assert "budget_exceeded" in refused  # the dead replica's payment still counts
            with anyio.fail_after(45):  # the sandbox settles the delayed payment; the chain shows it
                while team.ledger().payments_for(lost["id"])[0]["state"] != "settled":
                    seen = await other.ok("get_solve", {"id": lost["id"], "wait_seconds": 0})  # a look, not the default wait
                    assert seen["id"] == lost["id"] and seen["status"] in ("solving", "failed")
                    await anyio.sleep(0.5)
        assert [p["nonce"] for p in team.ledger().payments_for(lost["id"])] == [payment["nonce"]]  # never re-signed
        assert len(paid(sandbox)) == 2 and len(sandbox.settlements) == 2
        assert team.ledger().counted_today_atomic() == 2 * 12_000
