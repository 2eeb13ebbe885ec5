"""The /v1 endpoints and the router shared with the /_sandbox control endpoints.

Routing comes first (404 unknown path, 405 wrong method, both without auth, so nothing
about accounts leaks), then authentication, then validation, then the state change.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from nonecap_mcp.sandbox.errors import ApiError, Response
from nonecap_mcp.sandbox.outcomes import plan_for
from nonecap_mcp.sandbox.request import ApiRequest
from nonecap_mcp.sandbox.solves import TERMINAL
from nonecap_mcp.sandbox.state import SandboxState
from nonecap_mcp.sandbox.validation import (
    parse_feedback,
    parse_json_object,
    parse_list_query,
    parse_solve_request,
    parse_wait,
)

__all__ = ["V1_ROUTES", "ApiRequest", "Endpoint", "Routes", "dispatch"]


Endpoint = Callable[[SandboxState, ApiRequest, dict[str, str]], Response]
Routes = tuple[tuple[re.Pattern[str], dict[str, Endpoint]], ...]


def dispatch(routes: Routes, state: SandboxState, request: ApiRequest) -> Response:
    """Find the endpoint for method and path, or raise 404/405 with the error envelope."""
    for pattern, methods in routes:
        match = pattern.fullmatch(request.path)
        if match is None:
            continue
        endpoint = methods.get(request.method)
        if endpoint is None:
            allow = ", ".join(methods)
            raise ApiError(
                "invalid_request",
                f"Method {request.method} is not allowed here; use {allow}.",
                status=405,
                headers=(("Allow", allow),),
            )
        return endpoint(state, request, match.groupdict())
    raise ApiError("not_found", "No such endpoint.")


def _solve_response(solve: dict[str, object]) -> Response:
    """200 once terminal, 202 while pending or solving."""
    return Response(200 if solve["status"] in TERMINAL else 202, solve)


def _json_body(request: ApiRequest) -> bytes:
    """The body of a JSON route, or 415 when it was not sent as application/json."""
    media_type = (request.header("Content-Type") or "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise ApiError("unsupported_media_type", "Send the body as JSON with Content-Type: application/json.")
    return request.body


def create_solve(state: SandboxState, request: ApiRequest, _params: dict[str, str]) -> Response:
    """POST /v1/solves[?wait=N]."""
    api_key = state.authenticate(request.authorization)
    solve_request = parse_solve_request(_json_body(request))
    plan = plan_for(solve_request.sitekey)
    wait_s = parse_wait(request.query)
    return _solve_response(state.create_solve(api_key, solve_request, plan, wait_s))


def retrieve_solve(state: SandboxState, request: ApiRequest, params: dict[str, str]) -> Response:
    """GET /v1/solves/{id}[?wait=N]."""
    api_key = state.authenticate(request.authorization)
    wait_s = parse_wait(request.query)
    return _solve_response(state.solve_view(api_key, params["solve_id"], wait_s))


def cancel_solve(state: SandboxState, request: ApiRequest, params: dict[str, str]) -> Response:
    """DELETE /v1/solves/{id}."""
    api_key = state.authenticate(request.authorization)
    return Response(200, state.cancel_solve(api_key, params["solve_id"]))


def list_solves(state: SandboxState, request: ApiRequest, _params: dict[str, str]) -> Response:
    """GET /v1/solves?limit&starting_after&status&type."""
    api_key = state.authenticate(request.authorization)
    return Response(200, state.list_solves(api_key, parse_list_query(request.query)))


def report_feedback(state: SandboxState, request: ApiRequest, params: dict[str, str]) -> Response:
    """POST /v1/solves/{id}/feedback: 200 with the stored verdict (recorded, corrected or unchanged)."""
    api_key = state.authenticate(request.authorization)
    report = parse_feedback(parse_json_object(_json_body(request)))
    return Response(200, state.report_feedback(api_key, params["solve_id"], report))


def report_feedback_batch(state: SandboxState, request: ApiRequest, _params: dict[str, str]) -> Response:
    """POST /v1/feedback {"feedback": [...]}: 200 even when items fail; each result says how it went."""
    api_key = state.authenticate(request.authorization)
    items = parse_json_object(_json_body(request)).get("feedback")
    if items is None:
        raise ApiError("invalid_request", "Missing required field: feedback.", param="feedback")
    if not isinstance(items, list):
        raise ApiError("validation_error", "feedback must be a list of reports.", param="feedback")
    return Response(200, state.report_feedback_batch(api_key, items))


def retrieve_account(state: SandboxState, request: ApiRequest, _params: dict[str, str]) -> Response:
    """GET /v1/me."""
    api_key = state.authenticate(request.authorization)
    return Response(200, state.account_view(api_key))


V1_ROUTES: Routes = (
    (re.compile(r"/v1/solves"), {"GET": list_solves, "POST": create_solve}),
    (re.compile(r"/v1/solves/(?P<solve_id>[^/]+)"), {"GET": retrieve_solve, "DELETE": cancel_solve}),
    (re.compile(r"/v1/solves/(?P<solve_id>[^/]+)/feedback"), {"POST": report_feedback}),
    (re.compile(r"/v1/feedback"), {"POST": report_feedback_batch}),
    (re.compile(r"/v1/me"), {"GET": retrieve_account}),
)
