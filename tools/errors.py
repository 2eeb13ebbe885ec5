"""Turns this package's errors into MCP tool errors an agent can read and act on.

The SDK shows the model only "Error executing tool …" for a generic exception, so every
failure we anticipate becomes a `ToolError` whose text carries the code, the message, the
offending parameter and the guidance as JSON.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anyio
from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult
from pydantic import ValidationError

from nonecap_mcp.errors import APIError, InvalidArgumentError, NoneCapError
from nonecap_mcp.config import scaled
from nonecap_mcp.store.db import store_errors
from nonecap_mcp.redaction import redact, redact_tree
from nonecap_mcp.validation import check_strings
from nonecap_mcp.deadline import call_deadline

log = logging.getLogger("nonecap_mcp")
WAIT_MARGIN_SECONDS = scaled(10)  # a call with wait_seconds returns within wait_seconds + this
NO_WAIT_BUDGET_SECONDS = scaled(20)  # a call without one (balance, pricing, list, cancel) within this
# Room for our own work once upstream has run out of time: every exchange ends this long before the
# bound, to report what happened; the cancel scope fires the second long before it. Our work is CPU
# time, which a time scale does not compress: never below what a loaded machine needs (the
# suite on 6 workers over 2 cores once took 0.53 s past a 0.5 s backstop to deliver a result).
INNER_SLACK_SECONDS = max(scaled(2.0), 1.5)
BACKSTOP_SLACK_SECONDS = max(scaled(1.0), 1.0)
# A step that waits on something other than an exchange (a silent keyring, a worker thread) is given
# up halfway between the two: after the exchanges' deadline, so an exchange's own error (what upstream
# did) wins, and before the backstop, so the call can still report what it has.
STEP_GRACE_SECONDS = (INNER_SLACK_SECONDS - BACKSTOP_SLACK_SECONDS) / 2


def error_text(exc: NoneCapError) -> str:
    """The tool-error text: what went wrong, where, and what to do next."""
    where = f" (HTTP {exc.http_status}, request {exc.request_id or '-'})" if isinstance(exc, APIError) else ""
    lines = [f"{exc.code}{where}: {exc.message}"]
    if exc.param:
        lines.append(f"param: {exc.param}")
    lines.append("guidance: " + json.dumps(exc.guidance.model_dump(), separators=(", ", ": ")))
    return redact("\n".join(lines))


def call_budget(wait: int | None) -> float:
    """How long a tool call may take: its wait plus a margin, or a flat bound without one."""
    return NO_WAIT_BUDGET_SECONDS if wait is None else wait + WAIT_MARGIN_SECONDS


@contextmanager
def tool_errors(wait: int | None = None, *, spent: float = 0.0) -> Iterator[None]:
    """Wrap a tool body: bounded in time, and anticipated failures reach the model as
    readable tool errors.

    The bound is `call_budget(wait)`: every HTTP exchange and retry inside ends a little
    before it (`deadline.call_deadline`); the cancel scope is only the backstop should
    anything else hang. Store errors (OSError, SQLite's, psycopg's) come from where state is
    kept (an unwritable or full NONECAP_STATE_DIR under the x402 ledger, an unreachable
    PostgreSQL); without this the model would see only "Error executing tool" and could not
    tell the user what to fix.
    """
    budget = call_budget(wait) - spent  # `spent`: what this call already used before this block
    try:
        with call_deadline(budget - INNER_SLACK_SECONDS), anyio.move_on_after(budget - BACKSTOP_SLACK_SECONDS) as backstop:
            yield
        if backstop.cancelled_caught:
            log.error("a tool call outlived its %.0f s bound and was stopped", budget)
            raise NoneCapError("deadline_exceeded", f"No answer within this call's {budget:.0f} s limit.")
    except NoneCapError as exc:
        raise ToolError(error_text(exc)) from None
    except store_errors() as exc:
        raise ToolError(error_text(NoneCapError("local_state_error", f"{type(exc).__name__}: {exc}"))) from None
    except ToolError:
        raise
    except Exception as exc:  # a bug: still tell the agent what not to do next (logged with its traceback)
        log.exception("unexpected error in a tool")
        raise ToolError(error_text(NoneCapError("unexpected_error", f"{type(exc).__name__} inside nonecap-mcp."))) from None


def _argument_error(exc: ValidationError) -> InvalidArgumentError:
    """Our error for the SDK's schema check: parameter paths and reasons, never the values given."""
    problems = {".".join(str(part) for part in error["loc"]): error["msg"] for error in exc.errors()}
    params = sorted({str(error["loc"][0]) for error in exc.errors() if error["loc"]})
    detail = "; ".join(f"{loc}: {msg}" for loc, msg in problems.items())
    return InvalidArgumentError(", ".join(params) or "arguments", f"Invalid arguments ({detail}).")


_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _shown_name(name: str) -> str:
    """An argument name the agent made up, safe to repeat: as is when plain, else quoted,
    escaped and short."""
    return name if _PLAIN_NAME.fullmatch(name) else json.dumps(name[:64])


def redact_result(result: Any) -> Any:
    """A tool result with every string in it (text content and structuredContent alike)
    passed through `redact`: the last point before anything leaves the process."""
    if not isinstance(result, CallToolResult):
        return result
    return CallToolResult.model_validate(redact_tree(result.model_dump(by_alias=True, exclude_unset=True)))


async def _check_arguments(server: MCPServer, name: str, arguments: dict[str, Any]) -> None:
    declared = {tool.name: tool.input_schema.get("properties", {}) for tool in await server.list_tools()}
    if name not in declared:
        return  # the SDK answers an unknown tool itself
    unknown = sorted(set(arguments) - set(declared[name]))
    if unknown:
        shown = ", ".join(_shown_name(key) for key in unknown)
        takes = ", ".join(declared[name]) or "no arguments"
        raise InvalidArgumentError(
            shown, f"{name} does not take {shown}; it takes {takes}. Nothing was sent."
        )
    check_strings(arguments)


async def guarded_call(server: MCPServer, name: str, arguments: dict[str, Any], call: Callable[[], Awaitable[Any]]) -> Any:
    """Run one tool call (`call`: the SDK's) with its arguments checked first and its result redacted.

    - Arguments a tool does not declare are refused, naming them: the SDK would drop
      them silently, so a mistyped `proxy_url` would create (and charge) a solve
      without its proxy.
    - Control characters are refused in every string argument, naming the parameter.
    - The SDK's own validation errors carry guidance and never echo a value: its
      default text repeats each rejected input (pydantic's `input_value`), which would
      put a proxy password from a malformed proxy argument into the transcript.
    - Every result and error text goes through `redact`, for every secret this process
      knows, wherever an upstream echoed one.
    """
    try:
        await _check_arguments(server, name, arguments)
    except InvalidArgumentError as exc:
        raise ToolError(f"Error executing tool {name}: {error_text(exc)}") from None
    try:
        return redact_result(await call())
    except ToolError as exc:
        if isinstance(exc.__cause__, ValidationError):
            raise ToolError(f"Error executing tool {name}: {error_text(_argument_error(exc.__cause__))}") from exc.__cause__
        text = redact(str(exc))
        if text == str(exc):
            raise
        raise type(exc)(text) from exc.__cause__
