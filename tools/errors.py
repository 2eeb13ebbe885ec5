"""Turns this package's errors into MCP tool errors an agent can read and act on.

The SDK shows the model only "Error executing tool …" for a generic exception, so every
failure we anticipate becomes a `ToolError` whose text carries the code, the message, the
offending parameter and the guidance as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

from mcp.server.mcpserver.exceptions import ToolError

from nonecap_mcp.errors import APIError, NoneCapError
from nonecap_mcp.redaction import redact


def error_text(exc: NoneCapError) -> str:
    """The tool-error text: what went wrong, where, and what to do next."""
    where = f" (HTTP {exc.http_status}, request {exc.request_id or '-'})" if isinstance(exc, APIError) else ""
    lines = [f"{exc.code}{where}: {exc.message}"]
    if exc.param:
        lines.append(f"param: {exc.param}")
    lines.append("guidance: " + json.dumps(exc.guidance.model_dump(), separators=(", ", ": ")))
    return redact("\n".join(lines))


@contextmanager
def tool_errors() -> Iterator[None]:
    """Wrap a tool body so anticipated failures reach the model as readable tool errors."""
    try:
        yield
    except NoneCapError as exc:
        raise ToolError(error_text(exc)) from None
