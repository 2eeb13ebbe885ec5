"""Starting a server command the way an MCP host does: a subprocess with the host's small
environment, spoken to over stdio through the real MCP client."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from conftest import SECRETS, Agent
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

# What a package installer on this machine needs to reach its registry (certificates, proxies,
# uv's own settings); a host's environment carries the same, since the user's tools work there.
_NETWORK_PREFIXES = ("SSL_CERT_", "UV_")
_NETWORK_NAMES = {"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "no_proxy", "all_proxy"}


def host_env(path: Sequence[str | Path] = (), **extra: str) -> dict[str, str]:
    """A desktop host's environment: a short PATH, HOME, no DBUS, the null keyring, network settings."""
    network = {k: v for k, v in os.environ.items() if k in _NETWORK_NAMES or k.startswith(_NETWORK_PREFIXES)}
    return network | {
        "PATH": os.pathsep.join([*map(str, path), os.defpath.lstrip(os.pathsep)]),
        "HOME": os.environ.get("HOME", "/tmp"), "XDG_STATE_HOME": os.environ.get("XDG_STATE_HOME", ""),
        "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",  # the developer's real keyring never feeds a test
        **extra,
    }


@asynccontextmanager
async def launched(
    command: Sequence[str], env: dict[str, str], errlog: Path, *, cwd: Path | None = None, mode: str = "legacy"
) -> AsyncIterator[Agent]:
    """Spawn ``command`` with exactly ``env``; its stderr goes to ``errlog``, checked for secrets."""
    params = StdioServerParameters(command=command[0], args=list(command[1:]), env=env, cwd=str(cwd) if cwd else None)
    with errlog.open("w") as err:
        async with Client(stdio_client(params, errlog=err), mode=mode) as client:
            yield Agent(client)
    text = errlog.read_text()
    assert not any(secret in text for secret in SECRETS), "a secret leaked into the server's stderr"
