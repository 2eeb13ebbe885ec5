"""Request validation exactly as the v1 API does it: 400 for structure, 422 for values.

Order matters to clients that test it: malformed JSON or a missing required field is a 400
`invalid_request` (param names the field); a present field with a bad value is a 422
`validation_error` with `param`. No message ever echoes a proxy, since it may hold a password.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from typing import NoReturn
from urllib.parse import urlsplit

from nonecap_mcp.sandbox.errors import ApiError

SOLVE_TYPES = ("hcaptcha", "hcaptcha_enterprise")
RESERVED_TYPES = ("recaptcha_v2", "recaptcha_v3", "cloudflare_turnstile", "funcaptcha")
STATUSES = ("pending", "solving", "solved", "failed", "cancelled", "expired")
PROXY_SCHEMES = ("http", "https", "socks4", "socks5")
PROXY_KEYS = frozenset({"host", "port", "scheme", "username", "password"})
FEEDBACK_OUTCOMES = ("accepted", "rejected", "unknown", "unused", "error")
MAX_FEEDBACK_REASON = 512
MAX_FEEDBACK_CONTEXT = 2000
MAX_FEEDBACK_BATCH = 500
MAX_WAIT_S = 90
MAX_LIMIT = 100
DEFAULT_LIMIT = 20
SOLVE_ID = re.compile(r"solve_[0-9A-HJKMNP-TV-Z]{26}")
_DIGITS = re.compile(r"[0-9]{1,6}")
_PROXY_FORMAT = "scheme://[user:pass@]host:port with scheme http, https, socks4 or socks5"


@dataclass(frozen=True)
class SolveRequest:
    """The fields of a create that the solve keeps; the proxy is validated and then dropped."""

    type: str
    sitekey: str
    url: str
    user_agent: str | None = None  # the solve presents it (else a sandbox browser's)


@dataclass(frozen=True)
class Feedback:
    """A verdict on a solve's token, as reported."""

    outcome: str
    reason: str | None
    context: str | None
    reported_at: str | None


@dataclass(frozen=True)
class ListQuery:
    """Validated query of GET /v1/solves."""

    limit: int
    starting_after: str | None
    status: str | None
    type: str | None


def parse_json_object(body: bytes) -> dict[str, object]:
    """The body as a JSON object, or 400 invalid_request (NaN and Infinity are not JSON)."""
    try:
        value = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError):
        raise ApiError("invalid_request", "Request body is not valid JSON.") from None
    if not isinstance(value, dict):
        raise ApiError("invalid_request", "Request body must be a JSON object.")
    return value


def _reject_constant(name: str) -> object:
    """json.loads hook that refuses NaN/Infinity, which strict JSON parsers reject too."""
    raise ValueError(f"{name} is not valid JSON")


def parse_solve_request(body: bytes) -> SolveRequest:
    """Validate a POST /v1/solves body in the order the API reports problems."""
    fields = parse_json_object(body)
    for name in ("type", "sitekey", "url"):
        if fields.get(name) is None:
            raise ApiError("invalid_request", f"Missing required field: {name}.", param=name)
    solve_type = _check_type(fields["type"])
    sitekey = _nonempty_string(fields["sitekey"], "sitekey")
    url = _nonempty_string(fields["url"], "url")
    if not is_http_url(url):
        raise ApiError("validation_error", "url must be an absolute http(s) URL with a host.", param="url")
    if fields.get("rqdata") is not None:  # optional for both types: many enterprise sites issue none
        _nonempty_string(fields["rqdata"], "rqdata")
    user_agent = fields.get("user_agent")
    if user_agent is not None:
        _nonempty_string(user_agent, "user_agent")
    if fields.get("proxy") is not None:
        _check_proxy(fields["proxy"])
    webhook_url = fields.get("webhook_url")
    if webhook_url is not None and not (isinstance(webhook_url, str) and is_http_url(webhook_url)):
        raise ApiError("validation_error", "webhook_url must be an absolute http(s) URL.", param="webhook_url")
    return SolveRequest(solve_type, sitekey, url, user_agent if isinstance(user_agent, str) else None)


def parse_feedback(fields: dict[str, object]) -> Feedback:
    """One report (of POST /v1/solves/{id}/feedback, or an item of POST /v1/feedback).

    `reason` and `context` are truncated, never refused, for length: they are free text a
    human reads; `reported_at` is advisory and only needs to be a string.
    """
    outcome = fields.get("outcome")
    if outcome is None:
        raise ApiError("invalid_request", "Missing required field: outcome.", param="outcome")
    if outcome not in FEEDBACK_OUTCOMES:
        raise ApiError(
            "validation_error", "outcome must be one of: " + ", ".join(FEEDBACK_OUTCOMES) + ".", param="outcome"
        )
    texts: dict[str, str | None] = {}
    for name, limit in (("reason", MAX_FEEDBACK_REASON), ("context", MAX_FEEDBACK_CONTEXT), ("reported_at", 64)):
        value = fields.get(name)
        if value is not None and not isinstance(value, str):
            raise ApiError("validation_error", f"{name} must be a string.", param=name)
        texts[name] = None if value is None else value[:limit]
    return Feedback(str(outcome), texts["reason"], texts["context"], texts["reported_at"])


def _check_type(value: object) -> str:
    """One of the live captcha types; reserved ones get a message saying so."""
    if value in SOLVE_TYPES:
        return str(value)
    if value in RESERVED_TYPES:
        message = f"type {value} is reserved for future expansion and not yet supported."
    else:
        message = "Unknown type; expected one of: " + ", ".join(SOLVE_TYPES) + "."
    raise ApiError("validation_error", message, param="type")


def _nonempty_string(value: object, param: str) -> str:
    """A present field must be a non-empty string."""
    if not isinstance(value, str) or not value.strip():
        raise ApiError("validation_error", f"{param} must be a non-empty string.", param=param)
    return value


def is_http_url(value: str) -> bool:
    """An absolute http or https URL with a host (and a valid port, if any)."""
    if any(char.isspace() for char in value):
        return False
    try:
        parts = urlsplit(value)
        _ = parts.port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _check_proxy(value: object) -> None:
    """Proxy as `scheme://[user:pass@]host:port` or as an object with the same parts."""
    if isinstance(value, str):
        _check_proxy_string(value)
    elif isinstance(value, dict):
        _check_proxy_object(value)
    else:
        _bad_proxy("proxy must be a string or an object.")


def _check_proxy_string(value: str) -> None:
    """Validate the URL form without ever quoting it back."""
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        _bad_proxy(f"proxy must look like {_PROXY_FORMAT}; its port is invalid.")
    if parts.scheme not in PROXY_SCHEMES or not parts.hostname or port is None or not 1 <= port <= 65535:
        _bad_proxy(f"proxy must look like {_PROXY_FORMAT}.")
    if parts.path not in ("", "/") or parts.query or parts.fragment or any(c.isspace() for c in value):
        _bad_proxy(f"proxy must look like {_PROXY_FORMAT}, with nothing after the port.")
    if parts.password is not None and not parts.username:
        _bad_proxy("proxy has a password but no username.")


def _ip_literal(host: str) -> bool:
    """An IP address as the object form may carry it bare, e.g. IPv6 `2001:db8::1`."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _check_proxy_object(value: dict[str, object]) -> None:
    """Validate the object form; unknown keys are refused so a typo cannot drop the auth."""
    unknown = sorted(set(value) - PROXY_KEYS)
    if unknown:
        _bad_proxy(
            "proxy has unknown key(s): " + ", ".join(unknown) + "; allowed: " + ", ".join(sorted(PROXY_KEYS)) + "."
        )
    host, port, scheme = value.get("host"), value.get("port"), value.get("scheme", "http")
    if not isinstance(host, str) or not host.strip() or (any(c in host for c in "/@: \t") and not _ip_literal(host)):
        _bad_proxy("proxy.host must be a host name or IP address.")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        _bad_proxy("proxy.port must be an integer from 1 to 65535.")
    if scheme not in PROXY_SCHEMES:
        _bad_proxy("proxy.scheme must be one of: " + ", ".join(PROXY_SCHEMES) + ".")
    username, password = value.get("username"), value.get("password")
    if any(item is not None and not isinstance(item, str) for item in (username, password)):
        _bad_proxy("proxy.username and proxy.password must be strings.")
    if password is not None and not username:
        _bad_proxy("proxy has a password but no username.")


def _bad_proxy(message: str) -> NoReturn:
    """Every proxy problem is reported against the `proxy` field."""
    raise ApiError("validation_error", message, param="proxy")


def parse_wait(query: dict[str, str]) -> int | None:
    """`?wait=N` as whole seconds 1-90, or None when absent."""
    raw = query.get("wait")
    if raw is None:
        return None
    return _bounded_int(raw, "wait", 1, MAX_WAIT_S)


def parse_list_query(query: dict[str, str]) -> ListQuery:
    """Validate limit, starting_after and the two filters of GET /v1/solves."""
    limit = _bounded_int(query["limit"], "limit", 1, MAX_LIMIT) if "limit" in query else DEFAULT_LIMIT
    starting_after = query.get("starting_after")
    if starting_after is not None and not SOLVE_ID.fullmatch(starting_after):
        raise ApiError(
            "validation_error", "starting_after must be a solve id from a previous page.", param="starting_after"
        )
    status, solve_type = query.get("status"), query.get("type")
    if status is not None and status not in STATUSES:
        raise ApiError("validation_error", "status must be one of: " + ", ".join(STATUSES) + ".", param="status")
    if solve_type is not None and solve_type not in SOLVE_TYPES:
        raise ApiError("validation_error", "type must be one of: " + ", ".join(SOLVE_TYPES) + ".", param="type")
    return ListQuery(limit, starting_after, status, solve_type)


def _bounded_int(raw: str, param: str, low: int, high: int) -> int:
    """A plain decimal integer within [low, high], else 422 naming the parameter."""
    if not _DIGITS.fullmatch(raw) or not low <= int(raw) <= high:
        raise ApiError("validation_error", f"{param} must be an integer from {low} to {high}.", param=param)
    return int(raw)
