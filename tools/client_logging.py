"""MCP logging: `logging/setLevel` served, and our (redacted) log lines sent to the client.

The SDK's MCPServer registers no `logging/setLevel` handler, so it refuses the request and
does not advertise the logging capability; we register one on the low-level server (which
then advertises it). Delivery follows the protocol era:

- handshake era (2025-11-25 and older): the level the client set on its connection, else
  the server's own log level (NONECAP_LOG_LEVEL);
- 2026-07-28: only requests that opt in through `_meta` (`io.modelcontextprotocol/logLevel`),
  at that level and above (the SDK's `allowed_log_levels`), on that request's stream.

A middleware collects the `nonecap_mcp` records logged while it handles a request (a
ContextVar, so concurrent requests and the sandbox's threads never mix) and sends them as
`notifications/message` before the response, formatted by `RedactingFormatter`. Logging is
deprecated by SEP-2577: we send the notification ourselves rather than through the
deprecated `send_log_message`, so serving it raises no MCPDeprecationWarning.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from mcp import types
from mcp.server import MCPServer
from mcp.server.connection import allowed_log_levels
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from nonecap_mcp.redaction import RedactingFormatter

LOGGER = "nonecap_mcp"
PYTHON_LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "notice": logging.INFO + 5,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "alert": logging.CRITICAL + 5,
    "emergency": logging.CRITICAL + 10,
}
_LEVEL_STATE_KEY = "nonecap_mcp.log_level"  # in the connection's per-connection state


@dataclass
class _Sink:
    """The records one request collects for its client, at or above `threshold`."""

    threshold: int
    entries: list[tuple[types.LoggingLevel, str, str]] = field(default_factory=list)


_SINK: ContextVar[_Sink | None] = ContextVar("nonecap_mcp_log_sink", default=None)


def mcp_level(levelno: int) -> types.LoggingLevel:
    """The MCP (syslog) level of a Python level: the highest one not above it."""
    fitting = [name for name, number in PYTHON_LEVELS.items() if number <= levelno]
    return fitting[-1] if fitting else "debug"  # type: ignore[return-value]


class ClientLogHandler(logging.Handler):
    """Hands each record to the sink of the request it was logged in, if that client wants it."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(RedactingFormatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        sink = _SINK.get()
        if sink is not None and record.levelno >= sink.threshold:
            sink.entries.append((mcp_level(record.levelno), record.name, self.format(record)))


HANDLER = ClientLogHandler()


def _connection_state(ctx: ServerRequestContext[Any, Any]) -> dict[str, Any]:
    """The connection's `state` dict: the SDK hands requests a per-request session only,
    whose connection (with its documented per-connection `state`) is not public."""
    return ctx.session._connection.state  # noqa: SLF001


class ClientLogForwarder:
    """Middleware: collect a request's log records and send them to its client."""

    def __init__(self, default_level: int) -> None:
        self._default_level = default_level

    def _threshold(self, ctx: ServerRequestContext[Any, Any]) -> int | None:
        """The lowest level this request's client gets, or None for nothing."""
        if ctx.request_id is None or ctx.method == "initialize":
            return None
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            allowed = allowed_log_levels(ctx.protocol_version, ctx.meta)
            return min((PYTHON_LEVELS[level] for level in allowed), default=None)
        return _connection_state(ctx).get(_LEVEL_STATE_KEY, self._default_level)

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        threshold = self._threshold(ctx)
        if threshold is None:
            return await call_next(ctx)
        sink = _Sink(threshold)
        token = _SINK.set(sink)
        try:
            result = await call_next(ctx)
        except Exception:  # an error answer still gets the lines that explain it (cancellation does not)
            _SINK.reset(token)
            await _send(ctx, sink)
            raise
        _SINK.reset(token)
        await _send(ctx, sink)
        return result


async def _send(ctx: ServerRequestContext[Any, Any], sink: _Sink) -> None:
    """Send the collected lines on the request's own stream, before its response."""
    for level, logger, line in sink.entries:
        params = types.LoggingMessageNotificationParams(level=level, logger=logger, data=line)
        await ctx.session.send_notification(
            types.LoggingMessageNotification(params=params), related_request_id=ctx.request_id
        )


async def set_level(ctx: ServerRequestContext[Any, Any], params: types.SetLevelRequestParams) -> types.EmptyResult:
    """`logging/setLevel`: remember the connection's level, and let our loggers emit that low."""
    level = PYTHON_LEVELS[params.level]
    _connection_state(ctx)[_LEVEL_STATE_KEY] = level
    logger = logging.getLogger(LOGGER)
    if not logger.isEnabledFor(level):
        logger.setLevel(level)  # stderr keeps its own level on its handler (cli.setup_logging)
    return types.EmptyResult()


def register(server: MCPServer, *, default_level: str) -> None:
    """Serve logging/setLevel and forward log lines to clients that ask for them."""
    logger = logging.getLogger(LOGGER)
    if HANDLER not in logger.handlers:
        logger.addHandler(HANDLER)
    server.middleware.append(ClientLogForwarder(logging.getLevelName(default_level.upper())))
    server._lowlevel_server.add_request_handler("logging/setLevel", types.SetLevelRequestParams, set_level)  # noqa: SLF001
