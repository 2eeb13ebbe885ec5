"""Fault injection: make the next matching requests fail the ways a real network and API do.

Clients must survive 429/5xx with Retry-After, connections that drop before the request was
processed (nothing happened: safe to resend) and after it (the solve exists and was charged,
but the answer is lost: reconcile, never resend blindly). Faults reproduce each on demand.
"""

from __future__ import annotations

from dataclasses import dataclass

from nonecap_mcp.sandbox.errors import CODE_BY_STATUS, STATUS_BY_CODE, ApiError, InvalidField

ACTIONS = ("status", "drop_before", "drop_after", "delay")
CONTROL_PREFIX = "/_sandbox"


@dataclass
class Fault:
    """One armed fault; `remaining` counts down as matching requests consume it."""

    method: str
    path: str
    action: str
    remaining: int
    status: int | None = None
    code: str | None = None
    retry_after: int | None = None
    seconds: float | None = None
    skip: int = 0  # matching requests still to let through before the fault applies

    def matches(self, method: str, path: str) -> bool:
        """Same method (or `*`) and the exact path, or a prefix when the fault's path ends in `*`."""
        if self.method not in ("*", method):
            return False
        if self.path.endswith("*"):
            return path.startswith(self.path[:-1])
        return path == self.path

    def error(self) -> ApiError:
        """The error a `status` fault answers with, plus Retry-After when set."""
        headers = () if self.retry_after is None else (("Retry-After", str(self.retry_after)),)
        return ApiError(str(self.code), status=self.status, headers=headers)

    def describe(self) -> dict[str, object]:
        """The fault as JSON, for the control endpoint's answer (`skip` only while still skipping)."""
        described: dict[str, object] = {
            "object": "fault",
            "method": self.method,
            "path": self.path,
            "action": self.action,
            "times": self.remaining,
            "status": self.status,
            "code": self.code,
            "retry_after": self.retry_after,
            "seconds": self.seconds,
        }
        if self.skip:
            described["skip"] = self.skip
        return described


def make_fault(
    *,
    method: object,
    path: object,
    action: object,
    times: object = 1,
    status: object = None,
    code: object = None,
    retry_after: object = None,
    seconds: object = None,
    skip: object = 0,
) -> Fault:
    """Validate fault arguments (from Python or from JSON) into a `Fault`, or raise InvalidField.

    `delay` sleeps `seconds`, falling back to `retry_after` when only that is given; `skip`
    lets that many matching requests through untouched first.
    """
    if not isinstance(method, str) or not method.strip():
        raise InvalidField("method", "method must be an HTTP method such as POST, or *.")
    if not isinstance(path, str) or not path.startswith("/"):
        raise InvalidField("path", "path must start with / (end it with * to match a prefix).")
    if path.startswith(CONTROL_PREFIX):
        raise InvalidField("path", "faults cannot target the /_sandbox control endpoints.")
    if action not in ACTIONS:
        raise InvalidField("action", "action must be one of: " + ", ".join(ACTIONS) + ".")
    count = _int_or_none(times, "times", low=1)
    if count is None:
        raise InvalidField("times", "times must be an integer of at least 1.")
    fault = Fault(method.strip().upper(), path, str(action), count)
    fault.retry_after = _int_or_none(retry_after, "retry_after", low=0)
    fault.skip = _int_or_none(skip, "skip", low=0) or 0
    if action == "status":
        fault.status, fault.code = _status_and_code(status, code)
        if fault.code == "pool_exhausted" and fault.retry_after is None:
            fault.retry_after = 1
    elif action == "delay":
        fault.seconds = _delay_seconds(seconds, fault.retry_after)
    return fault


def _status_and_code(status: object, code: object) -> tuple[int, str]:
    """Complete a status fault from whichever of status and code was given."""
    if code is not None and (not isinstance(code, str) or not code.strip()):
        raise InvalidField("code", "code must be a non-empty string such as pool_exhausted.")
    given = _int_or_none(status, "status", low=400, high=599)
    if given is None and code is None:
        raise InvalidField("status", "action status needs a status, a code, or both.")
    if given is None:
        if code not in STATUS_BY_CODE:
            raise InvalidField("status", "status is required for a code the API does not define.")
        given = STATUS_BY_CODE[str(code)]
    return given, str(code) if code is not None else CODE_BY_STATUS.get(given, "internal_error")


def _delay_seconds(seconds: object, retry_after: int | None) -> float:
    """How long a delay fault sleeps before processing the request."""
    if seconds is None:
        seconds = retry_after
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds <= 120:
        raise InvalidField("seconds", "action delay needs seconds from 0 to 120.")
    return float(seconds)


def _int_or_none(value: object, param: str, *, low: int, high: int | None = None) -> int | None:
    """An optional integer argument within bounds (booleans are not integers here)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bounds = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise InvalidField(param, f"{param} must be an integer {bounds}.")
    return value
