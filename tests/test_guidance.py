"""Every error code the server can raise has its own guidance entry: no silent fallback.

The codes are found by reading the source (every literal code passed to one of our error
classes, or set by one of their constructors), so a new `raise NoneCapError("new_code", …)`
fails here until server/guidance.py says what an agent should do about it.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import nonecap_mcp
import nonecap_mcp.tools
from nonecap_mcp import guidance
from nonecap_mcp.credentials import CredentialError
from nonecap_mcp.errors import NoneCapError
from nonecap_mcp.guidance import UnregisteredCodeWarning

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [path for folder in ("server", "tools") for path in (ROOT / folder).rglob("*.py") if "sandbox" not in path.parts]
CODE = re.compile(r"[a-z][a-z0-9_]*")


def _error_classes() -> dict[str, type[Exception]]:
    """Our error classes by name: NoneCapError and its subclasses, and CredentialError
    (whose code becomes a ConfigurationError's)."""
    for package in (nonecap_mcp, nonecap_mcp.tools):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if ".sandbox" not in module.name:
                importlib.import_module(module.name)
    found: dict[str, type[Exception]] = {"CredentialError": CredentialError}
    pending: list[type[Exception]] = [NoneCapError]
    while pending:
        cls = pending.pop()
        found[cls.__name__] = cls
        pending.extend(cls.__subclasses__())
    return found


def _code_position(cls: type[Exception]) -> tuple[int | None, str | None]:
    """Where a class takes its code: (positional index, default), or (None, None)."""
    params = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]
    for index, param in enumerate(params):
        if param.name == "code":
            return index, param.default if isinstance(param.default, str) else None
    return None, None


def raised_codes() -> set[str]:
    """Every literal code passed to our error classes anywhere in server/ and tools/."""
    classes = _error_classes()
    codes: set[str] = set()
    for cls in classes.values():
        _, default = _code_position(cls)
        if default:
            codes.add(default)
    for path in SOURCES:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
            if name == "__init__" and isinstance(func, ast.Attribute) and isinstance(func.value, ast.Call):
                position = 0  # super().__init__(code, …) inside one of our classes
            elif name in classes:
                position, _ = _code_position(classes[name])
            else:
                continue
            candidates = [k.value for k in node.keywords if k.arg == "code"]
            if position is not None and position < len(node.args):
                candidates.append(node.args[position])
            for arg in candidates:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and CODE.fullmatch(arg.value):
                    codes.add(arg.value)
    return codes


def test_the_scan_finds_codes_from_every_corner() -> None:
    codes = raised_codes()
    assert {"invalid_argument", "confirmation_declined", "not_cancellable", "missing_api_key", "invalid_api_key",
            "budget_exceeded", "payment_refused", "invalid_wallet_key", "rpc_error", "outcome_unknown"} <= codes


def test_every_raised_code_has_guidance() -> None:
    registered = set(guidance.LOCAL) | set(guidance.X402_FAILURES) | set(guidance.API_ERRORS)
    missing = sorted(raised_codes() - registered)
    assert not missing, f"add guidance entries for {missing} in server/guidance.py"


def test_an_unregistered_code_is_loud_not_silently_unexpected_response() -> None:
    with pytest.warns(UnregisteredCodeWarning, match="no_such_code"):
        error = NoneCapError("no_such_code", "something")
    assert error.guidance == guidance.LOCAL["unexpected_error"]  # cautious, never "retry"


def test_the_x402_setup_timeout_is_not_called_an_unreadable_answer() -> None:
    error = NoneCapError("x402_http_504", "The x402 rail did not offer a payment in time; nothing was signed or paid.")
    assert error.guidance == guidance.X402_STATUSES[504] and "does not understand" not in error.guidance.hint


def test_a_refusal_without_nonecaps_envelope_never_blames_the_key_or_the_account() -> None:
    """A 401-403 without NoneCap's error envelope (`http_403`) may come from a proxy or WAF in front
    of the API: the plain fallback, not "replace your key" or "top up"; a 429 is a throttle whoever sent it."""
    assert guidance.for_api_error("http_403", 403).action == "fix_parameter"
    assert guidance.for_api_error("http_401", 401).action == "fix_parameter"
    assert guidance.for_api_error("http_402", 402).action == "fix_parameter"
    assert guidance.for_api_error("http_429", 429).action == "wait_and_retry"
    assert guidance.for_api_error("ext_new_code", 403).action == "check_api_key"  # NoneCap's own envelope does speak for the key


def test_no_code_of_ours_means_something_else_upstream() -> None:
    """A code this server raises itself never reuses one NoneCap's API or its solves use for another
    condition: an agent (or a log search) reading `rate_capped` could not tell the operator's
    per-minute cap from the API's per-sitekey one. Shared entries are the same guidance object."""
    upstream = {**guidance.API_ERRORS, **guidance.SOLVE_FAILURES}
    for table in (guidance.LOCAL, guidance.X402_FAILURES):
        assert not {code for code in table.keys() & upstream.keys() if table[code] is not upstream[code]}
