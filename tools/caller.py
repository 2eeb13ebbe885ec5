"""Who is calling: the registered client of a team-server request, None over stdio.

Kept apart from `tools.http` so the tools can read it without importing the HTTP stack
(the stdio server never loads starlette's app or uvicorn)."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from nonecap_mcp.clients import Client

CLIENT_SCOPE_KEY = "nonecap.client"


def client_of(scope: MutableMapping[str, Any] | None) -> Client | None:
    """The authenticated client of an HTTP request's ASGI scope (set by `tools.http.BearerAuth`)."""
    return None if scope is None else scope.get(CLIENT_SCOPE_KEY)


def request_client(request_context: Any) -> Client | None:
    """The client behind an MCP request context; None over stdio or in-memory."""
    request = getattr(request_context, "request", None)
    return client_of(getattr(request, "scope", None))
