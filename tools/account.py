"""The account tools: what the agent can still spend and what a solve costs."""

from __future__ import annotations

from mcp.server import MCPServer
from mcp.server.mcpserver import Context

from nonecap_mcp.credentials import key_mode
from nonecap_mcp.models import Balance, Pricing, RailPrice
from nonecap_mcp.tools.errors import tool_errors
from nonecap_mcp.tools.solves import READ_ONLY
from nonecap_mcp.tools.state import AppState

CREDITS_CHARGE = "1 credit debited when the solve is created; refunded automatically if it fails, expires or is cancelled."


async def get_balance(ctx: Context[AppState]) -> Balance:
    """Show the credit balance (1 credit per solve) before starting a batch of solves."""
    state = ctx.request_context.lifespan_context
    with tool_errors():
        account = await state.credits.me()
        key = await state.credits.api_key()
        return Balance(
            credits_balance=account.credits_balance,
            account_id=account.id,
            key_mode=key_mode(key.reveal()),
            sandbox=state.sandbox_url is not None,
        )


async def get_pricing() -> Pricing:
    """List the supported captcha types and what one solve of each costs."""
    return Pricing(
        prices=[
            RailPrice(rail="credits", captcha_type=kind, price=1, unit="credit", charged=CREDITS_CHARGE)
            for kind in ("hcaptcha", "hcaptcha_enterprise")
        ],
        notes=["Reserved for later: recaptcha_v2, recaptcha_v3, cloudflare_turnstile, funcaptcha."],
    )


def register(server: MCPServer) -> None:
    """Add the account tools (both read-only)."""
    server.tool(title="Get balance", annotations=READ_ONLY)(get_balance)
    server.tool(title="Get pricing", annotations=READ_ONLY)(get_pricing)
