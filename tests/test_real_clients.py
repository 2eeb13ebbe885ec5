"""Clients of the field against `serve --sandbox`: the MCP Inspector CLI and the TypeScript SDK.

Both are pinned in tests/js_clients (package.json + lock), with the Node >= 22.19 the
Inspector needs taken from the npm registry's `node` package, and installed on first use.
The SDK client validates every structuredContent against the tool's outputSchema itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import CAPTURED, ROOT
from host_launch import host_env
from npm_packages import npm_ci

from nonecap_mcp.tools.server import shipped_surface

JS_DIR = ROOT / "tests" / "js_clients"
TOOLS = {tool["name"] for tool in shipped_surface("default")["tools"]}
SERVER = [sys.executable, "-m", "nonecap_mcp", "serve", "--sandbox"]
SITE = ["type=hcaptcha", "url=https://a.example/login", "wait_seconds=5"]


@pytest.fixture(scope="module")
def node() -> Path:
    """The Node 22 binary from tests/js_clients, with the clients installed next to it."""
    npm_ci(JS_DIR, "the MCP Inspector CLI and TypeScript SDK client checks")
    binary = JS_DIR / "node_modules" / "node" / "bin" / "node"
    if not binary.exists():
        pytest.fail(f"npm ci left no {binary}: the `node` package's install script must be allowed (allowScripts)")
    major, minor, _ = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout.strip("v\n").split(".")
    assert (int(major), int(minor)) >= (22, 19), "the Inspector CLI needs Node >= 22.19"
    return binary


def run_node(node: Path, *args: str | Path, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    """Run a client under ``node``; the server it spawns gets a host's environment."""
    done = subprocess.run([node, *args], capture_output=True, text=True, timeout=timeout, cwd=JS_DIR, env=host_env([node.parent]))
    CAPTURED.extend([done.stdout, done.stderr])  # the leak check reads whatever the clients saw
    return done


def inspector(node: Path, *args: str) -> subprocess.CompletedProcess[str]:
    launcher = JS_DIR / "node_modules" / "@modelcontextprotocol" / "inspector" / "clients" / "launcher" / "build" / "index.js"
    keyring = "PYTHON_KEYRING_BACKEND=keyring.backends.null.Keyring"
    return run_node(node, launcher, "--cli", *args, "-e", keyring, "--", *SERVER)


def test_inspector_cli_lists_every_tool_with_strict_schema_checks(node: Path) -> None:
    done = inspector(node, "--method", "tools/list", "--strict")
    assert done.returncode == 0, done.stderr  # --strict exits 6 on a schema portability error
    assert {tool["name"] for tool in json.loads(done.stdout)["tools"]} == TOOLS


@pytest.mark.parametrize(("rail", "charged"), [("credits", {"credits_charged": 1}), ("x402", {"cost_usd": "0.012"})])
def test_inspector_cli_creates_an_unpaid_and_a_paid_solve(node: Path, rail: str, charged: dict[str, Any]) -> None:
    done = inspector(node, "--method", "tools/call", "--tool-name", "create_solve",
                     "--tool-arg", *SITE, "sitekey=sandbox-solve-100ms", f"rail={rail}")
    assert done.returncode == 0, done.stdout + done.stderr
    solve = json.loads(done.stdout)["structuredContent"]
    assert solve["status"] == "solved" and solve["rail"] == rail and solve["token"].startswith("P1_SANDBOX_")
    assert charged.items() <= solve.items()


def test_typescript_sdk_validates_the_structured_output_of_every_tool(node: Path) -> None:
    server = {"command": SERVER[0], "args": SERVER[1:], "env": {"PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"}}
    done = run_node(node, JS_DIR / "sdk_client.mjs", json.dumps(server))
    assert done.returncode == 0, done.stderr  # callTool throws on a result its outputSchema refuses
    report = json.loads(done.stdout)
    assert set(report["tools"]) == TOOLS and report["controlRejected"], "the SDK's validator must reject a malformed solve"
    calls = {call["label"]: call for call in report["calls"]}
    assert {call["tool"] for call in report["calls"]} == TOOLS
    assert all(call["validated"] == 1 for call in report["calls"] if not call["isError"]), report["calls"]
    outcomes = {label: (call["status"], call["action"]) for label, call in calls.items() if call["status"]}
    assert outcomes == {
        "solved": ("solved", None), "get solved": ("solved", None), "failed": ("failed", "fix_proxy"),
        "pending": ("pending", "poll"), "get pending": ("pending", "poll"), "cancel": ("cancelled", "none"),
        "x402": ("solved", None), "get x402": ("solved", None),
    }
    assert calls["bad id"]["isError"] and "param: id" in calls["bad id"]["text"]
    assert report["progress"] and all(p["total"] == 2 and p["message"] for p in report["progress"])
