"""The server object: it lists the shipped surface at once and loads the tool layer only when a
request needs it.

A host launches the server, lists its tools and often calls none of them, so start-up counts.
Most of our start-up used to go on importing the tool layer (the tools, their models,
validation, the rails' modules) and on the SDK building seven tools' argument and result
models from their signatures. None of that is needed to *list* the tools: `surface.json`
(in this package) holds tools/list, prompts/list, resources/list and
resources/templates/list exactly as the SDK builds them from the real tools, for each
mode, and `tests/test_schema.py` proves it byte for byte (`UPDATE_SNAPSHOTS=1` rewrites
it). The first request that needs more (tools/call, prompts/get, resources/read) registers
the real surface first; from then on the SDK's own lists answer.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from mcp.server import MCPServer
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context
from mcp.types import Prompt, Resource, ResourceTemplate, Tool
from pydantic import AnyUrl

SURFACE_FILE = Path(__file__).with_name("surface.json")
LISTS: dict[str, type[Tool | Prompt | Resource | ResourceTemplate]] = {
    "tools": Tool, "prompts": Prompt, "resources": Resource, "resourceTemplates": ResourceTemplate,
}
_STATE: ContextVar[Any] = ContextVar("nonecap_mcp_state", default=None)


def surface_mode(read_only: bool) -> str:
    """The key of a server's surface in `surface.json`."""
    return "read_only" if read_only else "default"


@functools.cache
def shipped_surface(mode: str) -> dict[str, list[dict[str, Any]]]:
    """One mode's lists as shipped, in their wire form."""
    surface: dict[str, list[dict[str, Any]]] = json.loads(SURFACE_FILE.read_text(encoding="utf-8"))[mode]
    return surface


async def bind_state(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    """Middleware: make this request's lifespan state readable where the SDK passes no Context
    (static resources). Installed with the server, since the middleware chain of a request is
    fixed before the request that builds the surface reaches it."""
    token = _STATE.set(ctx.lifespan_context)
    try:
        return await call_next(ctx)
    finally:
        _STATE.reset(token)


def current_state() -> Any:
    """The lifespan state of the request being handled (None outside a request)."""
    return _STATE.get()


class GuardedServer(MCPServer):
    """MCPServer that lists its shipped surface until a request needs the real one, and sends
    every tool call through `tools.errors.guarded_call` (arguments checked before the SDK sees
    them, results and errors redacted).

    `add_surface` registers the tools, prompts and resources; `mode` names its lists in
    `surface.json`.
    """

    def __init__(self, name: str, *, add_surface: Callable[[MCPServer], None], mode: str, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self._add_surface: Callable[[MCPServer], None] | None = add_surface
        self.mode = mode  # the key of its lists in surface.json
        self.middleware.append(bind_state)

    @property
    def surface_built(self) -> bool:
        return self._add_surface is None

    def build_surface(self) -> None:
        """Register the real tools, prompts and resources, once (importing the tool layer)."""
        if self._add_surface is not None:
            add, self._add_surface = self._add_surface, None
            add(self)

    def _shipped(self, kind: str) -> list[Any]:
        return [LISTS[kind].model_validate(item) for item in shipped_surface(self.mode)[kind]]

    async def list_tools(self) -> list[Tool]:
        return await super().list_tools() if self.surface_built else self._shipped("tools")

    async def list_prompts(self) -> list[Prompt]:
        return await super().list_prompts() if self.surface_built else self._shipped("prompts")

    async def list_resources(self) -> list[Resource]:
        return await super().list_resources() if self.surface_built else self._shipped("resources")

    async def list_resource_templates(self) -> list[ResourceTemplate]:
        return await super().list_resource_templates() if self.surface_built else self._shipped("resourceTemplates")

    def _tool_input_schema(self, name: str) -> dict[str, Any] | None:
        self.build_surface()
        return super()._tool_input_schema(name)

    async def get_prompt(self, name: str, arguments: dict[str, Any] | None = None,
                         context: Context[Any, Any] | None = None) -> Any:
        self.build_surface()
        return await super().get_prompt(name, arguments, context)

    async def read_resource(self, uri: AnyUrl | str, context: Context[Any, Any] | None = None) -> Any:
        self.build_surface()
        return await super().read_resource(uri, context)

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None) -> Any:
        self.build_surface()
        from nonecap_mcp.tools.errors import guarded_call  # loaded with the tool layer, just built

        return await guarded_call(self, name, arguments, functools.partial(super().call_tool, name, arguments, context))
