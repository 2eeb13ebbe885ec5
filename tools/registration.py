"""How each tool is declared to hosts: its title, its behaviour hints and a clean description."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from mcp.server import MCPServer
from mcp.types import ToolAnnotations

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=True)
SPENDS = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True)
IDEMPOTENT_CHANGE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=True)


def add_tool(server: MCPServer, fn: Callable[..., Any], *, title: str, annotations: ToolAnnotations) -> None:
    """Register `fn`, with its docstring dedented (hosts show the description verbatim)."""
    server.tool(title=title, annotations=annotations, description=inspect.cleandoc(fn.__doc__ or ""))(fn)
