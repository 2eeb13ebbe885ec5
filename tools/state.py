"""What every tool call shares for the life of the server process: settings and both rails.

Built in the MCP lifespan, so one pooled HTTP client per rail serves every call, paid x402
requests can outlive the tool call that started them (a background task group that the
lifespan waits for), and the sandbox (when asked for) is started before the first call and
stopped after the last. Each rail (its module, httpx and its connection pool) is built at
its first use, not at start-up: listing the tools needs neither. So are the credentials, the
counted limits (`quota`) and the create log: this module is imported by every start-up (the
lifespan), so what only a call needs is imported where the call needs it.
"""

from __future__ import annotations

import functools
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

import anyio
import anyio.to_thread
from anyio.abc import TaskGroup
from mcp.server import MCPServer

from nonecap_mcp import metrics
from nonecap_mcp.catalogue import PaidRail, rails_selling
from nonecap_mcp.config import CREATES_FILE, LEDGER_FILE, Settings, scaled
from nonecap_mcp.errors import ConfigurationError, InvalidArgumentError
from nonecap_mcp.ids import is_x402_id
from nonecap_mcp.store import Store, store_for

if TYPE_CHECKING:  # the models load with the tool layer, not with the lifespan
    from nonecap_mcp.credentials import Secret
    from nonecap_mcp.credits_api import CreditsAPI, KeyProvider
    from nonecap_mcp.models import Solve
    from nonecap_mcp.quota import Quota
    from nonecap_mcp.x402.rail import X402Rail
    from nonecap_mcp.x402.wallet import Wallet

log = logging.getLogger("nonecap_mcp")
T = TypeVar("T")
FINISHED_REMEMBERED = 4096  # solves already counted in /metrics (a solve is seen by many calls)
SHUTDOWN_GRACE_SECONDS = scaled(3.0)  # how long background payments may still finish once the host has gone
NO_PAYMENT_METHOD = (
    "No NoneCap API key and no x402 wallet are configured. For credits, set NONECAP_API_KEY in the MCP server's env "
    "or run `nonecap-mcp auth login` in a terminal; for x402, run `nonecap-mcp wallet create` (or set "
    "NONECAP_WALLET_PRIVATE_KEY / NONECAP_WALLET_KEY_FILE). `nonecap-mcp doctor` checks the setup."
)
SET_UP: dict[str, str] = {
    "credits": "no NoneCap API key is configured: set NONECAP_API_KEY in the MCP server's env or run `nonecap-mcp auth login`.",
    "x402": "no x402 wallet is configured: run `nonecap-mcp wallet create` (or set NONECAP_WALLET_PRIVATE_KEY / "
            "NONECAP_WALLET_KEY_FILE) and fund it with USDC on Base.",
}
KEYRING_UNREACHABLE = (
    " This server cannot reach the OS keyring (hosts often start servers without DBUS_SESSION_BUS_ADDRESS), so keys "
    "stored by `auth login` or `wallet create` are out of its reach here: use the environment variables."
)
# A rail the user never set up here (nothing anywhere, or no keyring that could hold it): not a failure.
NOT_CONFIGURED_CODES = ("missing_api_key", "missing_wallet", "keyring_unavailable")


def rail_not_configured(captcha_type: str, rail: PaidRail, *causes: ConfigurationError) -> ConfigurationError:
    """The error for a type only one rail sells, when that rail is not set up here."""
    unreachable = any(c.code == "keyring_unavailable" for c in causes)
    return ConfigurationError("rail_not_configured", f"{captcha_type} is sold only on the {rail} rail, and {SET_UP[rail]} "
                              "Nothing was sent." + (KEYRING_UNREACHABLE if unreachable else ""), param="type")


def no_payment_method(*causes: ConfigurationError) -> ConfigurationError:
    """The error for "no rail is usable", saying so when the keyring is why."""
    unreachable = any(c.code == "keyring_unavailable" for c in causes)
    return ConfigurationError("no_payment_method", NO_PAYMENT_METHOD + (KEYRING_UNREACHABLE if unreachable else ""))


@dataclass
class AppState:
    """Lifespan state handed to tools as `ctx.request_context.lifespan_context`."""

    settings: Settings
    wallet: Callable[[], Awaitable[Wallet | None]]
    rpc_url: str
    sandbox_url: str | None
    quota: Callable[[], Quota]
    api_base: str
    x402_base: str
    stores: Stores  # where the ledger, the create log and the counted limits live
    background: TaskGroup  # where paid x402 requests run, so they can outlive their tool call
    api_key_override: str | None = None  # the sandbox's key, else the configured one (resolved at first use)
    ephemeral_sandbox: bool = False  # a sandbox started by this process: its solves die with it
    _finished_seen: dict[str, None] = field(default_factory=dict)  # insertion-ordered: the oldest go first

    @cached_property
    def credits(self) -> CreditsAPI:
        """The credits rail, built at its first use (with httpx): start-up needs none of it."""
        from nonecap_mcp.create_log import CreateLog
        from nonecap_mcp.credits_api import CreditsAPI
        from nonecap_mcp.retry import RetryPolicy

        return CreditsAPI(self.api_base, key_provider(self.settings, self.api_key_override),
                          retry=RetryPolicy(max_retries=self.settings.max_retries),
                          max_concurrency=self.settings.max_concurrency, creates=CreateLog(self.stores.creates))

    @cached_property
    def x402(self) -> X402Rail:
        """The x402 rail, built at its first use (or at start-up, by the lifespan, when an
        earlier process left a ledger whose unresolved payments it checks)."""
        from nonecap_mcp.retry import RetryPolicy
        from nonecap_mcp.x402.client import X402Client
        from nonecap_mcp.x402.rail import X402Rail

        client = X402Client(self.x402_base, retry=RetryPolicy(max_retries=self.settings.max_retries))
        return X402Rail(client, policy=self.settings.spend_policy(), ledger_store=self.stores.ledger, wallet=self.wallet,
                        background=self.background, rpc_url=self.rpc_url)

    async def aclose(self) -> None:
        """Close the connection pools of the rails that were built."""
        if "credits" in self.__dict__:
            await self.credits.aclose()
        if "x402" in self.__dict__:
            await self.x402.client.aclose()

    async def count(self, step: Callable[[Quota], T], *, limited: bool = False) -> T | None:
        """Run one step of the operator's counted limits (admit, attach, refund, look-up) in a
        worker thread, as the ledger's calls are (`X402Rail._db`): a PostgreSQL round trip must
        not hold up the replica's other requests. Shielded: a step once begun is finished, so a
        cancelled call never leaves a credit counted without its solve.

        With a limit set (the server's, or `limited`: the calling client's), a store that cannot
        be used fails the call: a limit that cannot be checked is not held. Without one, the
        count only feeds `nonecap-mcp spend`, so such a store is logged and skipped rather than
        failing solves that need no local state. Only the store's own failures are skipped: a
        bug still surfaces."""
        from nonecap_mcp.store.db import store_errors  # a call's need, not start-up's

        try:
            with anyio.CancelScope(shield=True):
                return await anyio.to_thread.run_sync(lambda: step(self.quota()))
        except (*store_errors(), ConfigurationError) as exc:
            if limited or self.settings.daily_credit_budget is not None or self.settings.max_solves_per_minute is not None:
                raise
            log.warning("could not count this solve for `nonecap-mcp spend` (%s); no limit is set, so it goes ahead",
                        type(exc).__name__)
            return None

    async def observe(self, *solves: Solve) -> None:
        """What a call saw of its solves: give today's credit budget back for credits solves seen
        failed, cancelled or expired (the API refunded them; refunding is idempotent), and, the
        first time a solve is seen finished, its latency and (when solved) its cost in /metrics."""
        from nonecap_mcp.quota import REFUNDED_STATUSES

        refunded = [solve.id for solve in solves if solve.status in REFUNDED_STATUSES and not is_x402_id(solve.id)]
        if refunded:  # a page of them: one trip to the store's thread, not one each
            await self.count(lambda quota: [quota.refund(solve_id=solve_id) for solve_id in refunded])
        for solve in solves:
            if metrics.enabled() and solve.is_terminal and solve.id not in self._finished_seen:
                self._finished_seen[solve.id] = None
                while len(self._finished_seen) > FINISHED_REMEMBERED:
                    del self._finished_seen[next(iter(self._finished_seen))]
                metrics.finished(solve)

    async def with_clients(self, *solves: Solve) -> list[Solve]:
        """These solves, each with the team-server client that started it: neither rail's
        upstream knows our clients, the counted starts (which every solve is attached to) do."""
        ids = [solve.id for solve in solves]
        known = (await self.count(lambda quota: quota.clients_of(ids)) if ids else None) or {}
        return [solve.model_copy(update={"client": known[solve.id]}) if solve.id in known else solve for solve in solves]

    def wait_for(self, wait_seconds: int | None) -> int:
        """A call's wait: the agent's, else the operator's default."""
        return self.settings.default_wait_seconds if wait_seconds is None else wait_seconds

    async def choose_rail(self, requested: str | None, captcha_type: str | None = None) -> PaidRail:
        """The rail that pays, of those that sell `captcha_type` (`catalogue`). `auto` means:
        credits if it sells the type and an API key is configured, else x402 if it does and a
        wallet is; a type no configured rail sells is refused, naming the rail that sells it."""
        rail = requested or self.settings.rail
        selling = rails_selling(captcha_type)
        if rail in ("credits", "x402"):
            if rail not in selling:
                raise InvalidArgumentError("rail", f"The {rail} rail does not sell {captcha_type}; the {selling[0]} rail "
                                                   f"does: call again with rail={selling[0]} (or auto).")
            return rail  # type: ignore[return-value]
        problems: list[ConfigurationError] = []
        for candidate in selling:
            try:
                if await self._configured(candidate):
                    return candidate
            except ConfigurationError as exc:
                if exc.code not in NOT_CONFIGURED_CODES:
                    raise  # a malformed key or a failing keyring must not quietly switch to paying USDC
                problems.append(exc)
        if len(selling) == 1:
            raise rail_not_configured(str(captcha_type), selling[0], *problems)
        raise no_payment_method(*problems)

    async def _configured(self, rail: PaidRail) -> bool:
        """Whether this rail can pay: an API key (credits) or a wallet (x402); raises what is wrong with it."""
        if rail == "credits":
            await self.credits.api_key()
            return True
        return await self.wallet() is not None


def key_provider(settings: Settings, sandbox_key: str | None) -> KeyProvider:
    """Resolves the API key on first use (never at start-up) and caches only a success."""
    cached: list[Secret] = []

    async def provide() -> Secret:
        from nonecap_mcp.credentials import CredentialError, Secret, resolve_api_key  # with the keyring, at first use

        if sandbox_key is not None:
            return Secret(sandbox_key)
        if not cached:
            try:
                cached.append(await resolve_api_key(settings.env, timeout=settings.keyring_timeout))
            except CredentialError as exc:
                raise ConfigurationError(exc.code, str(exc)) from None
        return cached[0]

    return provide


def wallet_loader(settings: Settings, sandbox_key: str | None) -> Callable[[], Awaitable[Wallet | None]]:
    """Loads the wallet on first use and caches it; in sandbox mode, the funded sandbox wallet."""
    cached: list[Wallet] = []

    async def load() -> Wallet | None:
        if not cached:
            from nonecap_mcp.x402.wallet import check_private_key, load_wallet

            env = dict(settings.env)
            if sandbox_key is not None:
                env["NONECAP_WALLET_PRIVATE_KEY"] = check_private_key(sandbox_key)
            wallet = await load_wallet(env, timeout=settings.keyring_timeout)
            if wallet is None:
                return None
            cached.append(wallet)
        return cached[0]

    return load


def attached_sandbox_ledger(settings: Settings, sandbox_url: str) -> Path:
    """One ledger per attached sandbox (by port), beside the real one but never it: shared by
    every process attached to that sandbox, so an x402 solve made by one call is found by the next."""
    return settings.ledger_path().with_name(f"sandbox-{urlsplit(sandbox_url).port}.ledger.sqlite3")


@dataclass(frozen=True)
class Stores:
    """Where this process keeps its shared records: the configured store (PostgreSQL for a
    team, else the state dir's files), or, in sandbox mode, files of the sandbox's own, since
    sandbox payments and solves must never touch the real ledger or budgets."""

    ledger: Store
    creates: Store
    quota: Store

    @classmethod
    def configured(cls, settings: Settings) -> Stores:
        return cls(store_for(settings, LEDGER_FILE), store_for(settings, CREATES_FILE), store_for(settings))

    @classmethod
    def sandbox(cls, ledger_path: Path, creates_path: Path) -> Stores:
        return cls(Store(ledger_path), Store(creates_path), Store(ledger_path.with_name(ledger_path.stem + ".state.sqlite3")))


def quota_opener(settings: Settings, store: Store) -> Callable[[], Quota]:
    """The counted limits, opened on first use (start-up touches no state)."""

    @functools.cache
    def open_quota() -> Quota:
        from nonecap_mcp.quota import Quota

        return Quota(store.open(), daily_credit_budget=settings.daily_credit_budget,
                     max_solves_per_minute=settings.max_solves_per_minute)

    return open_quota


def lifespan_for(settings: Settings):  # noqa: ANN201 - the SDK's lifespan type is a generic callable
    """The MCP lifespan: start the sandbox if asked, hand tools their state (each rail built at its
    first use), close what was opened at exit."""

    @asynccontextmanager
    async def lifespan(_server: MCPServer) -> AsyncIterator[AppState]:
        sandbox, scratch, state = None, None, None
        api_base, x402_base = settings.api_base, settings.x402_base
        sandbox_api_key = sandbox_wallet_key = None
        stores = Stores.configured(settings)  # every process (or replica) of this user sees these records
        rpc_url = settings.rpc_url()
        if settings.sandbox or settings.sandbox_url:
            from nonecap_mcp.sandbox import SANDBOX_API_KEY, SANDBOX_WALLET_KEY, Sandbox

            if settings.sandbox_url:  # a shared `nonecap-mcp sandbox`: its solves outlive this process
                api_base = x402_base = settings.sandbox_url
                ledger_path = attached_sandbox_ledger(settings, settings.sandbox_url)
                stores = Stores.sandbox(ledger_path, ledger_path.with_suffix(".creates.sqlite3"))
            else:
                sandbox = Sandbox().start()
                api_base = x402_base = sandbox.url
                scratch = Path(tempfile.mkdtemp(prefix="nonecap-sandbox-"))
                stores = Stores.sandbox(scratch / LEDGER_FILE, scratch / CREATES_FILE)  # never the real budget
            rpc_url = f"{api_base}/rpc"
            sandbox_api_key, sandbox_wallet_key = SANDBOX_API_KEY, SANDBOX_WALLET_KEY
            log.warning("sandbox mode: NoneCap emulator on %s; nothing leaves this machine", api_base)
        try:
            async with anyio.create_task_group() as background:
                state = AppState(settings=settings, wallet=wallet_loader(settings, sandbox_wallet_key), rpc_url=rpc_url,
                                 sandbox_url=api_base if sandbox_api_key else None, quota=quota_opener(settings, stores.quota),
                                 api_base=api_base, x402_base=x402_base, stores=stores,
                                 background=background, api_key_override=sandbox_api_key, ephemeral_sandbox=sandbox is not None)
                if stores.ledger.exists():
                    state.x402  # noqa: B018 - built now: it checks what earlier processes left unresolved
                yield state
                # Shutting down (the host closed stdin): a paid request still in flight gets a short
                # grace, then is cancelled and recorded `unknown` (counted as spent) by the rail,
                # rather than holding the process for the rail's 75 s bound.
                background.cancel_scope.deadline = anyio.current_time() + SHUTDOWN_GRACE_SECONDS
        finally:
            if state is not None:
                await state.aclose()
            if sandbox is not None:
                sandbox.stop()
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)

    return lifespan
