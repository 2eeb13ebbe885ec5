"""Asking the user before an x402 payment above the operator's confirmation threshold.

Runs as an SDK resolver before `create_solve`'s body: with a host that can show forms it
asks through MCP elicitation; otherwise the agent must pass `confirm_payment=true`, which
it should only do after asking the user itself. The price comes from the rail's published
table, never from tool arguments.
"""

from __future__ import annotations

from mcp.server.mcpserver import Context, Elicit
from pydantic import BaseModel, Field

from nonecap_mcp.errors import ConfigurationError
from nonecap_mcp.tools.errors import tool_errors
from nonecap_mcp.tools.state import AppState


class PaymentConsent(BaseModel):
    """The user's answer (flat, so every host can render it as a form)."""

    confirm: bool = Field(description="Pay this amount in USDC from the x402 wallet?")


async def payment_consent(
    type: str, url: str, rail: str | None, confirm_payment: bool, ctx: Context[AppState]
) -> PaymentConsent | Elicit[PaymentConsent]:
    """Consent for this call's spend: implicit for credits and small x402 payments."""
    state = ctx.request_context.lifespan_context
    with tool_errors():
        if await state.choose_rail(rail) != "x402":
            return PaymentConsent(confirm=True)
        price = await state.x402.price_for(type)
        threshold = state.settings.confirm_above_usd
        if price <= threshold or confirm_payment:
            return PaymentConsent(confirm=True)
        capabilities = ctx.client_capabilities
        if capabilities is not None and capabilities.elicitation is not None:
            return Elicit(f"Pay ${price} USDC (x402, on success only) for one {type} solve of {url}?", PaymentConsent)
        raise ConfigurationError(
            "confirmation_required",
            f"An x402 solve costs ${price}, above the confirmation threshold ${threshold} (NONECAP_CONFIRM_ABOVE_USD). "
            "Ask the user; if they agree, call create_solve again with confirm_payment=true.",
        )
