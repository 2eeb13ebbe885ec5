"""The account tools: what the agent can still spend and what a solve costs, on both rails."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
from mcp.server import MCPServer
from mcp.server.mcpserver import Context

from nonecap_mcp.credentials import key_mode
from nonecap_mcp.errors import ConfigurationError, NoneCapError
from nonecap_mcp.models import Balance, Pricing, RailPrice
from nonecap_mcp.tools.errors import tool_errors
from nonecap_mcp.tools.registration import READ_ONLY, add_tool
from nonecap_mcp.tools.state import NO_PAYMENT_METHOD, AppState
from nonecap_mcp.x402.networks import NETWORKS
from nonecap_mcp.x402.rail import X402_TASK_TYPES
from nonecap_mcp.x402.wallet import usdc_balance

CREDITS_CHARGE = "1 credit debited when the solve is created; refunded automatically if it fails, expires or is cancelled."
X402_CHARGE = "Paid in USDC on Base per solve, settled on chain only when the solve succeeds."
NOT_CONFIGURED_CODES = ("missing_api_key", "missing_wallet")  # a rail the user never set up, not a failure


async def _credits_figures(state: AppState, balance: Balance) -> None:
    account = await state.credits.me()
    balance.credits_balance, balance.account_id = account.credits_balance, account.id
    balance.key_mode = key_mode((await state.credits.api_key()).reveal())  # type: ignore[assignment]


async def _wallet_figures(state: AppState, balance: Balance) -> None:
    """The ledger's figures first, so an unreachable RPC endpoint loses only `usdc_balance`."""
    wallet = await state.wallet()
    if wallet is None:
        raise ConfigurationError("missing_wallet", "no x402 wallet configured")
    balance.wallet_address = wallet.address
    balance.x402_spent_today_usd = str(await state.x402.spent_today())
    balance.x402_daily_budget_usd = str(state.settings.daily_budget_usd)
    network = NETWORKS[state.settings.x402_network]
    balance.usdc_balance = str(await usdc_balance(wallet.address, rpc_url=state.rpc_url, network=network))


# Each rail, the function that fills its figures, and those figures (named in a note when missing).
RAILS: tuple[tuple[str, Callable[[AppState, Balance], Awaitable[None]], tuple[str, ...]], ...] = (
    ("credits", _credits_figures, ("credits_balance", "account_id", "key_mode")),
    ("x402", _wallet_figures, ("wallet_address", "x402_spent_today_usd", "x402_daily_budget_usd", "usdc_balance")),
)


async def get_balance(ctx: Context[AppState]) -> Balance:
    """Show what is left to spend: credits (1 per solve) and the x402 wallet's USDC and daily budget."""
    state = ctx.request_context.lifespan_context
    balance = Balance(sandbox=state.sandbox_url is not None)
    failures: dict[str, NoneCapError] = {}

    crashes: list[Exception] = []

    async def read(rail: str, fill: Callable[[AppState, Balance], Awaitable[None]]) -> None:
        try:
            await fill(state, balance)
        except NoneCapError as exc:
            failures[rail] = exc
        except Exception as exc:  # raised below as it is, not wrapped in the task group's ExceptionGroup
            crashes.append(exc)

    with tool_errors():
        async with anyio.create_task_group() as group:  # side by side: a stalled rail cannot starve the other
            for rail, fill, _ in RAILS:
                group.start_soon(read, rail, fill)
        if crashes:
            raise crashes[0]
        for rail, _, figures in RAILS:
            if (exc := failures.get(rail)) is not None:
                missing = ", ".join(name for name in figures if getattr(balance, name) is None)
                balance.notes.append(f"{rail}: {missing} unavailable ({exc.code}): {exc.message}")
        # Partial figures (say the wallet's address and spend with the RPC down) beat an error.
        if balance.credits_balance is None and balance.wallet_address is None:
            real = [f for f in failures.values() if f.code not in NOT_CONFIGURED_CODES]
            raise real[0] if real else ConfigurationError("no_payment_method", NO_PAYMENT_METHOD)
    return balance


async def get_pricing(ctx: Context[AppState]) -> Pricing:
    """List the supported captcha types and what one solve costs on each payment rail."""
    state = ctx.request_context.lifespan_context
    pricing = Pricing(
        prices=[
            RailPrice(rail="credits", captcha_type=kind, price="1", unit="credit", charged=CREDITS_CHARGE)
            for kind in ("hcaptcha", "hcaptcha_enterprise")
        ],
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
    pricing.notes.append(f"Through create_solve, x402 solves {', '.join(X402_TASK_TYPES)} (proxyless) only.")
    return pricing


def register(server: MCPServer) -> None:
    """Add the account tools (both read-only)."""
    add_tool(server, get_balance, title="Get balance", annotations=READ_ONLY)
    add_tool(server, get_pricing, title="Get pricing", annotations=READ_ONLY)
