"""`nonecap-mcp demo`: the whole product, offline, in one command.

Starts this server over stdio in sandbox mode, exactly as a desktop host would, and drives
it through a real MCP client the way an agent does, printing each call and its result.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, TextIO

import anyio

STEPS: list[tuple[str, str, dict[str, Any]]] = [
    ("What does a solve cost?", "get_pricing", {}),
    ("Balance before we start (the sandbox gives 100 free credits)", "get_balance", {}),
    ("Solve an hCaptcha and wait for the token", "create_solve",
     {"type": "hcaptcha", "sitekey": "sandbox-solve-1s", "url": "https://demo.example/login", "wait_seconds": 10}),
    ("A failure: the challenge never loaded (bad proxy IP) - note the guidance and the refund", "create_solve",
     {"type": "hcaptcha", "sitekey": "sandbox-fail-challenge_not_loaded", "url": "https://demo.example/login", "wait_seconds": 10}),
    ("A slow solve that outlasts our wait comes back pending", "create_solve",
     {"type": "hcaptcha", "sitekey": "sandbox-hang", "url": "https://demo.example/login", "wait_seconds": 1}),
    ("Pay per success instead: an x402 solve paid in (sandbox) USDC from the local wallet", "create_solve",
     {"type": "hcaptcha", "sitekey": "sandbox-solve-1s", "url": "https://demo.example/login", "wait_seconds": 10, "rail": "x402"}),
    ("An x402 failure costs nothing: no settlement, guidance instead", "create_solve",
     {"type": "hcaptcha", "sitekey": "sandbox-fail-token_not_granted", "url": "https://demo.example/login", "wait_seconds": 10, "rail": "x402"}),
]


def _without_nulls(value: Any) -> Any:
    """The result as an agent reads it, minus empty fields, so the demo stays readable."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _show(out: TextIO, title: str, name: str, args: dict[str, Any], result: Any) -> None:
    out.write(f"\n== {title}\n-> {name}({json.dumps(args)})\n")
    if result.is_error:
        out.write(f"<- tool error:\n   {result.content[0].text.replace(chr(10), chr(10) + '   ')}\n")
        return
    body = _without_nulls(result.structured_content or {})
    out.write("<- " + json.dumps(body, indent=2).replace("\n", "\n   ") + "\n")


async def _drive(out: TextIO) -> None:
    from mcp import Client, StdioServerParameters
    from mcp.client.stdio import stdio_client

    env = {k: v for k, v in os.environ.items() if k in ("HOME", "PATH", "LANG", "TMPDIR")}
    params = StdioServerParameters(command=sys.executable, args=["-m", "nonecap_mcp", "serve", "--sandbox"], env=env)
    with open(os.devnull, "w") as quiet:
        async with Client(stdio_client(params, errlog=quiet), mode="legacy") as client:
            await _session(client, out)
    out.write(
        "\nDone. Next: add it to your host with one command (`--dry-run` shows the change first; `--sandbox` to keep\n"
        "trying it offline):\n"
        "   nonecap-mcp install claude-desktop     # or claude-code, cursor, vscode, windsurf\n"
        "then `nonecap-mcp auth login` (credits) or `nonecap-mcp wallet create` (x402), and `nonecap-mcp doctor`.\n"
    )


async def _session(client: Any, out: TextIO) -> None:
    """The agent's side of the demo: list, solve, fail, list, cancel, balance."""
    tools = (await client.list_tools()).tools
    out.write("nonecap-mcp demo: a real MCP client talking to `nonecap-mcp serve --sandbox` over stdio.\n")
    out.write("Nothing leaves this machine; tokens are sandbox tokens.\n")
    out.write("\n== tools/list\n" + "".join(f"   {t.name:<13} {(t.description or '').splitlines()[0]}\n" for t in tools))
    pending_id = None
    for title, name, args in STEPS:
        result = await client.call_tool(name, args)
        _show(out, title, name, args, result)
        if name == "create_solve" and (result.structured_content or {}).get("status") in ("pending", "solving"):
            pending_id = result.structured_content["id"]
    follow_ups: list[tuple[str, str, dict[str, Any]]] = [
        ("Recent solves, newest first", "list_solves", {"limit": 5}),
        ("We no longer need the slow one: cancel it (its credit is refunded)", "cancel_solve", {"id": pending_id}),
        ("Cancelling it again is a conflict, with guidance", "cancel_solve", {"id": pending_id}),
        ("x402 solves are kept in a local ledger", "list_solves", {"rail": "x402", "limit": 5}),
        ("Balance after: one credit and one x402 price spent; the free x402 failure's authorization is only held until it expires",
         "get_balance", {}),
    ]
    for title, name, args in follow_ups:
        _show(out, title, name, args, await client.call_tool(name, args))


def run_demo(out: TextIO = sys.stdout) -> int:
    """Run the scripted agent session; returns the process exit code."""
    anyio.run(_drive, out)
    return 0
