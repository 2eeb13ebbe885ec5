"""The four solve tools: create, get, list and cancel, on the NoneCap credits rail."""

import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Literal

from mcp.server import MCPServer
from mcp.server.mcpserver import AcceptedElicitation, CancelledElicitation, Context, ElicitationResult, Resolve
from pydantic import Field

from nonecap_mcp.catalogue import CAPTCHA_TYPES
from nonecap_mcp.config import MAX_WAIT_SECONDS
from nonecap_mcp.errors import NoneCapError
from nonecap_mcp.guidance import LOCAL
from nonecap_mcp.ids import check_solve_id, is_x402_id
from nonecap_mcp.models import Solve, SolveList
from nonecap_mcp.quota import nothing_created
from nonecap_mcp.tools.caller import request_client
from nonecap_mcp.tools.consent import PaymentConsent, payment_consent
from nonecap_mcp.tools.errors import tool_errors
from nonecap_mcp.tools.progress import with_progress
from nonecap_mcp.tools.registration import IDEMPOTENT_CHANGE, READ_ONLY, SPENDS, add_tool
from nonecap_mcp.tools.request import solve_request
from nonecap_mcp.tools.state import AppState
from nonecap_mcp.validation import MAX_IMAGE_CHARS, ProxyConfig, SolveRequest

CaptchaType = Literal[CAPTCHA_TYPES]  # type: ignore[valid-type]
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


async def create_solve(
    type: Annotated[CaptchaType, Field(description="Captcha type.")],
    ctx: Context[AppState],
    request: Annotated[SolveRequest, Resolve(solve_request)],
    consent: Annotated[ElicitationResult[PaymentConsent], Resolve(payment_consent)],
    sitekey: Annotated[str | None, Field(min_length=1, max_length=200, description="The page's sitekey (not image_to_text).")] = None,
    url: Annotated[str | None, Field(min_length=1, max_length=2048, description="URL of the page where the challenge appears.")] = None,
    image: Annotated[str | None, Field(max_length=MAX_IMAGE_CHARS, description="image_to_text: the picture, base64 (max 512 KiB).")] = None,
    rqdata: Annotated[str | None, Field(max_length=20000, description="The page's rqdata, when it passes one (optional).")] = None,
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
) -> Solve:
    """Start a captcha solve for a page you are authorised to automate, and wait for its token
    (image_to_text: the picture's text).

    credits: 1 credit, refunded if the solve fails, expires or is cancelled. x402: the
    published USDC price, paid only if the solve succeeds. Waits up to wait_seconds; if
    the solve is still running it returns status pending with guidance: then call
    get_solve(id, wait_seconds) rather than creating another solve.
    """
    # The arguments above define the schema; the body reads them only through `request`,
    # checked once by its resolver (and shown to the user by consent from the same values).
    state = ctx.request_context.lifespan_context
    # Set-up (validation, the price) counts against the call's bound, unless the user was asked:
    # time spent deciding is theirs, not the upstream's.
    asked = request.rail == "x402" and (request.price_usd or 0) > state.settings.confirm_above_usd
    with tool_errors(state.wait_for(wait_seconds), spent=0.0 if asked else time.monotonic() - request.started):
        if not (isinstance(consent, AcceptedElicitation) and consent.data.confirm):
            how = "dismissed the question" if isinstance(consent, CancelledElicitation) else "declined the payment"
            raise NoneCapError("confirmation_declined", f"The user {how}; nothing was signed or paid.")
        wait = state.wait_for(wait_seconds)
        deadline = time.monotonic() + wait
        rail_api = state.x402 if request.rail == "x402" else state.credits
        # Counted before anything is sent: a refusal here (rate cap, credit budget) sends nothing.
        client = request_client(ctx.request_context)
        name, budget = (client.name, client.daily_credit_budget) if client else (None, None)
        paid_by = {"client": client} if request.rail == "x402" else {}  # credits budgets are counted above
        ticket = await state.count(lambda quota: quota.admit(rail=request.rail, client=name, client_credit_budget=budget),
                                   limited=budget is not None)
        try:
            solve = await with_progress(
                ctx, wait, "solving", lambda: rail_api.create_solve(request.wire_body(), wait=wait, deadline=deadline, **paid_by))
        except Exception as exc:
            if ticket is not None and nothing_created(exc):
                await state.count(lambda quota: quota.refund(ticket=ticket))
            raise
        if ticket is not None:
            await state.count(lambda quota: quota.attach(ticket, solve.id))
        solve = solve.model_copy(update={"client": name}) if name else solve
        await state.observe(solve)
        return solve


async def with_clients(ctx: Context[AppState], *solves: Solve) -> list[Solve]:
    """On the team server, each solve with the client that started it (stdio has no clients)."""
    if request_client(ctx.request_context) is None:
        return list(solves)
    return await ctx.request_context.lifespan_context.with_clients(*solves)


def solve_source(state: AppState, id: str) -> Callable[..., Awaitable[Solve]]:
    """Where a solve lives: the x402 ledger (x402_… ids) or the credits API; takes (id, wait=)."""
    return state.x402.get if is_x402_id(id) else state.credits.get_solve


async def get_solve(id: SolveId, ctx: Context[AppState], wait_seconds: WaitSeconds = None) -> Solve:
    """Fetch a solve; while it is unfinished, wait up to wait_seconds for it to finish."""
    state = ctx.request_context.lifespan_context
    with tool_errors(state.wait_for(wait_seconds)):
        check_solve_id(id)
        wait = state.wait_for(wait_seconds)
        source = solve_source(state, id)
        try:
            (solve,) = await with_clients(ctx, await with_progress(ctx, wait, "waiting", lambda: source(id, wait=wait)))
            await state.observe(solve)
            return solve
        except NoneCapError as exc:
            if exc.code == "not_found" and state.ephemeral_sandbox:  # not "purged after 30 days": never here
                exc.message = f"No solve {id} in this process's sandbox (its state ends with the process)."
                exc.guidance = LOCAL["sandbox_solve_gone"]
            raise


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
        source = state.x402.list if await state.choose_rail(rail, type) == "x402" else state.credits.list_solves
        page = await source(limit=limit, starting_after=starting_after, status=status, type=type)
        page = page.model_copy(update={"data": await with_clients(ctx, *page.data)})
        await state.observe(*page.data)
        return page


async def cancel_solve(id: SolveId, ctx: Context[AppState]) -> Solve:
    """Cancel a pending or solving credits solve; its credit is refunded. Finished solves cannot be cancelled."""
    state = ctx.request_context.lifespan_context
    with tool_errors():
        if is_x402_id(id):
            raise NoneCapError("not_cancellable", "x402 solves cannot be cancelled; nothing is charged unless the solve succeeds.")
        solve = await state.credits.cancel_solve(id)
        await state.observe(solve)
        return solve


def register(server: MCPServer, *, read_only: bool) -> None:
    """Add the solve tools; read-only mode leaves out the two that spend or change anything."""
    if not read_only:
        add_tool(server, create_solve, title="Create a captcha solve", annotations=SPENDS)
    add_tool(server, get_solve, title="Get a solve", annotations=READ_ONLY)
    add_tool(server, list_solves, title="List solves", annotations=READ_ONLY)
    if not read_only:
        add_tool(server, cancel_solve, title="Cancel a solve", annotations=IDEMPOTENT_CHANGE)
