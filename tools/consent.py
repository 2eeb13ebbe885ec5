"""Asking the user before an x402 payment above the operator's confirmation threshold.

Runs as an SDK resolver before `create_solve`'s body. It first checks the arguments (so a
bad call asks nobody and sends nothing), then: with a host that can show forms it always
asks the user through MCP elicitation — an agent cannot skip that with an argument; only
where the host cannot ask does `confirm_payment=true` stand in, which the agent should
pass only after asking the user itself. The price comes from the rail's published table,
never from tool arguments.
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import Context, Elicit
from pydantic import BaseModel, Field

from nonecap_mcp.errors import ConfigurationError
from nonecap_mcp.tools.errors import tool_errors
from nonecap_mcp.tools.state import AppState
from nonecap_mcp.validation import ProxyConfig, build_solve_body
from nonecap_mcp.x402.rail import X402Rail


class PaymentConsent(BaseModel):
    """The user's answer (flat, so every host can render it as a form)."""

    confirm: bool = Field(description="Pay this amount in USDC from the x402 wallet?")


def _can_show_forms(ctx: Context[AppState]) -> bool:
    """The SDK's own rule: form elicitation, or elicitation declared without naming modes."""
    capabilities = ctx.client_capabilities
    elicitation = capabilities.elicitation if capabilities is not None else None
    return elicitation is not None and (elicitation.form is not None or elicitation.url is None)


async def payment_consent(
    type: str,
    sitekey: str,
    url: str,
    rqdata: str | None,
    user_agent: str | None,
    proxy: str | ProxyConfig | None,
    webhook_url: str | None,
    rail: str | None,
    confirm_payment: bool,
    wait_seconds: int | None,
    ctx: Context[AppState],
) -> PaymentConsent | Elicit[PaymentConsent]:
    """Consent for this call's spend: implicit for credits and for x402 at or under the threshold."""
    state = ctx.request_context.lifespan_context
    with tool_errors(state.wait_for(wait_seconds)):  # the price lookup is bound like the call itself
        body: dict[str, Any] = build_solve_body(
            type=type, sitekey=sitekey, url=url, rqdata=rqdata, user_agent=user_agent, proxy=proxy, webhook_url=webhook_url
        )
        if await state.choose_rail(rail) != "x402":
            return PaymentConsent(confirm=True)
        X402Rail.check_body(body)
        price = await state.x402.price_for(type)
        threshold = state.settings.confirm_above_usd
        if price <= threshold:
            return PaymentConsent(confirm=True)
        if _can_show_forms(ctx):
            return Elicit(f"Pay ${price} USDC (x402, only if it succeeds) for one {type} solve of {body['url']}?", PaymentConsent)
        if confirm_payment:
            return PaymentConsent(confirm=True)
        raise ConfigurationError(
            "confirmation_required",
            f"An x402 solve costs ${price}, above the confirmation threshold ${threshold} (NONECAP_CONFIRM_ABOVE_USD), "
            "and this host cannot ask the user. Ask them; if they agree, call create_solve again with confirm_payment=true.",
        )
