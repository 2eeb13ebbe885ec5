"""What every tool call shares for the life of the server process: settings and clients.

Built in the MCP lifespan, so one pooled HTTP client serves every call, and the sandbox
(when asked for) is started before the first call and stopped after the last.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from mcp.server import MCPServer

from nonecap_mcp.config import Settings
from nonecap_mcp.credentials import CredentialError, Secret, resolve_api_key
from nonecap_mcp.credits_api import CreditsAPI, KeyProvider
from nonecap_mcp.errors import ConfigurationError
from nonecap_mcp.retry import RetryPolicy

log = logging.getLogger("nonecap_mcp")


@dataclass
class AppState:
    """Lifespan state handed to tools as `ctx.request_context.lifespan_context`."""

    settings: Settings
    credits: CreditsAPI
    sandbox_url: str | None


def key_provider(settings: Settings, sandbox_key: str | None) -> KeyProvider:
    """Resolves the API key on first use (never at start-up) and caches only a success."""
    cached: list[Secret] = []

    async def provide() -> Secret:
        if sandbox_key is not None:
            return Secret(sandbox_key)
        if not cached:
            try:
                cached.append(await resolve_api_key(settings.env, timeout=settings.keyring_timeout))
            except CredentialError as exc:
                raise ConfigurationError("missing_api_key", str(exc)) from None
        return cached[0]

    return provide


def lifespan_for(settings: Settings):  # noqa: ANN201 - the SDK's lifespan type is a generic callable
    """The MCP lifespan: start the sandbox if asked, open the API client, close both at exit."""

    @asynccontextmanager
    async def lifespan(_server: MCPServer) -> AsyncIterator[AppState]:
        sandbox = None
        base, sandbox_key = settings.api_base, None
        if settings.sandbox:
            from nonecap_mcp.sandbox import Sandbox

            sandbox = Sandbox().start()
            base, sandbox_key = sandbox.url, sandbox.api_key
            log.warning("sandbox mode: NoneCap emulator on %s; nothing leaves this machine", base)
        credits = CreditsAPI(
            base,
            key_provider(settings, sandbox_key),
            retry=RetryPolicy(max_retries=settings.max_retries),
            max_concurrency=settings.max_concurrency,
        )
        try:
            yield AppState(settings=settings, credits=credits, sandbox_url=sandbox.url if sandbox else None)
        finally:
            await credits.aclose()
            if sandbox is not None:
                sandbox.stop()

    return lifespan
