"""How each tool is declared to hosts: its title, its behaviour hints and a clean description."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from mcp.server import MCPServer
from mcp.types import ToolAnnotations

from nonecap_mcp.tools.schemas import lean

# Only what differs from the spec's defaults (not read-only, destructive, not idempotent, open
# world), plus readOnlyHint always, which hosts show: every agent reads these on every session.
# A read-only tool's destructive and idempotent hints are meaningless, so they are left out.
READ_ONLY = ToolAnnotations(read_only_hint=True)
SPENDS = ToolAnnotations(read_only_hint=False, destructive_hint=False)
IDEMPOTENT_CHANGE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True)


def add_tool(server: MCPServer, fn: Callable[..., Any], *, title: str, annotations: ToolAnnotations) -> None:
    """Register `fn`, with its docstring dedented (hosts show the description verbatim) and
    lean schemas (arguments and results are still validated by the SDK against `fn`'s types)."""
    server.tool(title=title, annotations=annotations, description=inspect.cleandoc(fn.__doc__ or ""))(fn)
    tool = server._tool_manager.get_tool(fn.__name__)  # the SDK offers no public hook for published schemas
    assert tool is not None
    tool.parameters = lean(tool.parameters, nullable=False)
    if tool.fn_metadata.output_schema is not None:
        tool.fn_metadata.output_schema = lean(tool.fn_metadata.output_schema, nullable=True)
