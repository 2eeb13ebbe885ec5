"""Pydantic models for what the API returns and what the tools return.

The API's resources are additive within v1, so every model ignores unknown fields, and
open enums (status, type) are plain strings: a new upstream status must not break a call.
The same models are the tools' output schemas, so agents see the API's own field names.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidatorFunctionWrapHandler, model_validator

from nonecap_mcp.guidance import Guidance, for_solve, how_to_use

log = logging.getLogger("nonecap_mcp.http")

TERMINAL_STATUSES = frozenset({"solved", "failed", "cancelled", "expired"})
UNREADABLE_STATUS = "unknown"  # an open-enum value: treated as still running (poll it)


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class SolveError(_Lenient):
    """Why a terminal solve produced no token."""

    code: str
    message: str | None = None
    reason: str | None = Field(default=None, description="Sub-reason of the code, e.g. proxy_rejected, sitekey_rate_limited.")
    retryable: bool | None = Field(default=None, description="Whether re-submitting the same request unchanged can succeed.")


class SolveWarning(_Lenient):
    """An advisory on a solve, e.g. proxy_session_refused."""

    code: str
    message: str | None = None


class Solve(_Lenient):
    """One captcha-solving job, with every field of the v1 solve object plus guidance."""

    id: str = Field(description="Prefixed ULID, e.g. solve_01HQF7K3JKWZX.")
    object: str = "solve"
    type: str | None = Field(default=None, description="create_solve's captcha type.")
    status: str = Field(description="pending, solving, solved, failed, cancelled or expired.")
    sitekey: str | None = None
    url: str | None = None
    token: str | None = Field(default=None, description="Token (image_to_text: the text), iff status is solved.")
    resp_key: str | None = Field(default=None, description="hCaptcha's response key (E0_…) for sites that verify it with the token.")
    user_agent: str | None = Field(default=None, description="Submit the token with this User-Agent (and from the solve's proxy IP).")
    warnings: list[SolveWarning] = Field(default_factory=list, description="Advisories, e.g. proxy_session_refused.")
    error: SolveError | None = None
    credits_charged: int | None = Field(default=None, description="Final billed credits; null until terminal.")
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    queue_ms: int | None = None
    resolve_ms: int | None = None
    rail: Literal["credits", "x402"] = Field(default="credits", description="How this solve is paid for.")
    cost_usd: str | None = Field(default=None, description="x402: USDC paid, as a decimal string (only when solved).")
    settlement_tx: str | None = Field(default=None, description="x402: the on-chain settlement transaction.")
    guidance: Guidance | None = Field(default=None, description="Next step when the solve is not solved, or for the next solves when a warning says so.")
    how_to_use: str | None = Field(default=None, description="When solved: where the token goes and how long it lasts.")
    client: str | None = Field(default=None, description="Team server: the registered client that started it.")

    @model_validator(mode="wrap")
    @classmethod
    def _keep_what_is_readable(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Solve:
        """A solve whose id is readable is never lost to an odd field (`queue_ms: 1.5`, an
        error that is a string, a status that is a number): such fields are dropped (an
        unreadable status becomes "unknown", i.e. still running) and their names logged.
        Only an unreadable `id` fails validation."""
        if not isinstance(data, dict):
            return handler(data)
        data = dict(data)
        while True:
            try:
                return handler(data)
            except ValidationError as exc:
                odd = {str(error["loc"][0]) for error in exc.errors() if error["loc"]} & data.keys()
                if not odd or "id" in odd:
                    raise
                log.warning("ignored unreadable solve field(s): %s", ", ".join(sorted(odd)))
                for name in odd:
                    data.pop(name)
                if "status" in odd:
                    data["status"] = UNREADABLE_STATUS

    @property
    def is_terminal(self) -> bool:
        """Unknown statuses count as still running, never as failed."""
        return self.status in TERMINAL_STATUSES

    def with_guidance(self) -> Solve:
        """This solve with the guidance its status and failure code call for, and, once solved,
        how to use its token (the step agents most often get wrong: late, reused or from another client)."""
        error = self.error
        return self.model_copy(
            update={
                "guidance": for_solve(self.status, error.code if error else None, error.reason if error else None,
                                      [warning.code for warning in self.warnings]),
                "how_to_use": how_to_use(self.type, self.rail) if self.status == "solved" else None,
            }
        )


class SolveList(_Lenient):
    """One page of solves, newest first."""

    data: list[Solve]
    has_more: bool
    next_starting_after: str | None = Field(
        default=None, description="Pass as starting_after to get the next page; null on the last page."
    )


class AccountPlan(_Lenient):
    """The plan's day: today's allowance of solves and when it resets (00:00 UTC)."""

    remaining_today: int | None = None
    resets_at: str | None = None


class Account(_Lenient):
    """The authenticated account (GET /v1/me)."""

    id: str | None = None
    email: str | None = None
    credits_balance: int | None = None
    created_at: str | None = None
    plan: AccountPlan | None = None


class Balance(BaseModel):
    """What the agent can still spend, on each rail that is configured."""

    credits_balance: int | None = Field(default=None, description="Solves the account can still start (1 credit each).")
    account_id: str | None = None
    key_mode: Literal["live", "test"] | None = Field(default=None, description="From the key prefix; test keys never bill.")
    plan_remaining_today: int | None = Field(default=None, description="Solves left today on the account's plan.")
    plan_resets_at: str | None = Field(default=None, description="When the plan's day resets (00:00 UTC).")
    wallet_address: str | None = Field(default=None, description="x402: the paying wallet.")
    usdc_balance: str | None = Field(default=None, description="x402: the wallet's USDC, as a decimal string.")
    x402_spent_today_usd: str | None = Field(
        default=None, description="x402: spent today (UTC): settled, plus payments in flight or of unknown outcome."
    )
    x402_held_usd: str | None = Field(
        default=None, description="x402: failed payments whose signed authorization has not expired; released when it does."
    )
    x402_daily_budget_usd: str | None = None
    x402_budget_left_usd: str | None = Field(default=None, description="x402: the daily budget minus spent and held.")
    sandbox: bool = Field(description="True when talking to the built-in offline sandbox.")
    allowed_sites: list[str] | None = Field(default=None, description="Operator: the only sites solves may target (null = any).")
    allowed_types: list[str] | None = Field(default=None, description="Operator: the only captcha types allowed (null = any).")
    daily_credit_budget: int | None = Field(default=None, description="Operator: most credits per UTC day (null = no limit).")
    credit_budget_left_today: int | None = Field(default=None, description="Operator: credits this server may still use today.")
    max_solves_per_minute: int | None = Field(default=None, description="Operator: most solves started per minute, either rail.")
    notes: list[str] = Field(default_factory=list, description="Why a rail's figures are missing, if they are.")


class RailPrice(BaseModel):
    """The price of one solve on one payment rail."""

    rail: Literal["credits", "x402"]
    captcha_type: str = Field(description="The create_solve type, or the rail's own task type when no tool type maps to it.")
    task_type: str | None = Field(default=None, description="x402: the rail's task type name.")
    price: str = Field(description="Credits per solve on the credits rail, USD on x402 (decimal string).")
    unit: Literal["credit", "USD"]
    charged: str = Field(description="When the charge happens and when it is returned.")


class Pricing(BaseModel):
    """Supported captcha types and what each costs."""

    prices: list[RailPrice]
    types: dict[str, list[str]] = Field(description="The create_solve types each rail sells.")
    x402_pay_to: str | None = Field(default=None, description="x402: the published receiving address.")
    x402_network: str | None = None
    notes: list[str] = Field(default_factory=list)


class Feedback(_Lenient):
    """The verdict NoneCap holds on a solve's token (POST /v1/solves/{id}/feedback)."""

    solve_id: str
    outcome: str = Field(description="accepted, rejected, unknown, unused or error.")
    reason: str | None = None
    context: str | None = None
    report_count: int | None = Field(default=None, description="How many times this verdict was written; 1 on the first report.")
    created_at: str | None = None
    updated_at: str | None = None
