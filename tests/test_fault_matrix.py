"""The fault matrix: every hostile upstream behaviour × every tool, through the real MCP client.

Each behaviour runs one server against one `Hostile` upstream and calls every tool at once
(stalls run side by side, so the module takes about one bound, not their sum). Each case must:
come back within its bound (wait_seconds + 10 s; 20 s without a wait); fail with a known code
and guidance that says what to do (or succeed where degrading is the promise); leak no secret
(the autouse `leak_check` scans results, errors and captured logs, and this module also checks
the percent-encoded proxy password); create nothing twice (one POST per create at most); and
pay nothing (no x402 payment is ever signed against a broken rail under a 1-cent-free budget).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import pytest
from conftest import PROXY_PASSWORD, SECRETS, Agent, Timed, scaled, timed
from hostile import SOLVE_ID, Hostile, hostile_env
from mcp import Client

from nonecap_mcp.config import load_settings
from nonecap_mcp.retry import RetryPolicy
from nonecap_mcp.tools import build_server

PAGE = {"type": "hcaptcha", "sitekey": "10000000-ffff-ffff-ffff-000000000001", "url": "https://a.example/"}
PROXY = f"http://user:{quote(PROXY_PASSWORD + '/%', safe='')}@203.0.113.7:8080"  # percent-encoded on the wire
ALL_SECRETS = [*SECRETS, PROXY_PASSWORD + "/%", quote(PROXY_PASSWORD + "/%", safe="")]
WAIT = 2
BEHAVIOURS = ["stall", "trickle", "reset", "html502", "redirect", "throttle", "storm", "odd", "skew", "echo"]

# label: (tool, arguments, bound in seconds): the server's own figures in the suite's time scale, the agent's wait as given
CALLS: dict[str, tuple[str, dict[str, Any], float]] = {
    "create_solve credits": ("create_solve", {**PAGE, "proxy": PROXY, "wait_seconds": WAIT}, WAIT + scaled(10)),
    "create_solve x402": ("create_solve", {**PAGE, "wait_seconds": WAIT, "rail": "x402"}, WAIT + scaled(10)),
    "get_solve": ("get_solve", {"id": SOLVE_ID, "wait_seconds": WAIT}, WAIT + scaled(10)),
    "list_solves": ("list_solves", {}, scaled(20)),
    "cancel_solve": ("cancel_solve", {"id": SOLVE_ID}, scaled(20)),
    "get_balance": ("get_balance", {}, scaled(20)),
    "get_pricing": ("get_pricing", {}, scaled(20)),
    "report_solve": ("report_solve", {"id": SOLVE_ID, "outcome": "accepted"}, scaled(20)),
}

class Barrier:
    """Holds every behaviour until all are ready: building a server's tools (the SDK's tool
    schemas, at a stdio server's first call; here eagerly, before the barrier) is synchronous
    work on the one event loop all behaviours share, and must not eat into the bounds of calls
    another behaviour has already started."""

    def __init__(self, parties: int) -> None:
        self.waiting, self.all_ready = parties, anyio.Event()

    async def wait(self) -> None:
        self.waiting -= 1
        if not self.waiting:
            self.all_ready.set()
        await self.all_ready.wait()


async def run_behaviour(
    mode: str, tmp_path: Path, into: dict[str, tuple[Hostile, dict[str, Timed]]], barrier: Barrier
) -> None:
    """Every call of CALLS at once against one hostile upstream in `mode`."""
    results: dict[str, Timed] = {}
    with Hostile(mode) as server:
        async with Client(build_server(load_settings(hostile_env(server, tmp_path / mode)), eager=True), mode="legacy") as client:
            agent = Agent(client)
            await barrier.wait()

            async def one(label: str, name: str, arguments: dict[str, Any]) -> None:
                results[label] = await timed(agent, name, arguments)

            async with anyio.create_task_group() as group:
                for label, (name, arguments, _) in CALLS.items():
                    group.start_soon(one, label, name, arguments)
        into[mode] = (server, results)


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Hostile, dict[str, Timed]]]:
    """All behaviours side by side, once for the module (a few bounds' time, not their sum)."""
    runs: dict[str, tuple[Hostile, dict[str, Timed]]] = {}
    tmp_path = tmp_path_factory.mktemp("matrix")

    async def main() -> None:
        barrier = Barrier(len(BEHAVIOURS))
        async with anyio.create_task_group() as group:
            for mode in BEHAVIOURS:
                group.start_soon(run_behaviour, mode, tmp_path, runs, barrier)

    anyio.run(main)
    return runs


def guidance(text: str) -> dict[str, Any]:
    """The guidance object a tool error carries after its message."""
    start = text.index("{")
    return json.loads(text[start:])


@pytest.mark.parametrize("label", list(CALLS))
@pytest.mark.parametrize("mode", BEHAVIOURS)
def test_every_tool_holds_its_promises_against_every_behaviour(
    matrix: dict[str, tuple[Hostile, dict[str, Timed]]], mode: str, label: str, caplog: pytest.LogCaptureFixture
) -> None:
    server, results = matrix[mode]
    call = results[label]
    is_error, text = call.is_error, call.text
    assert call.within(CALLS[label][2]), (mode, label, call)
    for secret in ALL_SECRETS:
        assert secret not in text, (mode, label)
    if is_error:
        found = re.match(r"Error executing tool \w+: ([a-z][a-z0-9_]*)[ :]", text)
        assert found, (mode, label, text)  # a short identifier, never upstream text
        code = found.group(1)
        advice = guidance(text)
        assert advice.get("action"), (mode, label, text)
        assert advice["action"] != "fix_parameter" or mode == "echo", (mode, label, text)  # only a 4xx blames the input
        if label.startswith("create_solve"):  # an upstream that may have created must never read "refused"
            assert code != "unexpected_response" or mode == "echo", (mode, label, text)
    # Nothing created twice, nothing paid: one POST per create at most, no paid x402 request. Only a
    # 429 proves nothing was created, so only the storm's creates may be retried (within the policy).
    assert server.posts("/v1/solves") <= (1 + RetryPolicy().max_retries if mode == "storm" else 1), (mode, server.requests)
    assert server.posts("/x402/createTask") <= 1, (mode, server.requests)
    assert not any(secret in caplog.text for secret in ALL_SECRETS)


def test_the_matrix_ran_every_behaviour_against_every_tool(matrix: dict[str, tuple[Hostile, dict[str, Timed]]]) -> None:
    """The matrix cannot pass empty: every behaviour ran and every upstream saw requests."""
    assert sorted(matrix) == sorted(BEHAVIOURS)
    for mode, (server, results) in matrix.items():
        assert sorted(results) == sorted(CALLS), mode
        assert server.requests, mode
