"""The /_sandbox control endpoints: the Python controls of `Sandbox`, over HTTP.

They let people drive the sandbox from an agent written in any language. No auth (the
sandbox listens on loopback), never logged, and never subject to faults.
"""

from __future__ import annotations

import re
from dataclasses import asdict

from nonecap_mcp.sandbox.api import ApiRequest, Routes
from nonecap_mcp.sandbox.errors import ApiError, InvalidField, Response
from nonecap_mcp.sandbox.faults import CONTROL_PREFIX, make_fault
from nonecap_mcp.sandbox.outcomes import TEST_SITEKEYS
from nonecap_mcp.sandbox.state import SandboxState
from nonecap_mcp.sandbox.validation import parse_json_object
from nonecap_mcp.sandbox.x402 import SANDBOX_PAY_TO, check_address, fund_amount
from nonecap_mcp.x402.networks import atomic_to_usd

_FAULT_FIELDS = frozenset({"method", "path", "action", "times", "status", "code", "retry_after", "seconds", "skip"})
_ACCOUNT_FIELDS = frozenset({"api_key", "credits", "locked", "email", "daily_solves"})
_X402_FIELDS = frozenset({"version", "overrides"})
_FUND_FIELDS = frozenset({"address", "usd"})


def is_control_path(path: str) -> bool:
    """Whether a path belongs to the control surface rather than the emulated API."""
    return path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/")


def _fields(body: bytes, allowed: frozenset[str]) -> dict[str, object]:
    """The JSON object body, refusing unknown keys so a typo is not silently ignored."""
    fields = parse_json_object(body)
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise ApiError("validation_error", "Unknown field(s): " + ", ".join(unknown) + ".", param=unknown[0])
    return fields


def _rejected(error: InvalidField) -> ApiError:
    """A control argument problem, as the API's own 422."""
    return ApiError("validation_error", str(error), param=error.param)


def add_fault(state: SandboxState, request: ApiRequest, _params: dict[str, str]) -> Response:
    """POST /_sandbox/faults with the fields of `Sandbox.inject_fault`."""
    fields = _fields(request.body, _FAULT_FIELDS)
    try:
        fault = make_fault(**{"method": None, "path": None, "action": None, **fields})
    except InvalidField as error:
        raise _rejected(error) from None
    state.add_fault(fault)
    return Response(200, fault.describe())


def add_account(state: SandboxState, request: ApiRequest, _params: dict[str, str]) -> Response:
    """POST /_sandbox/accounts: create or update an account (api_key, credits, locked, email,
    daily_solves: the plan's allowance, null for no plan)."""
    fields = _fields(request.body, _ACCOUNT_FIELDS)
    try:
        account = state.add_account(**{"api_key": None, **fields})
    except InvalidField as error:
        raise _rejected(error) from None
    return Response(200, account)


def reset(state: SandboxState, _request: ApiRequest, _params: dict[str, str]) -> Response:
    """POST /_sandbox/reset: solves, faults, request log, accounts and x402 state back to defaults."""
    state.reset()
    return Response(200, {"object": "sandbox", "reset": True})


def list_requests(state: SandboxState, _request: ApiRequest, _params: dict[str, str]) -> Response:
    """GET /_sandbox/requests: the request log, oldest first."""
    return Response(200, {"object": "list", "data": [asdict(entry) for entry in state.recorded()], "has_more": False})


def clear_requests(state: SandboxState, _request: ApiRequest, _params: dict[str, str]) -> Response:
    """DELETE /_sandbox/requests: empty the request log."""
    state.clear_log()
    return Response(200, {"object": "list", "data": [], "has_more": False})


def list_sitekeys(_state: SandboxState, _request: ApiRequest, _params: dict[str, str]) -> Response:
    """GET /_sandbox/sitekeys: the test sitekey table."""
    data = [{"sitekey": pattern, "outcome": outcome} for pattern, outcome in TEST_SITEKEYS.items()]
    return Response(200, {"object": "list", "data": data, "has_more": False})


def x402_view(state: SandboxState) -> dict[str, object]:
    """The x402 configuration, settlements and payment attempts, as JSON."""
    version, overrides = state.x402.config()
    settlements = [{**asdict(s), "usd": str(s.usd)} for s in state.x402.settlements()]
    return {
        "object": "x402",
        "version": version,
        "overrides": overrides,
        "pay_to": SANDBOX_PAY_TO,
        "rate_limit": state.x402.rate_limit,
        "settlements": settlements,
        "payment_attempts": [asdict(attempt) for attempt in state.x402.payment_attempts()],
    }


def configure_x402(state: SandboxState, request: ApiRequest, _params: dict[str, str]) -> Response:
    """POST /_sandbox/x402 {version, overrides}: like `Sandbox.set_x402` (omitted fields: 1, none)."""
    fields = _fields(request.body, _X402_FIELDS)
    try:
        state.x402.configure(fields.get("version", 1), fields.get("overrides"))
    except InvalidField as error:
        raise _rejected(error) from None
    return Response(200, x402_view(state))


def show_x402(state: SandboxState, _request: ApiRequest, _params: dict[str, str]) -> Response:
    """GET /_sandbox/x402: configuration, settlements and payment attempts."""
    return Response(200, x402_view(state))


def fund(state: SandboxState, request: ApiRequest, _params: dict[str, str]) -> Response:
    """POST /_sandbox/x402/fund {address, usd}: set an address's sandbox USDC balance."""
    fields = _fields(request.body, _FUND_FIELDS)
    try:
        address, atomic = check_address(fields.get("address")), fund_amount(fields.get("usd"))
    except InvalidField as error:
        raise _rejected(error) from None
    state.x402.chain.set_balance(address, atomic)
    return Response(200, {"object": "balance", "address": address, "usd": str(atomic_to_usd(atomic))})


CONTROL_ROUTES: Routes = (
    (re.compile(r"/_sandbox/faults"), {"POST": add_fault}),
    (re.compile(r"/_sandbox/accounts"), {"POST": add_account}),
    (re.compile(r"/_sandbox/reset"), {"POST": reset}),
    (re.compile(r"/_sandbox/requests"), {"GET": list_requests, "DELETE": clear_requests}),
    (re.compile(r"/_sandbox/sitekeys"), {"GET": list_sitekeys}),
    (re.compile(r"/_sandbox/x402"), {"GET": show_x402, "POST": configure_x402}),
    (re.compile(r"/_sandbox/x402/fund"), {"POST": fund}),
)
