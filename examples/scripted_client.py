"""Drive nonecap-mcp from your own code: a minimal MCP client over stdio.

    python examples/scripted_client.py                 # against the offline sandbox
    python examples/scripted_client.py --live SITEKEY URL   # against NoneCap (needs a key)

It solves one hCaptcha, keeps waiting with get_solve while the result is pending, and
acts on the guidance of a failure instead of blindly retrying.
"""

from __future__ import annotations

import argparse
import sys

import anyio
from mcp import Client, StdioServerParameters


async def solve(live: bool, sitekey: str, url: str) -> int:
    args = ["-m", "nonecap_mcp"] + ([] if live else ["serve", "--sandbox"])
    async with Client(StdioServerParameters(command=sys.executable, args=args), mode="legacy") as client:
        result = await client.call_tool("create_solve", {"type": "hcaptcha", "sitekey": sitekey, "url": url})
        while not result.is_error and result.structured_content["status"] in ("pending", "solving"):
            result = await client.call_tool("get_solve", {"id": result.structured_content["id"], "wait_seconds": 25})
        if result.is_error:
            print(result.content[0].text, file=sys.stderr)
            return 1
        solve = result.structured_content
        if solve["status"] != "solved":
            print(f"{solve['status']}: next step {solve['guidance']['action']} - {solve['guidance']['hint']}", file=sys.stderr)
            return 1
        print(solve["token"])
        return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--live", action="store_true", help="use the real API instead of the sandbox")
    parser.add_argument("sitekey", nargs="?", default="sandbox-solve-2s")
    parser.add_argument("url", nargs="?", default="https://demo.example/login")
    ns = parser.parse_args()
    return anyio.run(solve, ns.live, ns.sitekey, ns.url)


if __name__ == "__main__":
    raise SystemExit(main())
