"""Asking the user before an x402 payment above the operator's confirmation threshold.

Runs as an SDK resolver before `create_solve`'s body, on the call's `SolveRequest`
(already checked, so a bad call asks nobody and sends nothing). With a host that can
show forms it always asks the user through MCP elicitation — an agent cannot skip that
with an argument; only where the host cannot ask does `confirm_payment=true` stand in,
which the agent should pass only after asking the user itself.

The prompt is ours, not the agent's: the price comes from the rail's published table,
the page's hostname is stated on its own line, and the agent-chosen url is shown
shortened and stripped of anything that could pass for more prompt text.
"""

from typing import Annotated
from urllib.parse import urlsplit

from mcp.server.mcpserver import Context, Elicit, Resolve
from pydantic import BaseModel, Field

from nonecap_mcp.errors import ConfigurationError
from nonecap_mcp.redaction import redact
from nonecap_mcp.tools.errors import tool_errors
from nonecap_mcp.tools.request import solve_request
from nonecap_mcp.tools.state import AppState
from nonecap_mcp.validation import SolveRequest, check_text

URL_SHOWN_CHARS = 120  # enough to recognise a page, too little to write the user a letter


class PaymentConsent(BaseModel):
    """The user's answer (flat, so every host can render it as a form)."""

    confirm: bool = Field(description="Pay this amount in USDC from the x402 wallet?")


def _can_show_forms(ctx: Context[AppState]) -> bool:
    """The SDK's own rule: form elicitation, or elicitation declared without naming modes."""
    capabilities = ctx.client_capabilities
    elicitation = capabilities.elicitation if capabilities is not None else None
    return elicitation is not None and (elicitation.form is not None or elicitation.url is None)


def shown_url(url: str) -> str:
    """The url as a prompt may show it: one line (control characters were refused with
    the arguments; checked again here, as this text reaches the user), no credentials,
    at most URL_SHOWN_CHARS long."""
    text = redact(check_text("url", url))
    return text if len(text) <= URL_SHOWN_CHARS else text[: URL_SHOWN_CHARS - 1] + "…"


def consent_prompt(request: SolveRequest) -> str:
    """What the user is asked: amount, rail and site (an image type has none), all from our own values."""
    site = f"Site: {urlsplit(request.url).hostname or '?'}\nPage: {shown_url(request.url)}\n" if request.url else ""
    return (
        f"Pay ${request.price_usd} USDC from the x402 wallet for one {request.type} solve?\n"
        f"{site}"
        "Charged only if the solve succeeds."
    )


async def payment_consent(
    request: Annotated[SolveRequest, Resolve(solve_request)],
    confirm_payment: bool,
    wait_seconds: int | None,
    ctx: Context[AppState],
) -> PaymentConsent | Elicit[PaymentConsent]:
    """Consent for this call's spend: implicit for credits and for x402 at or under the threshold."""
    state = ctx.request_context.lifespan_context
    threshold = state.settings.confirm_above_usd
    with tool_errors():
        if request.rail != "x402" or request.price_usd is None or request.price_usd <= threshold:
            return PaymentConsent(confirm=True)
        if _can_show_forms(ctx):
            return Elicit(consent_prompt(request), PaymentConsent)
        if confirm_payment:
            return PaymentConsent(confirm=True)
        raise ConfigurationError(
            "confirmation_required",
            f"An x402 solve costs ${request.price_usd}, above the confirmation threshold ${threshold} (NONECAP_CONFIRM_ABOVE_USD), "
            "and this host cannot ask the user. Ask them; if they agree, call create_solve again with confirm_payment=true.",
        )
