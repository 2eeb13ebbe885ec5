"""The x402 rail behind the same tools: decide, sign, record, pay, remember, and find out.

Order matters and is the whole point of this module:
1. ask the rail (unpaid) what it wants — a 402;
2. check every field against the published pricing and the operator's policy, and the
   daily budget, before a signature exists (`policy.choose_requirement`);
3. sign a fresh authorization and reserve it, with its solve, in the ledger (one atomic
   write with the budget check) before it is sent;
4. send it once, in the background so a slow (≤ 60 s) solve survives the tool call, and
   record the outcome with the solve (the second and last write): settled; failed, only
   when the rail said so in its own documented words; or unknown (counted as spent,
   never re-sent);
5. find out what an unknown (or orphaned in-flight) payment did from the chain itself:
   EIP-3009 `authorizationState(payer, nonce)` on USDC. Used means settled; unused once
   the authorization has expired means it never can settle, and its budget is released.
   This runs lazily (get, list, balance), within the call's time, and once at start-up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from functools import cached_property
from typing import Any, TypeVar

import anyio
from anyio.abc import TaskGroup

from nonecap_mcp.catalogue import IMAGE_TYPES, X402_TASK_TYPES, rails_selling
from nonecap_mcp.clients import Client
from nonecap_mcp.config import MAX_WAIT_SECONDS, scaled
from nonecap_mcp.errors import (
    ConfigurationError,
    InvalidArgumentError,
    LocalStateError,
    NoneCapError,
    X402ConnectionError,
    X402ResponseError,
    X402SetupTimeout,
    X402StatusError,
)
from nonecap_mcp.guidance import LOCAL
from nonecap_mcp.deadline import seconds_left
from nonecap_mcp.models import Solve, SolveError, SolveList
from nonecap_mcp.store import Store
from nonecap_mcp.store.db import store_errors
from nonecap_mcp.x402.client import TaskAnswer, X402Client
from nonecap_mcp.x402.ledger import Ledger, X402Solve, new_x402_id, open_ledger
from nonecap_mcp.x402.networks import NETWORKS, atomic_to_usd, usd_to_atomic
from nonecap_mcp.x402.policy import SpendPolicy, parse_payment_required
from nonecap_mcp.x402.signing import SignedPayment, authorize_payment, decode_receipt
from nonecap_mcp.x402.wallet import Wallet, usdc_call

log = logging.getLogger("nonecap_mcp.x402")
T = TypeVar("T")

WalletLoader = Callable[[], Awaitable[Wallet | None]]
# When a solve still "solving" in the ledger is taken to belong to a process that died mid-payment,
# so that another process (or replica) may write its outcome. Until then only the payment is
# resolved (the chain's word is final for money) and the solve reads "solving", even when the
# chain already shows the authorization used: the rail settles right *before* it answers, so a
# used authorization also means "the owner may be reading its paid answer (the token) right
# now", and a rail that stalls after settling can keep it reading for the rest of PAID_SECONDS.
# Writing "failed: result lost" then would be read by agents as final, they would pay again, and
# the owner's answer would overwrite it. Nothing in the ledger tells a dead owner from a live one,
# so age is the only safe test: from the solve's creation, the setup (≤ MAX_WAIT_SECONDS 55 s) +
# the paid request (≤ PAID_SECONDS 75 s) + the outcome write and its retries (~20 s) ≈ 150 s, and
# as much again for clocks that differ between replicas (created_at is the owner's clock, the age
# the reader's) and an owner stalled for a while. Sooner would need a liveness signal per owner
# (a lock that dies with its process), which this store does not have.
ORPHAN_AFTER_SECONDS = 2 * (MAX_WAIT_SECONDS + scaled(95))  # 300 s in real time; the agent's wait is never scaled
SETUP_FLOOR_SECONDS = scaled(10)  # even with wait_seconds=0, time to ask the rail for its price and 402
TIME_RAN_OUT_SECONDS = scaled(0.5)  # a connection error this close to the call's deadline is the deadline's doing
CHAIN_CHECK_SECONDS = scaled(5.0)  # the most one call spends asking the chain about payments
# Our clock against the chain's before "expired unused" is final. Scaled with the rest: below 1 the
# chain is the sandbox's, on this machine's clock.
EXPIRY_MARGIN_SECONDS = scaled(30)
OUTCOME_WRITE_RETRIES = tuple(scaled(s) for s in (0.2, 0.5, 1.0))  # seconds between attempts to write a payment's outcome
POLL_SECONDS = scaled(0.5)  # how often a wait re-reads a solve another process is paying for
AUTHORIZATION_STATE = "0xe94a0102"  # authorizationState(address,bytes32)
# Solve failures whose payment may still be unresolved (every other outcome is written final).
UNRESOLVED_CODES = frozenset({"payment_outcome_unknown", "x402_no_solution"})


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _text(value: Any) -> str | None:
    """A field the rail should send as a string; anything else is treated as absent."""
    return value if isinstance(value, str) and value else None


def _token(body: Any) -> str | None:
    """The captcha token in a rail answer, wherever the solution keeps it as a string."""
    solution = body.get("solution") if isinstance(body, dict) else None
    if not isinstance(solution, dict):
        return None
    for key in ("token", "gRecaptchaResponse", "text"):
        if _text(solution.get(key)):
            return solution[key]
    return next((v for v in solution.values() if _text(v)), None)


def _age_seconds(record: X402Solve) -> float:
    return (datetime.now(UTC) - datetime.fromisoformat(record.created_at)).total_seconds()


def to_solve(record: X402Solve, token: str | None = None) -> Solve:
    """The tools' view of a ledger record; the rail's resultToken never leaves the ledger.

    The captcha token itself is not stored: `get` keeps this process's tokens in memory
    and re-fetches older ones for free with the stored resultToken."""
    return Solve(
        id=record.id,
        type=record.type,
        status=record.status,
        sitekey=record.sitekey or None,
        url=record.url or None,
        token=token if record.status == "solved" else None,
        error=SolveError(code=record.error_code, message=record.error_message) if record.error_code else None,
        created_at=record.created_at,
        finished_at=record.finished_at,
        rail="x402",
        cost_usd=record.cost_usd,
        settlement_tx=record.settlement_tx,
    ).with_guidance()


class X402Rail:
    """Pays for solves from the local wallet under the operator's spend policy."""

    def __init__(self, client: X402Client, *, policy: SpendPolicy, ledger_store: Store, wallet: WalletLoader,
                 background: TaskGroup, rpc_url: str) -> None:
        self.client = client
        self.policy = policy
        self._ledger_store = ledger_store
        self._wallet = wallet
        self._background = background
        self._rpc_url = rpc_url
        self._inflight: dict[str, anyio.Event] = {}
        self._tokens: dict[str, str] = {}  # tokens of this process's solves; the ledger keeps only the resultToken
        self._unsaved: dict[str, X402Solve] = {}  # this process's outcomes the ledger could not take (yet)
        background.start_soon(self._check_chain_at_startup)

    @cached_property
    def ledger(self) -> Ledger:
        """Opened on first x402 use, so credits-only users never get a state directory."""
        return open_ledger(self._ledger_store)

    async def _db(self, work: Callable[[Ledger], T]) -> T:
        """Run `work` on the ledger in a worker thread (the store, and opening it, may block);
        a ledger this server cannot read or write is a `local_state_error`."""
        try:
            return await anyio.to_thread.run_sync(lambda: work(self.ledger))
        except store_errors() as exc:
            raise LocalStateError(f"{type(exc).__name__}: {exc}") from None

    @staticmethod
    def task_type(captcha_type: str) -> str:
        """The rail's task type for one of ours, or an error naming `type`."""
        try:
            return X402_TASK_TYPES[captcha_type]
        except KeyError:
            raise InvalidArgumentError("type", f"The x402 rail sells type {', '.join(X402_TASK_TYPES)}; use rail=credits for {captcha_type}.") from None

    @classmethod
    def check_body(cls, body: dict[str, Any]) -> None:
        """Refuse, naming the parameter, what the x402 rail cannot do (before any request)."""
        cls.task_type(body["type"])
        for param in ("rqdata", "proxy", "webhook_url"):
            if param in body:
                other = "; use rail=credits" if "credits" in rails_selling(body["type"]) else ""
                raise InvalidArgumentError(param, f"The x402 rail solves proxyless only and takes no {param}{other}.")

    @classmethod
    def task(cls, body: dict[str, Any]) -> dict[str, Any]:
        """The rail's createTask `task` for a checked solve body: the image, or the page's url and sitekey."""
        task_type = cls.task_type(body["type"])
        if body["type"] in IMAGE_TYPES:
            return {"type": task_type, "body": body["image"]}
        user_agent = body.get("user_agent")
        return {"type": task_type, "websiteURL": body["url"], "websiteKey": body["sitekey"]} | ({"userAgent": user_agent} if user_agent else {})

    async def price_for(self, captcha_type: str) -> Decimal:
        """The published USD price of one solve of this type."""
        task_type = self.task_type(captcha_type)
        prices = (await self.client.pricing()).prices_usd
        if task_type not in prices:
            raise X402ResponseError(f"The x402 rail publishes no price for {task_type}.")
        return prices[task_type]

    async def wallet(self) -> Wallet:
        """The paying wallet, or a configuration error that says how to set one up."""
        wallet = await self._wallet()
        if wallet is None:
            raise ConfigurationError("missing_wallet", "No x402 wallet is configured (NONECAP_WALLET_PRIVATE_KEY or `nonecap-mcp wallet create`).")
        return wallet

    def _budgets(self, client: Client | None) -> dict[str, Any]:
        """The daily budgets a payment must fit: the server's, and a team-server client's own."""
        limit = client.daily_budget_usd if client else None
        return {"daily_budget_atomic": usd_to_atomic(self.policy.daily_budget_usd), "client": client.name if client else None,
                "client_budget_atomic": None if limit is None else usd_to_atomic(limit)}

    async def _authorize(self, answer: TaskAnswer, price: Decimal, wallet: Wallet, client: Client | None) -> SignedPayment:
        """Steps 2-3: policy and budgets (the server's and the client's), and only then a
        signature (in a worker thread); the ledger re-checks the budgets atomically when reserving."""
        required = parse_payment_required(answer.body, answer.headers.get("PAYMENT-REQUIRED"))
        pricing = await self.client.pricing()
        budgets = self._budgets(client)
        return await anyio.to_thread.run_sync(lambda: authorize_payment(
            required, policy=self.policy, price_usd=price, pricing_pay_to=pricing.pay_to,
            resource_url=self.client.create_task_url, private_key=wallet.private_key,
            before_signing=lambda requirement: self.ledger.check_budgets(requirement.amount_atomic, **budgets)))

    async def create_solve(self, body: dict[str, Any], *, wait: int = 0, deadline: float, client: Client | None = None) -> Solve:
        """Pay for one solve and wait for it, within one deadline, like `CreditsAPI.create_solve`.

        Asking for the price and the 402 gets at least `SETUP_FLOOR_SECONDS` even with no
        wait; running out of time before the payment is reserved leaves nothing paid, and
        after it the paid request goes on in the background (`get` picks it up). A team-server
        `client` is recorded on the payment and held to its own daily USD budget.
        """
        self.check_body(body)
        solve_id: str | None = None
        try:
            with anyio.move_on_after(max(deadline - time.monotonic(), SETUP_FLOOR_SECONDS)):
                solve_id = await self.start(body, client=client)
        except X402ConnectionError:
            if seconds_left() > TIME_RAN_OUT_SECONDS:  # refused or unreachable: not a matter of time
                raise
        if solve_id is None:  # the call's time ran out before anything was signed
            raise X402SetupTimeout("The x402 rail did not offer a payment in time; nothing was signed or paid.")
        return await self.get(solve_id, wait=min(wait, max(0, int(deadline - time.monotonic()))))

    async def start(self, solve: dict[str, Any], *, client: Client | None = None) -> str:
        """Pay for one solve (a checked solve body) and start it; returns the local solve id (`x402_…`).

        Everything up to the paid request happens in the caller, so a refused payment is
        the caller's error. The paid request itself runs in the background. Each type is
        paid at its own price, for its own task type.
        """
        task = self.task(solve)
        task_type = task["type"]
        wallet = await self.wallet()
        price = await self.price_for(solve["type"])
        body = {"task": task}
        # An image solve has no sitekey or page: the ledger keeps "" for them.
        record = X402Solve(id=new_x402_id(), type=solve["type"], sitekey=solve.get("sitekey", ""), url=solve.get("url", ""),
                           status="solving", task_id=None, result_token=None, error_code=None, error_message=None,
                           cost_usd=None, settlement_tx=None, created_at=_now(), finished_at=None)
        answer = await self.client.create_task(body)
        if answer.status != 402:
            raise X402ResponseError(f"The x402 rail answered HTTP {answer.status} to an unpaid request instead of 402.")
        payment = await self._authorize(answer, price, wallet, client)
        with anyio.CancelScope(shield=True):  # once reserved, the payment must also be sent and tracked
            await self._db(lambda ledger: ledger.reserve_payment(
                nonce=payment.nonce, solve_id=record.id, amount_atomic=payment.value_atomic, pay_to=payment.pay_to,
                network=self.policy.network, asset=NETWORKS[self.policy.network].asset, task_type=task_type,
                valid_before=payment.valid_before, payer=payment.payer, solve=record, **self._budgets(client)))
            done = self._inflight[record.id] = anyio.Event()
            self._background.start_soon(self._pay, record, body, payment, done)
        return record.id

    async def _pay(self, record: X402Solve, body: dict[str, Any], payment: SignedPayment, done: anyio.Event) -> None:
        """Step 4: send the one signed payment and record what happened to it.

        Whatever ends this task — an answer, an error, a bug, or the server shutting down
        mid-request — the payment's state and the solve are written before it lets go.
        """
        outcome: tuple[str, str | None, str | None] = ("unknown", None, "The paid request did not finish.")
        try:
            answer = await self.client.create_task(body, payment)
            outcome = self._apply(record, answer, payment)
        except (X402StatusError, X402ConnectionError) as exc:  # the rail said it did not run, or it was never sent
            self._fail(record, "failed", exc.code, exc.message)
            outcome = ("failed", None, exc.message)
        except NoneCapError as exc:  # sent, and no readable answer: it may have settled
            log.warning("x402 payment for %s: outcome unknown (%s)", record.id, exc.code)
            self._fail(record, "failed", "payment_outcome_unknown", exc.message)
            outcome = ("unknown", None, exc.message)
        except Exception as exc:  # a bug must not lose the record of a payment that was sent
            log.exception("x402 payment %s ended unexpectedly", record.id)
            outcome = ("unknown", None, type(exc).__name__)
        finally:
            if outcome[0] == "unknown" and record.status == "solving":
                self._fail(record, "failed", "payment_outcome_unknown", outcome[2] or "The paid request did not finish.")
            with anyio.CancelScope(shield=True):
                await self._record(record, payment.nonce, outcome)
            self._inflight.pop(record.id, None)
            done.set()

    async def _record(self, record: X402Solve, nonce: str, outcome: tuple[str, str | None, str | None]) -> None:
        """Write a payment's outcome and its solve in one transaction, retrying a failed write.

        Until it is on disk the record (and any token) stays in memory, so `get` still
        answers with it. Never raises: this runs in the server's background task group.
        """
        state, tx, error = outcome
        self._unsaved[record.id] = record
        for delay in (*OUTCOME_WRITE_RETRIES, None):
            try:
                await self._db(lambda ledger: ledger.record_outcome(nonce, state, solve=record, transaction=tx, error=error))
            except Exception as exc:
                if delay is None:
                    log.error("could not record the outcome (%s) of x402 payment for %s (%s); kept in memory",
                              state, record.id, getattr(exc, "code", type(exc).__name__))
                    return
                await anyio.sleep(delay)
            else:
                self._unsaved.pop(record.id, None)
                return

    @staticmethod
    def _fail(record: X402Solve, status: str, code: str, message: str) -> None:
        record.status, record.error_code, record.error_message, record.finished_at = status, code, message, _now()

    def _apply(self, record: X402Solve, answer: TaskAnswer, payment: SignedPayment) -> tuple[str, str | None, str | None]:
        """Update the record from the paid answer; returns the payment's (state, tx, error).

        Only the rail's documented failure means nothing settled. Anything else that is not
        a readable 200 (an HTML gateway page, a redirect, an undocumented status, a 402 saying
        the nonce is already used) may have followed a settlement: unknown, counted as spent.
        """
        if answer.status == 200 and isinstance(answer.body, dict):
            return self._apply_success(record, answer, payment)
        failure = answer.failure()
        if failure is None:
            kind = "a redirect" if 300 <= answer.status < 400 else "not the rail's documented answer"
            message = (f"The paid request was answered HTTP {answer.status} ({kind}); the payment may have settled, "
                       "so it counts as spent until the chain shows otherwise.")
            self._fail(record, "failed", "payment_outcome_unknown", message)
            return "unknown", None, message
        status, code = {422: ("failed", "x402_unsolvable"), 504: ("expired", "x402_timeout")}.get(
            answer.status, ("failed", failure.code))
        self._fail(record, status, code, failure.message)
        return "failed", None, failure.message

    def _apply_success(self, record: X402Solve, answer: TaskAnswer, payment: SignedPayment) -> tuple[str, str | None, None]:
        """A readable 200: keep whatever token it carries, whatever the other fields look like."""
        receipt = decode_receipt(answer.receipt_header)
        token = _token(answer.body)
        record.task_id, record.result_token = _text(answer.body.get("taskId")), _text(answer.body.get("resultToken"))
        settled = receipt.success if receipt is not None else token is not None
        record.settlement_tx = receipt.transaction if receipt else None
        if settled:
            record.cost_usd = str(atomic_to_usd(payment.value_atomic))
        if token:
            self._tokens[record.id] = token
            record.status, record.finished_at = "solved", _now()
        else:
            self._fail(record, "failed", "x402_no_solution",
                       "The x402 rail answered 200 without a solution token; the payment counts as spent.")
        return ("settled" if settled else "unknown"), record.settlement_tx, None

    async def get(self, solve_id: str, *, wait: int = 0) -> Solve:
        """A solve, waiting up to `wait` s while it runs (this process's, or one another
        process is paying for); a solved one is re-fetched for free through getTaskResult
        (falling back on the ledger's copy)."""
        deadline = time.monotonic() + wait
        done = self._inflight.get(solve_id)
        if done is not None and wait > 0:
            with anyio.move_on_after(wait):
                await done.wait()
        record = await self._load(solve_id)
        record = await self._resolve(record, time.monotonic() + CHAIN_CHECK_SECONDS)
        while record.status == "solving" and solve_id not in self._inflight and time.monotonic() < deadline:
            await anyio.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
            record = await self._resolve(await self._load(solve_id), min(deadline, time.monotonic() + CHAIN_CHECK_SECONDS))
        token = self._tokens.get(solve_id)
        if record.status != "solved" or token is not None or not (record.task_id and record.result_token):
            return to_solve(record, token)
        try:
            token = _token(await self.client.task_result(record.task_id, record.result_token))
        except NoneCapError as exc:
            log.info("free re-fetch of %s failed (%s)", solve_id, exc.code)
            return to_solve(record).model_copy(update={"guidance": LOCAL["refetch_failed"]})
        if token:
            self._tokens[solve_id] = token
        return to_solve(record, token)

    async def _load(self, solve_id: str) -> X402Solve:
        """This process's unsaved record if there is one, else the ledger's."""
        record = self._unsaved.get(solve_id) or await self._db(lambda ledger: ledger.get_solve(solve_id))
        if record is None:
            raise NoneCapError("not_found", f"No x402 solve {solve_id} is recorded on this machine.", guidance=LOCAL["unknown_x402_solve"])
        return record

    async def list(self, *, limit: int, starting_after: str | None, status: str | None, type: str | None) -> SolveList:
        """x402 solves from the ledger, newest first."""
        records, has_more = await self._db(
            lambda ledger: ledger.list_solves(limit=limit, starting_after=starting_after, status=status, type=type))
        until = time.monotonic() + CHAIN_CHECK_SECONDS
        solves = [to_solve(await self._resolve(self._unsaved.get(r.id, r), until), self._tokens.get(r.id)) for r in records]
        return SolveList(data=solves, has_more=has_more, next_starting_after=solves[-1].id if has_more and solves else None)

    # --- finding out from the chain ---

    async def _resolve(self, record: X402Solve, until: float) -> X402Solve:
        """The solve after asking the chain about its unresolved payments (until `until`).

        A solve still "solving" after `ORPHAN_AFTER_SECONDS` belongs to a process that died
        mid-payment: its payment becomes unknown (counted as spent) unless the chain knows better.
        """
        if record.id in self._inflight or record.id in self._unsaved or not (
                record.status == "solving" or record.error_code in UNRESOLVED_CODES):
            return record  # its payment's outcome is already final
        stale = record.status == "solving" and _age_seconds(record) >= ORPHAN_AFTER_SECONDS
        payments = await self._db(lambda ledger: ledger.unresolved_payments(record.id))
        if stale and not payments:
            self._learned(record, "unknown", 0)
            await self._db(lambda ledger: ledger.upsert_solve(record))
        await self._resolve_payments(payments, until, {record.id: record})
        return record

    async def _resolve_payments(self, payments: list[dict[str, Any]], until: float,
                                solves: dict[str, X402Solve] | None = None) -> None:
        """Ask the chain about each payment; write what it settles, with the solve it changes."""
        solves = dict(solves or {})
        for payment in payments:
            solve_id = payment["solve_id"]
            if solve_id in self._inflight or solve_id in self._unsaved:
                continue
            if solve_id not in solves:
                solves[solve_id] = await self._db(lambda ledger, i=solve_id: ledger.get_solve(i))
            record = solves[solve_id]
            stale = record is not None and record.status == "solving" and _age_seconds(record) >= ORPHAN_AFTER_SECONDS
            verdict = await self._ask_chain(payment, until) or ("unknown" if stale else None)
            if verdict is None:
                continue
            # A solve still running in another process is that process's to write.
            touch = record is not None and (stale or record.status != "solving")
            if touch:
                self._learned(record, verdict, payment["amount_atomic"])
            await self._db(lambda ledger, p=payment, v=verdict, r=record if touch else None:
                           ledger.record_outcome(p["nonce"], v, solve=r))

    @classmethod
    def _learned(cls, record: X402Solve, payment_state: str, amount_atomic: int) -> None:
        """What a payment's resolved state says about a solve whose answer never arrived."""
        lost = record.status == "solving" or record.error_code == "payment_outcome_unknown"
        if payment_state == "settled":
            record.cost_usd = str(atomic_to_usd(amount_atomic))
            if lost:
                cls._fail(record, "failed", "x402_result_lost",
                          "The chain shows this payment settled, but the rail's answer never arrived; the token is lost.")
        elif payment_state == "failed" and lost:
            cls._fail(record, "failed", "x402_not_settled",
                      "The paid request's answer was lost, but its authorization expired unused: nothing was paid.")
        elif payment_state == "unknown" and record.status == "solving":
            cls._fail(record, "failed", "payment_outcome_unknown",
                      "The process paying for this solve stopped before the answer arrived.")

    async def _ask_chain(self, payment: dict[str, Any], until: float) -> str | None:
        """`settled` if the chain shows the authorization used, `failed` if unused after it
        expired, None when it may still settle or the chain could not be asked in time."""
        expired = time.time() > payment["valid_before"] + EXPIRY_MARGIN_SECONDS  # read before asking
        with anyio.move_on_after(max(0.0, until - time.monotonic())):
            payer = payment["payer"] or await self._wallet_address()
            nonce = str(payment["nonce"]).lower()
            if payer is None or len(nonce) != 66:
                return None
            data = AUTHORIZATION_STATE + payer[2:].lower().rjust(64, "0") + nonce[2:]
            network = NETWORKS.get(payment["network"], NETWORKS[self.policy.network])
            try:
                used = await usdc_call(data, "authorizationState", rpc_url=self._rpc_url, network=network)
            except NoneCapError as exc:
                log.info("could not ask the chain about an x402 payment (%s)", exc.code)
                return None
            return "settled" if used else ("failed" if expired else None)
        return None

    async def _wallet_address(self) -> str | None:
        """The paying address, for payments recorded before the ledger kept the payer."""
        try:
            wallet = await self._wallet()
        except ConfigurationError:
            return None
        return wallet.address if wallet else None

    async def _check_chain_at_startup(self) -> None:
        """Resolve what earlier processes left unknown, in the background: never blocks
        start-up, never creates a ledger that is not there, never takes the server down."""
        if not self._ledger_store.exists():
            return
        try:
            payments = await self._db(lambda ledger: ledger.unresolved_payments())
            await self._resolve_payments(payments, time.monotonic() + CHAIN_CHECK_SECONDS)
        except Exception as exc:
            log.warning("start-up check of unresolved x402 payments failed (%s)", getattr(exc, "code", type(exc).__name__))

    async def day_figures(self) -> tuple[Decimal, Decimal]:
        """Today's (spent, held) in USD, after asking the chain about unresolved payments."""
        payments = await self._db(lambda ledger: ledger.unresolved_payments())
        await self._resolve_payments(payments, time.monotonic() + CHAIN_CHECK_SECONDS)
        spent, held = await self._db(lambda ledger: ledger.today_atomic())
        return atomic_to_usd(spent), atomic_to_usd(held)
