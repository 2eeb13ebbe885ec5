"""The four solve tools: create, get, list and cancel, on the NoneCap credits rail."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

import anyio

from mcp.server import MCPServer
from mcp.server.mcpserver import Context, Resolve
from pydantic import Field

from nonecap_mcp.config import MAX_WAIT_SECONDS
from nonecap_mcp.credits_api import check_solve_id
from nonecap_mcp.errors import NoneCapError
from nonecap_mcp.models import Solve, SolveList
from nonecap_mcp.tools.consent import PaymentConsent, payment_consent
from nonecap_mcp.tools.errors import tool_errors
from nonecap_mcp.tools.progress import with_progress
from nonecap_mcp.tools.registration import IDEMPOTENT_CHANGE, READ_ONLY, SPENDS, add_tool
from nonecap_mcp.tools.state import AppState
from nonecap_mcp.validation import ProxyConfig, build_solve_body
from nonecap_mcp.x402.rail import X402Rail

CaptchaType = Literal["hcaptcha", "hcaptcha_enterprise"]
Status = Literal["pending", "solving", "solved", "failed", "cancelled", "expired"]
WaitSeconds = Annotated[
    int | None,
    Field(ge=0, le=MAX_WAIT_SECONDS, description=f"Seconds to wait for a result, 0-{MAX_WAIT_SECONDS}; default from the server (25)."),
]
SolveId = Annotated[str, Field(description="The solve id: solve_… (credits) or x402_… (x402).")]
RailChoice = Annotated[
    Literal["auto", "credits", "x402"] | None,
    Field(description="How to pay: credits (API key) or x402 (USDC per successful solve); auto picks what is configured."),
]
X402_PREFIX = "x402_"
X402_SETUP_FLOOR_SECONDS = 10  # even with wait_seconds=0, time to ask the rail for its 402


async def create_solve(
    type: Annotated[CaptchaType, Field(description="Captcha type.")],
    sitekey: Annotated[str, Field(min_length=1, max_length=200, description="The hCaptcha sitekey of the page.")],
    url: Annotated[str, Field(min_length=1, max_length=2048, description="URL of the page where the challenge appears.")],
    ctx: Context[AppState],
    rqdata: Annotated[str | None, Field(max_length=20000, description="Required for hcaptcha_enterprise.")] = None,
    user_agent: Annotated[str | None, Field(max_length=1024, description="The user agent your real client uses.")] = None,
    proxy: Annotated[
        str | ProxyConfig | None,
        Field(description="Proxy as scheme://user:pass@host:port, or an object with scheme, host, port, username, password."),
    ] = None,
    webhook_url: Annotated[str | None, Field(max_length=2048, description="Receives solve.completed when terminal.")] = None,
    wait_seconds: WaitSeconds = None,
    rail: RailChoice = None,
    confirm_payment: Annotated[
        bool,
        Field(description="x402, hosts that cannot ask the user: true once the user approved a payment above the threshold."),
    ] = False,
    consent: Annotated[PaymentConsent, Resolve(payment_consent)] = PaymentConsent(confirm=True),
) -> Solve:
    """Start an hCaptcha solve for a page you are authorised to automate, and wait for its token.

    credits: 1 credit, refunded if the solve fails, expires or is cancelled. x402: the
    published USDC price, paid only if the solve succeeds. Waits up to wait_seconds; if
    the solve is still running it returns status pending with guidance: then call
    get_solve(id, wait_seconds) rather than creating another solve.
    """
    state = ctx.request_context.lifespan_context
    with tool_errors(state.wait_for(wait_seconds)):
        body = build_solve_body(
            type=type, sitekey=sitekey, url=url, rqdata=rqdata, user_agent=user_agent, proxy=proxy, webhook_url=webhook_url
        )
        if not consent.confirm:
            raise NoneCapError("confirmation_declined", "The user declined the payment; nothing was paid.")
        wait = state.wait_for(wait_seconds)
        deadline = time.monotonic() + wait
        if await state.choose_rail(rail) == "x402":
            X402Rail.check_body(body)
            return await with_progress(ctx, wait, "solving", lambda: _paid_solve(state, body, user_agent, deadline))
        return await with_progress(
            ctx, wait, "solving", lambda: state.credits.create_solve(body, wait=wait, deadline=deadline)
        )


async def _paid_solve(state: AppState, body: dict[str, Any], user_agent: str | None, deadline: float) -> Solve:
    """Pay and wait within one deadline, so asking the rail for its price and the 402
    cannot push the call past the host's limit; a timeout before the payment is reserved
    leaves nothing paid, and after it the payment goes on in the background."""
    with anyio.move_on_after(max(deadline - time.monotonic(), X402_SETUP_FLOOR_SECONDS)) as scope:
        solve_id = await state.x402.start(captcha_type=body["type"], sitekey=body["sitekey"], url=body["url"], user_agent=user_agent)
    if scope.cancelled_caught:
        raise NoneCapError("x402_http_504", "The x402 rail did not offer a payment in time; nothing was signed or paid.")
    return await state.x402.get(solve_id, wait=max(0, int(deadline - time.monotonic())))


async def get_solve(id: SolveId, ctx: Context[AppState], wait_seconds: WaitSeconds = None) -> Solve:
    """Fetch a solve; while it is unfinished, wait up to wait_seconds for it to finish."""
    state = ctx.request_context.lifespan_context
    with tool_errors(state.wait_for(wait_seconds)):
        check_solve_id(id)
        wait = state.wait_for(wait_seconds)
        source = state.x402.get if id.startswith(X402_PREFIX) else state.credits.get_solve
        return await with_progress(ctx, wait, "waiting", lambda: source(id, wait=wait))


async def list_solves(
    ctx: Context[AppState],
    limit: Annotated[int, Field(ge=1, le=100, description="Solves per page, 1-100.")] = 20,
    starting_after: Annotated[str | None, Field(description="Cursor: next_starting_after of the previous page.")] = None,
    status: Annotated[Status | None, Field(description="Only solves in this status.")] = None,
    type: Annotated[CaptchaType | None, Field(description="Only solves of this captcha type.")] = None,
    rail: RailChoice = None,
) -> SolveList:
    """List recent solves of one rail, newest first, one page at a time."""
    state = ctx.request_context.lifespan_context
    with tool_errors():
        if starting_after is not None:
            check_solve_id(starting_after, "starting_after")
        source = state.x402.list if await state.choose_rail(rail) == "x402" else state.credits.list_solves
        return await source(limit=limit, starting_after=starting_after, status=status, type=type)


async def cancel_solve(id: SolveId, ctx: Context[AppState]) -> Solve:
    """Cancel a pending or solving credits solve; its credit is refunded. Finished solves cannot be cancelled."""
    state = ctx.request_context.lifespan_context
    with tool_errors():
        if id.startswith(X402_PREFIX):
            raise NoneCapError("not_cancellable", "x402 solves cannot be cancelled; nothing is charged unless the solve succeeds.")
        return await state.credits.cancel_solve(id)


def register(server: MCPServer, *, read_only: bool) -> None:
    """Add the solve tools; read-only mode leaves out the two that spend or change anything."""
    if not read_only:
        add_tool(server, create_solve, title="Create a captcha solve", annotations=SPENDS)
    add_tool(server, get_solve, title="Get a solve", annotations=READ_ONLY)
    add_tool(server, list_solves, title="List solves", annotations=READ_ONLY)
    if not read_only:
        add_tool(server, cancel_solve, title="Cancel a solve", annotations=IDEMPOTENT_CHANGE)
