"""Benchmarks: start-up, per-call overhead and upstream requests per solve.

Run with `python -m pytest tests/bench --benchmark-enable -n 0`; in the normal suite (benchmarks
disabled) each runs once as a smoke test. Numbers land in the benchmark table, and the
request counts in each benchmark's extra_info.
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from conftest import ROOT, STATE_DIR, sandbox_env
from mcp import Client, StdioServerParameters

from nonecap_mcp.config import load_settings
from nonecap_mcp.sandbox import Sandbox
from nonecap_mcp.tools import build_server

def _spawn_and_list_tools(module: str = "nonecap_mcp") -> tuple[int, float]:
    """Spawn `python -m module` as a host does; its tool count and the seconds until tools/list answered."""
    async def go() -> tuple[int, float]:
        env = {"PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring", "NONECAP_STATE_DIR": str(STATE_DIR[-1])}
        params = StdioServerParameters(command=sys.executable, args=["-m", module], cwd=str(ROOT), env=env)
        started = time.perf_counter()
        async with Client(params, mode="legacy") as client:
            count = len((await client.list_tools()).tools)
            return count, time.perf_counter() - started

    return anyio.run(go)


def test_bench_startup_to_tools_list(benchmark: Any) -> None:
    """Spawn → initialize → tools/list answered, as a host does at launch."""
    if benchmark.disabled:  # the smoke run of test_bench_startup_beside_the_reference_server spawns us the same way
        pytest.skip("a measurement: run with --benchmark-enable (tests/bench's command in the README)")
    assert benchmark.pedantic(_spawn_and_list_tools, rounds=5, iterations=1)[0] == 7


def test_bench_startup_beside_the_reference_server(benchmark: Any) -> None:
    """The same measurement for us and for `mcp-server-time` (the official reference server, on
    the same SDK and interpreter), one after the other in alternating order, so both see the same
    machine: extra_info holds each side's median and the median of the per-pair ratios, the
    figure the README states."""
    pytest.importorskip("mcp_server_time")
    pairs: list[tuple[float, float]] = []

    def pair() -> None:
        first_ours = len(pairs) % 2 == 0
        runs = [_spawn_and_list_tools(m) for m in (("nonecap_mcp", "mcp_server_time") if first_ours else ("mcp_server_time", "nonecap_mcp"))]
        (ours, ours_s), (ref, ref_s) = runs if first_ours else runs[::-1]
        assert (ours, ref) == (7, 2)
        pairs.append((ours_s, ref_s))

    benchmark.pedantic(pair, rounds=10, iterations=1)
    benchmark.extra_info.update({
        "ours_median_s": round(statistics.median(o for o, _ in pairs), 3),
        "reference_median_s": round(statistics.median(r for _, r in pairs), 3),
        "ratio_median": round(statistics.median(o / r for o, r in pairs), 3),
    })


# What a host sends at launch, all at once.
LAUNCH_REQUESTS = "".join(json.dumps(message) + "\n" for message in (
    {"jsonrpc": "2.0", "id": 1, "method": "initialize",
     "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}},
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
    {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
))


def _callgrind(module: str, out_dir: Path) -> tuple[int, int, int]:
    """`python -m module` under callgrind, sent LAUNCH_REQUESTS; stdin is closed once tools/list is
    answered (closed earlier, a server may exit without answering). (tools listed, instructions of
    the whole process, of its interpreter teardown at exit)."""
    env = {"PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring", "NONECAP_STATE_DIR": str(out_dir / "state"),
           "HOME": str(out_dir), "PYTHONHASHSEED": "0"}
    out_file = out_dir / module
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}", sys.executable, "-m", module]
    with subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True) as process:
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(LAUNCH_REQUESTS)
        process.stdin.flush()
        answers = map(json.loads, process.stdout)
        listed = next(len(answer["result"]["tools"]) for answer in answers if answer.get("id") == 2)
        process.stdin.close()
        assert process.wait(timeout=300) == 0
    total = int(re.search(r"^totals: (\d+)$", out_file.read_text(), re.M).group(1))  # type: ignore[union-attr]
    annotated = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", str(out_file)],
                               capture_output=True, text=True, check=True).stdout
    teardown = next(int(line.split()[0].replace(",", "")) for line in annotated.splitlines() if ":Py_FinalizeEx " in line)
    return listed, total, teardown


def test_bench_startup_instructions_beside_the_reference_server(benchmark: Any, tmp_path: Path) -> None:
    """Spawn -> initialize -> tools/list answered -> exit, for us and for `mcp-server-time`, counted in
    instructions (callgrind): blind to the machine's load, where wall clock on a shared box is noise.
    Both with compiled `.pyc`, as after `pip install`. extra_info holds each side's total, the same
    without the interpreter's teardown at exit (closer to what a host waits for), and both ratios;
    neither may exceed 1.0 (the issue's bar)."""
    if benchmark.disabled:  # two callgrind runs are ~1.5 min of CPU: measured by the benchmark command, not the suite
        pytest.skip("a measurement: run with --benchmark-enable (tests/bench's command in the README)")
    reference = pytest.importorskip("mcp_server_time")
    if not (shutil.which("valgrind") and shutil.which("callgrind_annotate")):
        pytest.skip("valgrind (callgrind) is not installed: apt-get install valgrind")
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "server"), str(ROOT / "tools"),
                    str(Path(reference.__file__).parent)], check=True)
    figures: dict[str, tuple[int, int, int]] = {}

    def measure() -> None:  # one after the other: two at once would starve the suite's other worker
        figures.update({module: _callgrind(module, tmp_path) for module in ("nonecap_mcp", "mcp_server_time")})

    benchmark.pedantic(measure, rounds=1, iterations=1)
    (ours_tools, ours, ours_teardown), (ref_tools, ref, ref_teardown) = figures["nonecap_mcp"], figures["mcp_server_time"]
    assert (ours_tools, ref_tools) == (7, 2)
    ratio, start_up_ratio = ours / ref, (ours - ours_teardown) / (ref - ref_teardown)
    benchmark.extra_info.update({
        "ours_instructions": ours, "reference_instructions": ref, "ratio": round(ratio, 4),
        "ours_without_teardown": ours - ours_teardown, "reference_without_teardown": ref - ref_teardown,
        "ratio_without_teardown": round(start_up_ratio, 4),
    })
    assert ratio <= 1.0 and start_up_ratio <= 1.0, benchmark.extra_info


@pytest.fixture
def portal_client(sandbox: Sandbox) -> Iterator[tuple[BlockingPortal, Client]]:
    with ExitStack() as stack:
        portal = stack.enter_context(start_blocking_portal())
        client = stack.enter_context(portal.wrap_async_context_manager(
            Client(build_server(load_settings(sandbox_env(sandbox))), mode="legacy")))
        yield portal, client


def test_bench_call_overhead_local_tool(benchmark: Any, portal_client: tuple[BlockingPortal, Client]) -> None:
    """get_pricing touches no network on the credits rail... except the x402 table, which is cached."""
    portal, client = portal_client
    result = benchmark(lambda: portal.call(client.call_tool, "get_pricing", {}))
    assert not result.is_error


def test_bench_call_overhead_get_solve(benchmark: Any, sandbox: Sandbox, portal_client: tuple[BlockingPortal, Client]) -> None:
    """One tool call = one upstream GET against the local sandbox: the client's own overhead."""
    portal, client = portal_client
    solve = portal.call(client.call_tool, "create_solve", {"type": "hcaptcha", "sitekey": "sandbox-solve-0ms", "url": "https://a.example/", "wait_seconds": 0})
    sandbox.clear_requests()
    result = benchmark(lambda: portal.call(client.call_tool, "get_solve", {"id": solve.structured_content["id"], "wait_seconds": 0}))
    assert not result.is_error
    calls = max(1, benchmark.stats.stats.rounds if benchmark.stats else 1)
    benchmark.extra_info["upstream_requests_per_call"] = len(sandbox.requests) / calls


@pytest.mark.parametrize(("sitekey", "wait", "expected"), [("sandbox-solve-300ms", 5, 1), ("sandbox-solve-1500ms", 1, 2)])
def test_bench_requests_per_solve(benchmark: Any, sandbox: Sandbox, portal_client: tuple[BlockingPortal, Client],
                                  sitekey: str, wait: int, expected: int) -> None:
    """A solve that finishes within the wait costs one request; one that outlasts it, one more get_solve."""
    portal, client = portal_client

    def solve() -> int:
        sandbox.clear_requests()
        result = portal.call(client.call_tool, "create_solve", {"type": "hcaptcha", "sitekey": sitekey, "url": "https://a.example/", "wait_seconds": wait})
        while result.structured_content["status"] not in ("solved", "failed", "expired", "cancelled"):
            result = portal.call(client.call_tool, "get_solve", {"id": result.structured_content["id"], "wait_seconds": 10})
        return len(sandbox.requests)

    requests = benchmark.pedantic(solve, rounds=3, iterations=1)
    benchmark.extra_info["upstream_requests_per_solve"] = requests
    assert requests == expected
