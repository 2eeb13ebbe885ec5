"""The report_solve tool: tell NoneCap whether the site accepted a solve's token.

NoneCap tunes solving against real acceptance, which only the agent sees. Reporting is
free and idempotent per solve (a second report corrects the first), so it is annotated as
an idempotent change; it writes, so read-only mode leaves it out.
"""

from typing import Annotated, Literal

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from pydantic import Field

from nonecap_mcp.errors import NoneCapError
from nonecap_mcp.ids import check_solve_id, is_x402_id
from nonecap_mcp.models import Feedback
from nonecap_mcp.tools.errors import tool_errors
from nonecap_mcp.tools.registration import IDEMPOTENT_CHANGE, add_tool
from nonecap_mcp.tools.state import AppState

Outcome = Literal["accepted", "rejected", "unknown", "unused", "error"]


async def report_solve(
    id: Annotated[str, Field(description="The solved solve's id (solve_…).")],
    outcome: Annotated[
        Outcome,
        Field(description="accepted or rejected by the site; unknown, unused (never submitted) or error (the site broke)."),
    ],
    ctx: Context[AppState],
    reason: Annotated[str | None, Field(description="What the site answered on rejection (first 512 characters kept).")] = None,
    context: Annotated[str | None, Field(description="Anything that helps diagnose it (first 2000 kept).")] = None,
) -> Feedback:
    """Report whether the site accepted a solve's token. Free; reporting again corrects the verdict."""
    state = ctx.request_context.lifespan_context
    with tool_errors():
        check_solve_id(id)
        if is_x402_id(id):
            raise NoneCapError("feedback_not_supported", "x402 solves cannot be reported; the x402 rail takes no feedback.")
        return await state.credits.report_feedback(id, outcome, reason=reason, context=context)


def register(server: MCPServer, *, read_only: bool) -> None:
    """Add report_solve unless the server is read-only (a report writes a verdict)."""
    if not read_only:
        add_tool(server, report_solve, title="Report a token's outcome", annotations=IDEMPOTENT_CHANGE)
