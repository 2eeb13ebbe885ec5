"""How each tool is declared to hosts: its title, its behaviour hints and a clean description."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from mcp.server import MCPServer
from mcp.server.mcpserver.tools import Tool
from mcp.types import ToolAnnotations

from nonecap_mcp.tools.schemas import lean

# Only what differs from the spec's defaults (not read-only, destructive, not idempotent, open
# world), plus readOnlyHint always, which hosts show: every agent reads these on every session.
# A read-only tool's destructive and idempotent hints are meaningless, so they are left out.
READ_ONLY = ToolAnnotations(read_only_hint=True)
SPENDS = ToolAnnotations(read_only_hint=False, destructive_hint=False)
IDEMPOTENT_CHANGE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True)

_BUILT: dict[tuple[Callable[..., Any], str, str], Tool] = {}


def add_tool(server: MCPServer, fn: Callable[..., Any], *, title: str, annotations: ToolAnnotations) -> None:
    """Register `fn`, with its docstring dedented (hosts show the description verbatim) and
    lean schemas (arguments and results are still validated by the SDK against `fn`'s types).

    The SDK's `Tool` (argument and result models built from the signature, most of what
    registering costs) depends on `fn`, `title` and `annotations` alone and holds no state,
    so it is built once per process and shared by every server registering it there (a
    process building many servers, e.g. each test its own, would otherwise rebuild it each time)."""
    key = (fn, title, annotations.model_dump_json())
    tool = _BUILT.get(key)
    if tool is None:
        tool = _BUILT[key] = _build(fn, title, annotations)
    server._tool_manager._tools[tool.name] = tool  # the SDK offers no public way to add a built Tool


def _build(fn: Callable[..., Any], title: str, annotations: ToolAnnotations) -> Tool:
    """The SDK's Tool for `fn` (as `MCPServer.tool` builds it), its published schemas made lean."""
    tool = Tool.from_function(fn, title=title, annotations=annotations, description=inspect.cleandoc(fn.__doc__ or ""))
    tool.parameters = lean(tool.parameters, nullable=False)
    if tool.fn_metadata.output_schema is not None:
        tool.fn_metadata.output_schema = lean(tool.fn_metadata.output_schema, nullable=True)
    return tool
