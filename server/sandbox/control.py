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

_FAULT_FIELDS = frozenset({"method", "path", "action", "times", "status", "code", "retry_after", "seconds"})
_ACCOUNT_FIELDS = frozenset({"api_key", "credits", "locked", "email"})


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
    """POST /_sandbox/accounts: create or update an account (api_key, credits, locked, email)."""
    fields = _fields(request.body, _ACCOUNT_FIELDS)
    try:
        account = state.add_account(**{"api_key": None, **fields})
    except InvalidField as error:
        raise _rejected(error) from None
    return Response(200, account)


def reset(state: SandboxState, _request: ApiRequest, _params: dict[str, str]) -> Response:
    """POST /_sandbox/reset: solves, faults, request log and accounts back to defaults."""
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


CONTROL_ROUTES: Routes = (
    (re.compile(r"/_sandbox/faults"), {"POST": add_fault}),
    (re.compile(r"/_sandbox/accounts"), {"POST": add_account}),
    (re.compile(r"/_sandbox/reset"), {"POST": reset}),
    (re.compile(r"/_sandbox/requests"), {"GET": list_requests, "DELETE": clear_requests}),
    (re.compile(r"/_sandbox/sitekeys"), {"GET": list_sitekeys}),
)
