"""The team server: the same MCP tools over streamable HTTP, for several agents at once.

Stateless (`stateless_http=True`): every request carries all it needs, so any replica behind a
load balancer can answer any request, and progress still streams back in the POST's SSE answer.
Every `/mcp` request needs `Authorization: Bearer <token>` of a client registered with
`nonecap-mcp clients add`; the client's identity rides in the ASGI scope, where the tools read it
for per-client limits. Host and Origin are checked (DNS-rebinding protection); TLS belongs to
the reverse proxy in front.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

import anyio
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ListToolsResult

from nonecap_mcp import metrics
from nonecap_mcp.clients import ClientRegistry
from nonecap_mcp.config import Settings
from nonecap_mcp.errors import NoneCapError
from nonecap_mcp.tools import build_server
from nonecap_mcp.tools.caller import CLIENT_SCOPE_KEY, request_client
from nonecap_mcp.tools.errors import error_text
from nonecap_mcp.tools.server import GuardedServer

if TYPE_CHECKING:
    import uvicorn

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]
MCP_PATH = "/mcp"
UNAUTHORIZED = json.dumps({"error": "unauthorized", "message": "Send Authorization: Bearer <token> of a client "
                           "registered with `nonecap-mcp clients add NAME`."}).encode()


class TeamServer(GuardedServer):
    """The MCP server as HTTP clients see it: a read-only client neither sees nor runs a tool
    that can spend or change anything (the same split `--read-only` makes for a whole server)."""

    def _writes(self, name: str) -> bool:
        tool = self._tool_manager.get_tool(name)
        return tool is not None and not (tool.annotations and tool.annotations.read_only_hint)

    async def _handle_list_tools(self, ctx: Any, params: Any) -> ListToolsResult:
        result = await super()._handle_list_tools(ctx, params)
        client = request_client(ctx)
        if client is not None and client.read_only:
            result.tools = [tool for tool in result.tools if not self._writes(tool.name)]
        return result

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None) -> Any:
        started, outcome = time.monotonic(), "error"
        try:
            client = request_client(context.request_context) if context is not None else None
            if client is not None and client.read_only and self._writes(name):
                outcome = "refused"
                raise ToolError(error_text(NoneCapError(
                    "read_only_client", f"Client {client.name} is read-only; {name} can spend or change things.")))
            result = await super().call_tool(name, arguments, context)
            outcome = "error" if getattr(result, "is_error", False) else "ok"
            return result
        finally:
            # Only our own tools' names become labels: a client calling made-up names must not
            # grow /metrics (and this process's memory) by a series per name.
            known = self._tool_manager.get_tool(name) is not None
            metrics.tool_call(name if known else "unknown", outcome, time.monotonic() - started)


def security_for(host: str, extra_hosts: tuple[str, ...] = ()) -> TransportSecuritySettings:
    """Accept only our own Host names (and browsers only from the same origins), so a web page
    cannot rebind a hostile DNS name to this server."""
    hosts = {host, "127.0.0.1", "localhost", "[::1]", *extra_hosts}
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[f"{name}:*" for name in sorted(hosts)] + sorted(hosts),
        allowed_origins=[f"{scheme}://{name}:*" for name in sorted(hosts) for scheme in ("http", "https")]
        + [f"{scheme}://{name}" for name in sorted(hosts) for scheme in ("http", "https")],
    )


class BearerAuth:
    """ASGI middleware: `/mcp` only for registered clients; 401 with WWW-Authenticate otherwise."""

    def __init__(self, app: ASGIApp, registry: ClientRegistry) -> None:
        self.app = app
        self.registry = registry

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(MCP_PATH):
            return await self.app(scope, receive, send)
        header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        scheme, _, token = header.partition(" ")
        client = None
        if scheme.lower() == "bearer" and token.strip():
            client = await anyio.to_thread.run_sync(self.registry.verify, token.strip())
        if client is None:
            await send({"type": "http.response.start", "status": 401, "headers": [
                (b"content-type", b"application/json"),
                (b"www-authenticate", b'Bearer realm="nonecap-mcp", error="invalid_token"'),
            ]})
            return await send({"type": "http.response.body", "body": UNAUTHORIZED})
        scope[CLIENT_SCOPE_KEY] = client
        return await self.app(scope, receive, send)


def http_app(settings: Settings, *, host: str, registry: ClientRegistry, allowed_hosts: tuple[str, ...] = ()) -> ASGIApp:
    """The ASGI app of `serve --http`: MCP at /mcp, /healthz and /readyz beside it."""
    server = build_server(settings, server_class=TeamServer, eager=True)

    @server.custom_route("/healthz", methods=["GET"])
    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    @server.custom_route("/readyz", methods=["GET"])
    async def readyz(_request: Request) -> Response:
        try:
            await anyio.to_thread.run_sync(registry.ping)
        except Exception as exc:  # any store failure means: send no traffic here
            return JSONResponse({"status": "unavailable", "store": type(exc).__name__}, status_code=503)
        return JSONResponse({"status": "ready"})

    @server.custom_route("/metrics", methods=["GET"])
    async def metrics_endpoint(_request: Request) -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    metrics.enable()
    app = server.streamable_http_app(stateless_http=True, transport_security=security_for(host, allowed_hosts), host=host)
    return BearerAuth(app, registry)


def http_server(settings: Settings, address: str, registry: ClientRegistry, allowed_hosts: tuple[str, ...] = ()) -> uvicorn.Server:
    """The team server on HOST:PORT, built and ready to `run()` until interrupted."""
    import uvicorn

    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    app = http_app(settings, host=host, registry=registry, allowed_hosts=allowed_hosts)
    return uvicorn.Server(uvicorn.Config(app, host=host, port=int(port), log_config=None, access_log=False, lifespan="on"))
