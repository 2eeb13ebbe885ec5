"""The x402 rail behind the same tools: decide, sign, record, pay, remember.

Order matters and is the whole point of this module:
1. ask the rail (unpaid) what it wants — a 402;
2. check every field against the published pricing and the operator's policy, and the
   daily budget, before a signature exists (`policy.choose_requirement`);
3. sign a fresh authorization and reserve it in the ledger (atomic budget check) before
   it is sent;
4. send it once, in the background so a slow (≤ 60 s) solve survives the tool call, and
   record the outcome: settled, failed (nothing settled) or unknown (counted as spent,
   never re-sent).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import anyio
from anyio.abc import TaskGroup

from nonecap_mcp.errors import ConfigurationError, InvalidArgumentError, NoneCapError
from nonecap_mcp.guidance import LOCAL
from nonecap_mcp.models import Solve, SolveError, SolveList
from nonecap_mcp.x402.client import PaymentOutcomeUnknown, TaskAnswer, X402Client, X402Error, error_text
from nonecap_mcp.x402.ledger import BudgetExceeded, Ledger, X402Solve, new_x402_id
from nonecap_mcp.x402.networks import NETWORKS, atomic_to_usd, usd_to_atomic
from nonecap_mcp.x402.policy import PaymentRequirement, SpendPolicy, parse_payment_required
from nonecap_mcp.x402.signing import SignedPayment, authorize_payment, decode_receipt
from nonecap_mcp.x402.wallet import Wallet

log = logging.getLogger("nonecap_mcp.x402")
T = TypeVar("T")

# Our captcha types → the rail's task types (its price table keys).
X402_TASK_TYPES: dict[str, str] = {"hcaptcha": "HardCaptchaTokenProxyLess"}
WalletLoader = Callable[[], Awaitable[Wallet | None]]
ORPHAN_AFTER_SECONDS = 300  # far beyond the paid request's 75 s timeout and any authorization's validity


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _token(body: Any) -> str | None:
    solution = body.get("solution") if isinstance(body, dict) else None
    if not isinstance(solution, dict):
        return None
    for key in ("token", "gRecaptchaResponse"):
        if isinstance(solution.get(key), str):
            return solution[key]
    return next((v for v in solution.values() if isinstance(v, str)), None)


def to_solve(record: X402Solve, token: str | None = None) -> Solve:
    """The tools' view of a ledger record; the rail's resultToken never leaves the ledger.

    The captcha token itself is not stored: `get` keeps this process's tokens in memory
    and re-fetches older ones for free with the stored resultToken."""
    return Solve(
        id=record.id,
        type=record.type,
        status=record.status,
        sitekey=record.sitekey,
        url=record.url,
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

    def __init__(self, client: X402Client, *, policy: SpendPolicy, ledger_path: Path, wallet: WalletLoader,
                 background: TaskGroup) -> None:
        self.client = client
        self.policy = policy
        self._ledger_path = ledger_path
        self._wallet = wallet
        self._background = background
        self._inflight: dict[str, anyio.Event] = {}
        self._tokens: dict[str, str] = {}  # tokens of this process's solves; the ledger keeps only the resultToken

    @cached_property
    def ledger(self) -> Ledger:
        """Opened on first x402 use, so credits-only users never get a state directory."""
        return Ledger(self._ledger_path)

    async def _db(self, work: Callable[[Ledger], T]) -> T:
        """Run `work` on the ledger in a worker thread: SQLite (and opening it) may block."""
        return await anyio.to_thread.run_sync(lambda: work(self.ledger))

    @staticmethod
    def task_type(captcha_type: str) -> str:
        """The rail's task type for one of ours, or an error naming `type`."""
        try:
            return X402_TASK_TYPES[captcha_type]
        except KeyError:
            raise InvalidArgumentError("type", f"The x402 rail supports type {', '.join(X402_TASK_TYPES)}; use rail=credits for {captcha_type}.") from None

    @classmethod
    def check_body(cls, body: dict[str, Any]) -> None:
        """Refuse, naming the parameter, what the x402 rail cannot do (before any request)."""
        cls.task_type(body["type"])
        for param in ("rqdata", "proxy", "webhook_url"):
            if param in body:
                raise InvalidArgumentError(param, f"The x402 rail solves proxyless hcaptcha only and takes no {param}; use rail=credits.")

    async def price_for(self, captcha_type: str) -> Decimal:
        """The published USD price of one solve of this type."""
        task_type = self.task_type(captcha_type)
        prices = (await self.client.pricing()).prices_usd
        if task_type not in prices:
            raise NoneCapError("unexpected_response", f"The x402 rail publishes no price for {task_type}.")
        return prices[task_type]

    async def wallet(self) -> Wallet:
        """The paying wallet, or a configuration error that says how to set one up."""
        wallet = await self._wallet()
        if wallet is None:
            raise ConfigurationError("missing_wallet", "No x402 wallet is configured (NONECAP_WALLET_PRIVATE_KEY or `nonecap-mcp wallet create`).")
        return wallet

    def _check_budget(self, requirement: PaymentRequirement) -> None:
        """The daily budget before signing (the ledger re-checks it atomically when reserving)."""
        spent = self.ledger.spent_today_atomic()
        if spent + requirement.amount_atomic > usd_to_atomic(self.policy.daily_budget_usd):
            raise BudgetExceeded(spent_usd=atomic_to_usd(spent), budget_usd=self.policy.daily_budget_usd,
                                 amount_usd=atomic_to_usd(requirement.amount_atomic))

    async def _authorize(self, answer: TaskAnswer, price: Decimal, wallet: Wallet) -> SignedPayment:
        """Steps 2-3: policy and budget, and only then a signature (in a worker thread)."""
        required = parse_payment_required(answer.body, answer.headers.get("PAYMENT-REQUIRED"))
        pricing = await self.client.pricing()
        return await anyio.to_thread.run_sync(lambda: authorize_payment(
            required, policy=self.policy, price_usd=price, pricing_pay_to=pricing.pay_to,
            resource_url=self.client.create_task_url, private_key=wallet.private_key, before_signing=self._check_budget))

    async def start(self, *, captcha_type: str, sitekey: str, url: str, user_agent: str | None) -> str:
        """Pay for one solve and start it; returns the local solve id (`x402_…`).

        Everything up to the paid request happens in the caller, so a refused payment is
        the caller's error. The paid request itself runs in the background.
        """
        task_type = self.task_type(captcha_type)
        wallet = await self.wallet()
        price = await self.price_for(captcha_type)
        task = {"type": task_type, "websiteURL": url, "websiteKey": sitekey} | ({"userAgent": user_agent} if user_agent else {})
        body = {"task": task}
        record = X402Solve(id=new_x402_id(), type=captcha_type, sitekey=sitekey, url=url, status="solving", task_id=None,
                           result_token=None, error_code=None, error_message=None, cost_usd=None,
                           settlement_tx=None, created_at=_now(), finished_at=None)
        answer = await self.client.create_task(body)
        if answer.status != 402:
            raise NoneCapError("unexpected_response", f"The x402 rail answered HTTP {answer.status} to an unpaid request instead of 402.")
        payment = await self._authorize(answer, price, wallet)
        with anyio.CancelScope(shield=True):  # once reserved, the payment must also be sent and tracked
            await self._db(lambda ledger: ledger.reserve_payment(
                nonce=payment.nonce, solve_id=record.id, amount_atomic=payment.value_atomic, pay_to=payment.pay_to,
                network=self.policy.network, asset=NETWORKS[self.policy.network].asset, task_type=task_type,
                valid_before=payment.valid_before, daily_budget_atomic=usd_to_atomic(self.policy.daily_budget_usd)))
            await self._db(lambda ledger: ledger.upsert_solve(record))
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
            await self._db(lambda ledger: ledger.mark_payment(payment.nonce, "sent"))
            answer = await self.client.create_task(body, payment)
            state, tx = self._apply(record, answer, payment)
            outcome = (state, tx, None)
        except PaymentOutcomeUnknown as exc:
            self._fail(record, "failed", exc.code, exc.message)
            outcome = ("unknown", None, exc.message)
        except X402Error as exc:
            self._fail(record, "failed", exc.code, exc.message)
            outcome = ("failed", None, exc.message)
        except Exception as exc:  # a bug must not lose the record of a payment that was sent
            log.exception("x402 payment %s ended unexpectedly", record.id)
            outcome = ("unknown", None, type(exc).__name__)
        finally:
            if outcome[0] == "unknown" and record.status == "solving":
                self._fail(record, "failed", "payment_outcome_unknown", outcome[2] or "The paid request did not finish.")
            with anyio.CancelScope(shield=True):
                await self._record(record, payment, outcome)
            self._inflight.pop(record.id, None)
            done.set()

    async def _record(self, record: X402Solve, payment: SignedPayment, outcome: tuple[str, str | None, str | None]) -> None:
        """Write a payment's outcome; a ledger that fails now is logged, never raised, since
        this runs in the server's background task group and must not take the server down."""
        state, tx, error = outcome
        try:
            await self._db(lambda ledger: ledger.mark_payment(payment.nonce, state, transaction=tx, error=error))
            await self._db(lambda ledger: ledger.upsert_solve(record))
        except Exception:
            log.exception("could not record the outcome (%s) of x402 payment for %s", state, record.id)

    @staticmethod
    def _fail(record: X402Solve, status: str, code: str, message: str) -> None:
        record.status, record.error_code, record.error_message, record.finished_at = status, code, message, _now()

    def _apply(self, record: X402Solve, answer: TaskAnswer, payment: SignedPayment) -> tuple[str, str | None]:
        """Update the record from the paid answer; returns the payment's new ledger state and tx."""
        if answer.status == 200:
            receipt = decode_receipt(answer.receipt_header)
            body = answer.body if isinstance(answer.body, dict) else {}
            record.status, record.finished_at = "solved", _now()
            token, record.task_id = _token(body), body.get("taskId")
            if token:
                self._tokens[record.id] = token
            record.result_token = body.get("resultToken")
            record.cost_usd = str(atomic_to_usd(payment.value_atomic))
            record.settlement_tx = receipt.transaction if receipt else None
            return ("settled" if receipt is None or receipt.success else "unknown"), record.settlement_tx
        if answer.status == 422:
            self._fail(record, "failed", "x402_unsolvable", error_text(answer.body, "No provider could solve this captcha."))
        elif answer.status == 504:
            self._fail(record, "expired", "x402_timeout", error_text(answer.body, "The solve did not finish within 60 seconds."))
        else:
            self._fail(record, "failed", "x402_http_402", error_text(answer.body, "The rail did not accept the payment."))
        return "failed", None

    async def get(self, solve_id: str, *, wait: int = 0) -> Solve:
        """A solve from the ledger, waiting up to `wait` s while it runs; a solved one is
        re-fetched for free through getTaskResult (falling back on the ledger's copy)."""
        done = self._inflight.get(solve_id)
        if done is not None and wait > 0:
            with anyio.move_on_after(wait):
                await done.wait()
        record = await self._db(lambda ledger: ledger.get_solve(solve_id))
        if record is None:
            raise NoneCapError("not_found", f"No x402 solve {solve_id} is recorded on this machine.", guidance=LOCAL["unknown_x402_solve"])
        record = await self._unless_orphaned(record)
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

    async def list(self, *, limit: int, starting_after: str | None, status: str | None, type: str | None) -> SolveList:
        """x402 solves from the ledger, newest first."""
        records, has_more = await self._db(
            lambda ledger: ledger.list_solves(limit=limit, starting_after=starting_after, status=status, type=type))
        solves = [to_solve(await self._unless_orphaned(r), self._tokens.get(r.id)) for r in records]
        return SolveList(data=solves, has_more=has_more, next_starting_after=solves[-1].id if has_more and solves else None)

    async def _unless_orphaned(self, record: X402Solve) -> X402Solve:
        """A solve still "solving" long after any paid request could have ended belongs to a
        process that died mid-payment: record its payment as unknown (counted as spent)."""
        if record.status != "solving" or record.id in self._inflight:
            return record
        started = datetime.fromisoformat(record.created_at)
        if (datetime.now(UTC) - started).total_seconds() < ORPHAN_AFTER_SECONDS:
            return record
        self._fail(record, "failed", "payment_outcome_unknown", "The process paying for this solve stopped before the answer arrived.")
        for payment in await self._db(lambda ledger: ledger.payments_for(record.id)):
            if payment["state"] in ("signed", "sent"):
                await self._db(lambda ledger, nonce=payment["nonce"]: ledger.mark_payment(nonce, "unknown"))
        await self._db(lambda ledger: ledger.upsert_solve(record))
        return record

    async def spent_today(self) -> Decimal:
        return atomic_to_usd(await self._db(lambda ledger: ledger.spent_today_atomic()))
