"""The account tools: what the agent can still spend and what a solve costs, on both rails."""

from collections.abc import Awaitable, Callable
from decimal import Decimal

import anyio
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from pydantic import ValidationError

from nonecap_mcp import metrics
from nonecap_mcp.catalogue import CREDITS_TYPES, X402_TASK_TYPES, types_by_rail
from nonecap_mcp.credentials import key_mode
from nonecap_mcp.deadline import seconds_left
from nonecap_mcp.errors import ConfigurationError, NoneCapError
from nonecap_mcp.models import Balance, Pricing, RailPrice
from nonecap_mcp.tools.errors import STEP_GRACE_SECONDS, tool_errors
from nonecap_mcp.tools.registration import READ_ONLY, add_tool
from nonecap_mcp.tools.state import NOT_CONFIGURED_CODES, AppState, no_payment_method
from nonecap_mcp.x402.networks import NETWORKS, UsdcNetwork

CREDITS_CHARGE = "1 credit debited when the solve is created; refunded automatically if it fails, expires or is cancelled."
X402_CHARGE = "Paid in USDC on Base per solve, settled on chain only when the solve succeeds."


async def _credits_figures(state: AppState, balance: Balance) -> None:
    try:
        account = await state.credits.me()
    except ValidationError as exc:  # e.g. a float or NaN balance: name the field, keep the other rail's figures
        fields = ", ".join(sorted({".".join(str(part) for part in error["loc"]) for error in exc.errors()}))
        raise NoneCapError("unexpected_response", f"NoneCap's /v1/me answered an unreadable {fields}.") from None
    balance.credits_balance, balance.account_id = account.credits_balance, account.id
    if account.plan is not None:
        balance.plan_remaining_today, balance.plan_resets_at = account.plan.remaining_today, account.plan.resets_at
    balance.key_mode = key_mode((await state.credits.api_key()).reveal())  # type: ignore[assignment]


async def _wallet_figures(state: AppState, balance: Balance) -> None:
    """The wallet, then each figure on its own: a corrupt ledger or an unreachable RPC
    endpoint loses only the figures it holds, each named in a note."""
    wallet = await state.wallet()
    if wallet is None:
        raise ConfigurationError("missing_wallet", "no x402 wallet configured")
    balance.wallet_address = wallet.address
    balance.x402_daily_budget_usd = str(state.settings.daily_budget_usd)
    await _fill(balance, "x402", ("x402_spent_today_usd", "x402_held_usd", "x402_budget_left_usd"), _budget_figures(state, balance))
    network = NETWORKS[state.settings.x402_network]
    await _fill(balance, "x402", ("usdc_balance",), _usdc_figure(state, balance, wallet.address, network))


async def _budget_figures(state: AppState, balance: Balance) -> None:
    spent, held = await state.x402.day_figures()
    left = max(Decimal(0), state.settings.daily_budget_usd - spent - held)
    balance.x402_spent_today_usd, balance.x402_held_usd, balance.x402_budget_left_usd = str(spent), str(held), str(left)
    metrics.budget_left("x402", left)


async def _usdc_figure(state: AppState, balance: Balance, address: str, network: UsdcNetwork) -> None:
    from nonecap_mcp.x402.wallet import usdc_balance  # with httpx, at the first balance, not at start-up

    balance.usdc_balance = str(await usdc_balance(address, rpc_url=state.rpc_url, network=network))


async def _by_the_deadline(work: Awaitable[None]) -> None:
    """`work`, stopped at the call's deadline whatever it waits on (an exchange ends there anyway;
    a silent keyring or the first derivation of the wallet's address would not), so that the
    figures already read are returned rather than lost to the call's backstop."""
    with anyio.move_on_after(seconds_left() + STEP_GRACE_SECONDS) as scope:
        await work
    if scope.cancelled_caught:
        raise NoneCapError("deadline_exceeded", "No answer within this call's limit.")


_UNAVAILABLE = " unavailable "


def _explained(balance: Balance, rail: str) -> set[str]:
    """The figures this rail's notes already name (`<rail>: <figure>, <figure> unavailable (…)`)."""
    prefix = f"{rail}: "
    return {name for note in balance.notes if note.startswith(prefix)
            for name in note.removeprefix(prefix).split(_UNAVAILABLE, 1)[0].split(", ")}


async def _fill(balance: Balance, rail: str, figures: tuple[str, ...], work: Awaitable[None]) -> NoneCapError | None:
    """Run one step of the balance; on failure note which figures it left missing and why."""
    try:
        await work
    except NoneCapError as exc:
        if exc.code in NOT_CONFIGURED_CODES:
            return exc  # a rail the user never set up is not news in every balance
        explained = _explained(balance, rail)  # a figure an inner step already explained is not blamed twice
        missing = ", ".join(name for name in figures if getattr(balance, name) is None and name not in explained)
        if missing:
            balance.notes.append(f"{rail}: {missing}{_UNAVAILABLE}({exc.code}): {exc.message}")
        return exc
    return None


# Each rail, the function that fills its figures, and those figures (named in a note when missing).
RAILS: tuple[tuple[str, Callable[[AppState, Balance], Awaitable[None]], tuple[str, ...]], ...] = (
    ("credits", _credits_figures, ("credits_balance", "account_id", "key_mode")),
    ("x402", _wallet_figures, ("wallet_address", "x402_spent_today_usd", "x402_held_usd", "x402_daily_budget_usd",
                               "x402_budget_left_usd", "usdc_balance")),
)


def operator_controls(state: AppState) -> dict[str, object]:
    """The operator's controls in force and what is left of today's credit budget."""
    sites = state.settings.site_policy()
    budget = state.settings.daily_credit_budget
    return {
        "allowed_sites": list(sites.allowed_sites) or None,
        "allowed_types": list(sites.allowed_types) or None,
        "daily_credit_budget": budget,
        "credit_budget_left_today": metrics.budget_left(
            "credits", None if budget is None else max(0, budget - state.quota().credits_used_today())),
        "max_solves_per_minute": state.settings.max_solves_per_minute,
    }


async def balance_for(state: AppState) -> Balance:
    """The figures of every configured rail; partial figures (say the wallet's address and
    spend with the RPC down) beat an error, which comes only when no rail gave any."""
    balance = Balance(sandbox=state.sandbox_url is not None, **await anyio.to_thread.run_sync(operator_controls, state))
    failures: list[NoneCapError] = []

    async def read(rail: str, fill: Callable[[AppState, Balance], Awaitable[None]], figures: tuple[str, ...]) -> None:
        if (exc := await _fill(balance, rail, figures, _by_the_deadline(fill(state, balance)))) is not None:
            failures.append(exc)

    async with anyio.create_task_group() as group:  # side by side: a stalled rail cannot starve the other
        for rail, fill, figures in RAILS:
            group.start_soon(read, rail, fill, figures)
    if balance.credits_balance is None and balance.wallet_address is None:
        real = [f for f in failures if f.code not in NOT_CONFIGURED_CODES]
        raise real[0] if real else no_payment_method(*(f for f in failures if isinstance(f, ConfigurationError)))
    return balance


async def get_balance(ctx: Context[AppState]) -> Balance:
    """Show what is left to spend: credits (1 per solve) and the x402 wallet's USDC and daily budget."""
    with tool_errors():
        return await balance_for(ctx.request_context.lifespan_context)


async def pricing_for(state: AppState) -> Pricing:
    """Both rails' prices; an unreachable x402 price table is a note, not an error."""
    pricing = Pricing(
        prices=[
            RailPrice(rail="credits", captcha_type=kind, price="1", unit="credit", charged=CREDITS_CHARGE)
            for kind in CREDITS_TYPES
        ],
        types=types_by_rail(),
        notes=["Reserved for later on the credits rail: recaptcha_v2, recaptcha_v3, cloudflare_turnstile, funcaptcha."],
    )
    ours = {task: kind for kind, task in X402_TASK_TYPES.items()}
    with tool_errors():
        try:
            table = await state.x402.client.pricing()
        except NoneCapError as exc:
            pricing.notes.append(f"x402 price table unavailable ({exc.code}): {exc.message}")
            return pricing
    pricing.x402_pay_to, pricing.x402_network = table.pay_to, table.network
    pricing.prices += [
        RailPrice(rail="x402", captcha_type=ours.get(task, task), task_type=task, price=str(usd), unit="USD", charged=X402_CHARGE)
        for task, usd in sorted(table.prices_usd.items())
    ]
    pricing.types["x402"] = [kind for kind, task in X402_TASK_TYPES.items() if task in table.prices_usd]  # priced today
    return pricing


async def get_pricing(ctx: Context[AppState]) -> Pricing:
    """List the captcha types each payment rail sells and what one solve costs."""
    return await pricing_for(ctx.request_context.lifespan_context)


def register(server: MCPServer) -> None:
    """Add the account tools (both read-only)."""
    add_tool(server, get_balance, title="Get balance", annotations=READ_ONLY)
    add_tool(server, get_pricing, title="Get pricing", annotations=READ_ONLY)
