"""The create_solve arguments resolved once per call into a `SolveRequest`.

An SDK resolver, so the consent prompt and the tool body share one result: the body is
checked once, the rail chosen once and (x402) the price read once from the rail's own
table, before the user is asked anything or anything is sent.
"""

import time
from decimal import Decimal
from types import MappingProxyType

from mcp.server.mcpserver import Context

from nonecap_mcp.tools.errors import tool_errors
from nonecap_mcp.tools.state import AppState
from nonecap_mcp.validation import ProxyConfig, SolveRequest, build_solve_body


async def solve_request(
    type: str,
    sitekey: str | None,
    url: str | None,
    image: str | None,
    rqdata: str | None,
    user_agent: str | None,
    proxy: str | ProxyConfig | None,
    webhook_url: str | None,
    rail: str | None,
    wait_seconds: int | None,
    ctx: Context[AppState],
) -> SolveRequest:
    """Validate, pick the rail and (x402) price one create_solve call; nothing is sent."""
    state = ctx.request_context.lifespan_context
    started = time.monotonic()
    with tool_errors(state.wait_for(wait_seconds)):  # the price lookup counts against the call's bound
        body = build_solve_body(
            type=type, sitekey=sitekey, url=url, image=image, rqdata=rqdata, user_agent=user_agent, proxy=proxy, webhook_url=webhook_url
        )
        state.settings.site_policy().check(type, url)  # the operator's allowlists: refused before anything is sent
        chosen = await state.choose_rail(rail, type)
        price: Decimal | None = None
        if chosen == "x402":
            state.x402.check_body(body)
            price = await state.x402.price_for(type)
        return SolveRequest(body=MappingProxyType(body), rail=chosen, price_usd=price, started=started)
