"""MCP resources: pricing, balance and any one solve, as the same JSON models the tools return.

Hosts that attach resources to a conversation (instead of calling tools) read
`nonecap://pricing`, `nonecap://balance` and `nonecap://solves/{id}`. Reading never waits
or spends. The SDK gives static resources no Context, so a small middleware binds each
request's lifespan state to a ContextVar that the static readers use (`tools.server.bind_state`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError

from nonecap_mcp.errors import NoneCapError
from nonecap_mcp.ids import check_solve_id
from nonecap_mcp.tools.account import balance_for, pricing_for
from nonecap_mcp.tools.errors import error_text
from nonecap_mcp.tools.server import current_state
from nonecap_mcp.tools.solves import solve_source
from nonecap_mcp.tools.state import AppState

JSON = "application/json"
NOT_FOUND_CODES = frozenset({"not_found", "unknown_x402_solve", "invalid_argument"})


def _state() -> AppState:
    state = current_state()
    if state is None:  # read outside a request: a programming error, not the client's
        raise ResourceError("The server state is not available outside a request.")
    return state


@contextmanager
def resource_errors() -> Iterator[None]:
    """Our errors as resource errors with the same text (and guidance) as tool errors;
    an unknown or malformed solve id is "not found" (-32602), anything else -32603."""
    try:
        yield
    except NoneCapError as exc:
        raise (ResourceNotFoundError if exc.code in NOT_FOUND_CODES else ResourceError)(error_text(exc)) from None


async def pricing() -> str:
    """Supported captcha types and the price of one solve on each rail (the get_pricing result)."""
    return (await pricing_for(_state())).model_dump_json()


async def balance() -> str:
    """Credits left and the x402 wallet's USDC and daily spend (the get_balance result)."""
    with resource_errors():
        return (await balance_for(_state())).model_dump_json()


async def solve(id: str, ctx: Context) -> str:
    """One solve as get_solve returns it, read now without waiting."""
    state: AppState = ctx.request_context.lifespan_context
    with resource_errors():
        return (await solve_source(state, check_solve_id(id))(id, wait=0)).model_dump_json()


def register(server: MCPServer) -> None:
    """Add the three resources (all read-only); `tools.server` binds the state they read."""
    server.resource("nonecap://pricing", name="pricing", title="Pricing", mime_type=JSON)(pricing)
    server.resource("nonecap://balance", name="balance", title="Balance", mime_type=JSON)(balance)
    server.resource("nonecap://solves/{id}", name="solve", title="A solve", mime_type=JSON)(solve)
