"""Throughput of the team server: tool calls per second and p50/p99 latency over streamable HTTP.

1 and 3 `serve --http` replicas against the sandbox, many concurrent SDK client sessions,
round-robin across replicas from the client side. Figures go into the benchmark's extra_info
(run with `--benchmark-enable -n 0 -s` to see the printed line). With benchmarks disabled (the
normal suite) the one-replica case runs a smoke round of one call per session, two sessions at
once, to prove the harness; the three-replica case is only a measurement there (its replicas
would cost ~4.5 s of CPU to start, and what three replicas share is proven in test_replicas).
"""

from __future__ import annotations

import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from child_process import child_env
from conftest import sandbox_env
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from nonecap_mcp.clients import ClientRegistry
from nonecap_mcp.config import load_settings
from nonecap_mcp.sandbox import Sandbox
from nonecap_mcp.store import database_for

SESSIONS, CALLS_PER_SESSION = 12, 5  # the measured load (--benchmark-enable)
SMOKE_SESSIONS = 2  # benchmarks disabled: one call per session proves the harness, concurrency included


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _replicas(env: dict[str, str], count: int) -> Iterator[list[str]]:
    processes, urls = [], []
    try:
        for _ in range(count):
            port = _free_port()
            processes.append(subprocess.Popen([sys.executable, "-m", "nonecap_mcp", "serve", "--http", f"127.0.0.1:{port}"],
                                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            urls.append(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 30
        with httpx.Client(timeout=1) as http:  # one for every poll: each new client loads the CA bundle (~35 ms of CPU)
            for url, process in zip(urls, processes):
                while True:
                    try:
                        if http.get(f"{url}/readyz").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    assert process.poll() is None and time.monotonic() < deadline, "serve --http did not come up"
                    time.sleep(0.1)
        yield urls
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)


def _load(urls: list[str], token: str, tool: str, arguments: dict[str, Any], sessions: int, calls: int) -> dict[str, float]:
    """`sessions` concurrent SDK sessions round-robin over `urls`, `calls` calls each: throughput and latency."""
    latencies: list[float] = []

    async def session(n: int) -> None:
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=httpx2.Timeout(30.0, read=60.0))
        async with Client(streamable_http_client(f"{urls[n % len(urls)]}/mcp", http_client=http)) as client:
            for _ in range(calls):
                started = time.perf_counter()
                result = await client.call_tool(tool, arguments)
                latencies.append(time.perf_counter() - started)
                assert not result.is_error, result

    async def go() -> float:
        started = time.perf_counter()
        async with anyio.create_task_group() as group:
            for n in range(sessions):
                group.start_soon(session, n)
        return time.perf_counter() - started

    elapsed = anyio.run(go)
    latencies.sort()
    return {"calls_per_s": len(latencies) / elapsed, "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]}


@pytest.mark.parametrize("replicas", [1, 3])
@pytest.mark.parametrize("tool,arguments", [("get_balance", {})])
def test_bench_http_throughput(benchmark: Any, _sandbox_server: Sandbox, tmp_path: Path, replicas: int,
                               tool: str, arguments: dict[str, Any]) -> None:
    if benchmark.disabled and replicas > 1:
        pytest.skip("a measurement: run with --benchmark-enable (the one-replica case is the suite's smoke run)")
    env = child_env(**sandbox_env(_sandbox_server, NONECAP_STATE_DIR=str(tmp_path)))
    token = ClientRegistry(database_for(load_settings(env))).add("bench")  # where the replicas will look
    load = (SMOKE_SESSIONS, 1) if benchmark.disabled else (SESSIONS, CALLS_PER_SESSION)
    for urls in _replicas(env, replicas):
        figures = benchmark.pedantic(_load, args=(urls, token, tool, arguments, *load), rounds=1, iterations=1)
        benchmark.extra_info.update(figures)
        print(f"\n{replicas} replica(s) {tool}: {figures['calls_per_s']:.0f} calls/s, "
              f"p50 {figures['p50_ms']:.0f} ms, p99 {figures['p99_ms']:.0f} ms")
