"""Creates on the credits rail when other processes share the key, the answer lies, or calls pile up.

Two real server processes share one sandbox, one API key and one state dir: one launched over
stdio as a host launches it, the other in the test's own process; a small hostile proxy in front
of the sandbox rewrites what the API answers. Nothing here patches the code under test.
"""

from __future__ import annotations

import http.client
import json
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, closing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import pytest
from conftest import Agent, sandbox_env, solve_args
from mcp import Client, MCPError
from test_stdio import _base_env, stdio_agent

from nonecap_mcp.config import load_settings
from nonecap_mcp.sandbox import Sandbox
from nonecap_mcp.tools import build_server
from nonecap_mcp.tools.state import lifespan_for

pytestmark = pytest.mark.anyio

def posts(sandbox: Sandbox) -> list[Any]:
    return [r for r in sandbox.requests if r.method == "POST" and r.path == "/v1/solves"]


@asynccontextmanager
async def two_servers(sandbox: Sandbox, tmp_path: Path) -> AsyncIterator[tuple[Agent, Agent]]:
    """Servers A and B in two processes on the same key, sandbox and state dir: A launched over
    stdio as a host launches it, B in this test's process. What they share (the create log's
    file and its locks) crosses a process boundary all the same, and B costs no second start-up
    of the SDK."""
    env = sandbox_env(sandbox, NONECAP_STATE_DIR=str(tmp_path / "state"))
    (tmp_path / "a").mkdir()
    async with stdio_agent(_base_env(**env, NONECAP_LOG_LEVEL="INFO"), tmp_path / "a") as a, \
            Client(build_server(load_settings(env)), mode="legacy") as b:
        yield a, Agent(b)


async def until(condition: Callable[[], bool], seconds: float = 10) -> None:
    with anyio.fail_after(seconds):
        while not condition():
            await anyio.sleep(0.05)


@asynccontextmanager
async def b_creating(sandbox: Sandbox, b: Agent, sitekey: str) -> AsyncIterator[dict[str, Any]]:
    """B's create_solve (waiting up to 15 s) under way, its POST already received; B's
    result is in `found["b"]` once the block (and B's call) is over."""
    found: dict[str, Any] = {}

    async def create() -> None:
        found["b"] = await b.ok("create_solve", solve_args(sitekey, wait_seconds=15))

    async with anyio.create_task_group() as group:
        group.start_soon(create)
        await until(lambda: len(posts(sandbox)) == 1)
        yield found


async def test_a_lost_create_never_adopts_another_process_solve(sandbox: Sandbox, tmp_path: Path) -> None:
    """B creates normally; A's POST is dropped before it arrives. B's solve is new and on
    the same page, but B's intent is on record: A reports the ambiguity, never takes it."""
    async with two_servers(sandbox, tmp_path) as (a, b):
        sandbox.inject_fault(method="POST", path="/v1/solves", action="drop_before", skip=1)
        async with b_creating(sandbox, b, "sandbox-solve-3s") as found:
            found["a"] = await a.call("create_solve", solve_args("sandbox-solve-3s", wait_seconds=10))
    b_solve, a_result = found["b"], found["a"]
    assert b_solve["status"] == "solved"
    a_text = a_result.content[0].text
    assert a_result.is_error and "outcome_unknown" in a_text and '"action": "check_status_first"' in a_text
    assert b_solve["id"] in a_text  # named as a candidate, not returned as A's
    assert b_solve["token"] not in a_text
    assert [r.status for r in posts(sandbox)] == [200, None]  # A's lost create was never re-sent


async def test_a_cancelled_call_never_cancels_another_process_solve(sandbox: Sandbox, tmp_path: Path) -> None:
    """A's POST is lost and A's host cancels the call while A is still reconciling: A's
    clean-up must not DELETE B's solve, which it could mistake for its own."""
    async with two_servers(sandbox, tmp_path) as (a, b):
        sandbox.inject_fault(method="POST", path="/v1/solves", action="drop_before", skip=1)
        sandbox.inject_fault(method="GET", path="/v1/solves", action="delay", seconds=2)
        async with b_creating(sandbox, b, "sandbox-solve-5s") as found:
            with pytest.raises(MCPError):
                await a.client.call_tool("create_solve", solve_args("sandbox-solve-5s", wait_seconds=15), read_timeout_seconds=1)
            await until(lambda: sum(r.path == "/v1/solves" and r.method == "GET" for r in sandbox.requests) >= 2)
            await anyio.sleep(1)  # A's clean-up has listed again and decided
        assert found["b"]["status"] == "solved"
        assert [r for r in sandbox.requests if r.method == "DELETE"] == []
        assert (await b.ok("get_balance"))["credits_balance"] == 99


async def test_each_process_still_recovers_its_own_lost_answer(sandbox: Sandbox, tmp_path: Path) -> None:
    """The shared record does not make honest reconciliation impossible: B's solve is claimed,
    so A, whose answer was lost after the create, adopts exactly its own."""
    async with two_servers(sandbox, tmp_path) as (a, b):
        b_solve = await b.ok("create_solve", solve_args("sandbox-solve-100ms", wait_seconds=5))
        sandbox.inject_fault(method="POST", path="/v1/solves", action="drop_after")
        a_solve = await a.ok("create_solve", solve_args("sandbox-solve-100ms", wait_seconds=5))
    assert a_solve["id"] != b_solve["id"] and a_solve["status"] == "solved"
    assert len(posts(sandbox)) == 2


# -- a hostile upstream: the sandbox behind a proxy that rewrites answers ----------------------


class Proxy(ThreadingHTTPServer):
    """Forwards to the sandbox; `rewrite[(method, path)]` may replace an answer's status and body."""

    daemon_threads = True

    def __init__(self, target: str) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.target = urlsplit(target)
        self.rewrite: dict[tuple[str, str], Callable[[int, bytes], tuple[int, bytes]]] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"


class _ProxyHandler(BaseHTTPRequestHandler):
    server: Proxy
    protocol_version = "HTTP/1.1"

    def do_request(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        upstream = http.client.HTTPConnection(self.server.target.hostname, self.server.target.port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("authorization", "content-type", "accept")}
        upstream.request(self.command, self.path, body=body or None, headers=headers)
        answer = upstream.getresponse()
        status, payload, date = answer.status, answer.read(), answer.getheader("Date")
        upstream.close()
        rewrite = self.server.rewrite.get((self.command, urlsplit(self.path).path))
        if rewrite is not None:
            status, payload = rewrite(status, payload)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        if date:
            self.send_header("Date", date)
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = do_request

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def proxy(sandbox: Sandbox) -> Iterator[Proxy]:
    server = Proxy(sandbox.url)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@asynccontextmanager
async def agent_via(proxy: Proxy, sandbox: Sandbox, tmp_path: Path) -> AsyncIterator[Agent]:
    env = sandbox_env(sandbox, NONECAP_API_BASE=proxy.url, NONECAP_STATE_DIR=str(tmp_path / "state"))
    async with Client(build_server(load_settings(env)), mode="legacy") as client:
        yield Agent(client)


def edited(change: Callable[[dict[str, Any]], Any]) -> Callable[[int, bytes], tuple[int, bytes]]:
    """A rewrite that edits the JSON answer in place (keeping its status)."""

    def rewrite(status: int, payload: bytes) -> tuple[int, bytes]:
        data = json.loads(payload)
        change(data)
        return status, json.dumps(data).encode()

    return rewrite


ODD_FIELDS = {
    "a fractional queue_ms": {"queue_ms": 1.5},
    "an unknown status": {"status": "warming_up"},
    "a numeric status": {"status": 7},
    "wrong-typed optional fields": {"error": "boom", "created_at": 12, "credits_charged": "one", "sitekey": ["x"]},
    "unknown extra fields": {"priority": {"level": 3}, "rail": "carrier-pigeon"},
}


@pytest.mark.parametrize("odd", ODD_FIELDS.values(), ids=ODD_FIELDS.keys())
async def test_a_created_solve_with_odd_fields_is_never_reported_refused(
    proxy: Proxy, sandbox: Sandbox, tmp_path: Path, odd: dict[str, Any]
) -> None:
    proxy.rewrite[("POST", "/v1/solves")] = edited(lambda data: data.update(odd))
    async with agent_via(proxy, sandbox, tmp_path) as agent:
        solve = await agent.ok("create_solve", solve_args("sandbox-solve-300ms", wait_seconds=0))
        assert solve["id"].startswith("solve_")
        assert solve["guidance"]["action"] == "poll"  # its state is read again, not guessed
        done = await agent.ok("get_solve", {"id": solve["id"], "wait_seconds": 5})
    assert done["status"] == "solved" and done["token"].startswith("P1_")
    assert len(posts(sandbox)) == 1


UNREADABLE_CREATES = {
    "no id": lambda status, payload: (status, json.dumps({**json.loads(payload), "id": None}).encode()),
    "html": lambda status, payload: (status, b"<html>ok</html>"),
    "a json array": lambda status, payload: (status, b"[]"),
}


@pytest.mark.parametrize("rewrite", UNREADABLE_CREATES.values(), ids=UNREADABLE_CREATES.keys())
async def test_an_accepted_create_without_a_readable_id_is_found_not_resent(
    proxy: Proxy, sandbox: Sandbox, tmp_path: Path, rewrite: Callable[[int, bytes], tuple[int, bytes]]
) -> None:
    proxy.rewrite[("POST", "/v1/solves")] = rewrite
    async with agent_via(proxy, sandbox, tmp_path) as agent:
        solve = await agent.ok("create_solve", solve_args("sandbox-solve-200ms", wait_seconds=5))
        listed = await agent.ok("list_solves")
    assert solve["status"] == "solved" and [s["id"] for s in listed["data"]] == [solve["id"]]
    assert len(posts(sandbox)) == 1


async def test_an_unreadable_create_that_cannot_be_matched_is_an_unknown_outcome(
    proxy: Proxy, sandbox: Sandbox, tmp_path: Path
) -> None:
    proxy.rewrite[("POST", "/v1/solves")] = UNREADABLE_CREATES["html"]
    proxy.rewrite[("GET", "/v1/solves")] = edited(lambda data: data.update(data=None))
    async with agent_via(proxy, sandbox, tmp_path) as agent:
        text = await agent.error("create_solve", solve_args("sandbox-solve-200ms", wait_seconds=5))
    assert "outcome_unknown" in text and '"action": "check_status_first"' in text and "list_solves" in text
    assert len(posts(sandbox)) == 1  # a 2xx create is never sent again


async def test_a_listing_with_null_data_is_explained(proxy: Proxy, sandbox: Sandbox, tmp_path: Path) -> None:
    proxy.rewrite[("GET", "/v1/solves")] = edited(lambda data: data.update(data=None))
    async with agent_via(proxy, sandbox, tmp_path) as agent:
        text = await agent.error("list_solves")
    assert "unexpected_response" in text and "data is not a list" in text


async def test_unreadable_listed_solves_are_skipped_not_fatal(proxy: Proxy, sandbox: Sandbox, tmp_path: Path) -> None:
    proxy.rewrite[("GET", "/v1/solves")] = edited(lambda data: data["data"].extend([None, {"id": 5}, {"queue_ms": 1.5}]))
    async with agent_via(proxy, sandbox, tmp_path) as agent:
        solve = await agent.ok("create_solve", solve_args("sandbox-solve-100ms", wait_seconds=5))
        listed = await agent.ok("list_solves")
    assert [s["id"] for s in listed["data"]] == [solve["id"]]


# -- the gate ------------------------------------------------------------------------------


async def test_our_own_concurrency_never_causes_a_429(sandbox: Sandbox, tmp_path: Path) -> None:
    """8 creates of 8 s solves, waiting 3 s each, against an account capped at 5 in flight:
    solves handed back pending keep their slots, so the rest wait locally and are refused
    cleanly (wait_for_slot) when no slot frees in time; upstream never answers 429."""
    env = sandbox_env(sandbox, NONECAP_STATE_DIR=str(tmp_path / "state"))
    results: list[Any] = []
    async with Client(build_server(load_settings(env)), mode="legacy") as client:
        agent = Agent(client)

        async def one() -> None:
            results.append(await agent.call("create_solve", solve_args("sandbox-solve-8s", wait_seconds=3)))

        started = time.monotonic()
        async with anyio.create_task_group() as group:
            for _ in range(8):
                group.start_soon(one)
        assert time.monotonic() - started < 3 + 10 + 2
    refused = [r.content[0].text for r in results if r.is_error]
    created = [r.structured_content for r in results if not r.is_error]
    assert all("concurrency_limit_exceeded" in text and '"action": "wait_for_slot"' in text for text in refused)
    assert len(created) >= 5 and len(created) + len(refused) == 8
    assert all(solve["id"].startswith("solve_") for solve in created)
    statuses = [r.status for r in posts(sandbox)]
    assert 429 not in statuses and len(statuses) == len(created)  # refused calls sent nothing


async def test_two_processes_on_one_key_share_the_slots(sandbox: Sandbox, tmp_path: Path) -> None:
    """Each server may run 5 solves, and so may the account: 4 calls each keep both under their
    own limit, so only the shared slots (the create log's rows) stop them starting a sixth
    together; upstream never says 429."""
    results: list[Any] = []
    async with two_servers(sandbox, tmp_path) as (a, b):

        async def one(agent: Agent) -> None:
            results.append(await agent.call("create_solve", solve_args("sandbox-solve-8s", wait_seconds=3)))

        async with anyio.create_task_group() as group:
            for index in range(8):
                group.start_soon(one, (a, b)[index % 2])
    refused = [r.content[0].text for r in results if r.is_error]
    assert all("concurrency_limit_exceeded" in text and '"action": "wait_for_slot"' in text for text in refused)
    assert len(results) - len(refused) >= 5
    statuses = [r.status for r in posts(sandbox)]
    assert 429 not in statuses and len(statuses) == len(results) - len(refused)


async def test_solves_that_finish_unobserved_give_their_slots_back(sandbox: Sandbox, tmp_path: Path) -> None:
    """Five solves handed back pending hold every slot; a sixth call waiting for one looks at
    them again (free reads), sees them finished, and goes ahead without a 429."""
    env = sandbox_env(sandbox, NONECAP_STATE_DIR=str(tmp_path / "state"))
    async with Client(build_server(load_settings(env)), mode="legacy") as client:
        agent = Agent(client)
        for _ in range(5):
            await agent.ok("create_solve", solve_args("sandbox-solve-1s", wait_seconds=0))
        started = time.monotonic()
        sixth = await agent.ok("create_solve", solve_args("sandbox-solve-100ms", wait_seconds=8))
    assert sixth["status"] == "solved" and time.monotonic() - started < 5
    assert [r.status for r in posts(sandbox)] == [202] * 5 + [200]


async def test_a_same_page_solve_without_a_readable_date_is_never_ruled_out(
    proxy: Proxy, sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.inject_fault(method="POST", path="/v1/solves", action="drop_after")
    proxy.rewrite[("GET", "/v1/solves")] = edited(lambda data: [item.update(created_at="yesterday") for item in data["data"]])
    async with agent_via(proxy, sandbox, tmp_path) as agent:
        text = await agent.error("create_solve", solve_args("sandbox-solve-200ms", wait_seconds=5))
    assert "outcome_unknown" in text and "created_at" in text and '"action": "check_status_first"' in text
    assert len(posts(sandbox)) == 1


async def test_the_create_log_is_private_and_an_unusable_state_dir_degrades(
    sandbox: Sandbox, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("")
    for state_dir in (state, blocked):
        env = sandbox_env(sandbox, NONECAP_STATE_DIR=str(state_dir))
        async with Client(build_server(load_settings(env)), mode="legacy") as client:
            solve = await Agent(client).ok("create_solve", solve_args("sandbox-solve-100ms", wait_seconds=5))
        assert solve["status"] == "solved"
    assert (state.stat().st_mode & 0o777, (state / "creates.sqlite3").stat().st_mode & 0o777) == (0o700, 0o600)
    assert blocked.read_text() == ""  # untouched: the server fell back to a private file
    assert "other server processes' creates are invisible to this one" in caplog.text
    assert "could not count this solve for `nonecap-mcp spend`" in caplog.text  # no limit set: counting is skipped


async def test_a_limit_that_cannot_be_counted_refuses_and_sends_nothing(sandbox: Sandbox, tmp_path: Path) -> None:
    """An operator's credit budget over an unusable state dir fails closed: a limit that cannot be checked is not held."""
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("")
    env = sandbox_env(sandbox, NONECAP_STATE_DIR=str(blocked), NONECAP_DAILY_CREDIT_BUDGET="10")
    async with Client(build_server(load_settings(env)), mode="legacy") as client:
        text = await Agent(client).error("create_solve", solve_args("sandbox-solve-100ms", wait_seconds=5))
    assert "local_state_error" in text and '"action": "check_state_dir"' in text
    assert posts(sandbox) == []


async def test_a_count_waiting_on_a_busy_store_holds_up_nothing_else(sandbox: Sandbox, tmp_path: Path) -> None:
    """The counted limits' store is used off the event loop: while a call's refund waits for the
    store (another process holds its write lock for 2 s), the server's loop keeps turning."""
    async with Client(build_server(load_settings(sandbox_env(sandbox, NONECAP_STATE_DIR=str(tmp_path)))),
                      mode="legacy") as client:
        agent = Agent(client)
        failed = await agent.ok("create_solve", solve_args("sandbox-fail-proxy_error", wait_seconds=5))
        assert failed["status"] == "failed"  # seen failed: its credit is refunded on every look
        locked, held = threading.Event(), 2.0

        def hold_the_store() -> None:
            with closing(sqlite3.connect(tmp_path / "state.sqlite3", isolation_level=None)) as other:
                other.execute("BEGIN EXCLUSIVE")
                locked.set()
                time.sleep(held)
                other.execute("COMMIT")

        threading.Thread(target=hold_the_store, daemon=True).start()
        await anyio.to_thread.run_sync(locked.wait)
        gaps: list[float] = []

        async def tick() -> None:
            last = time.monotonic()
            while True:
                await anyio.sleep(0.02)
                gaps.append(time.monotonic() - last)
                last = time.monotonic()

        async with anyio.create_task_group() as group:
            group.start_soon(tick)
            started = time.monotonic()
            again = await agent.ok("get_solve", {"id": failed["id"], "wait_seconds": 0})
            waited = time.monotonic() - started
            group.cancel_scope.cancel()
        assert again["status"] == "failed" and waited > held / 2  # the refund did wait for the store
        assert max(gaps) < held / 4, f"the event loop stalled {max(gaps):.2f} s"


async def test_only_the_stores_own_failures_are_skipped_without_a_limit(tmp_path: Path) -> None:
    """No limit set: a store that fails is logged and skipped (above), but a bug in a counting step surfaces."""
    settings = load_settings({"NONECAP_STATE_DIR": str(tmp_path)})
    async with lifespan_for(settings)(build_server(settings)) as state:
        assert await state.count(lambda quota: quota.credits_used_today()) == 0
        with pytest.raises(ZeroDivisionError):
            await state.count(lambda quota: quota.credits_used_today() // 0)


async def test_a_listing_that_may_hide_candidates_is_doubt_not_absence(proxy: Proxy, sandbox: Sandbox, tmp_path: Path) -> None:
    """Only a listing that reaches back past the first send can show every candidate."""
    sandbox.inject_fault(method="POST", path="/v1/solves", action="drop_after")
    proxy.rewrite[("GET", "/v1/solves")] = edited(lambda data: data.update(has_more=True))
    async with agent_via(proxy, sandbox, tmp_path) as agent:
        text = await agent.error("create_solve", solve_args("sandbox-solve-200ms", wait_seconds=5))
    assert "outcome_unknown" in text and "than one listing shows" in text
    assert len(posts(sandbox)) == 1
