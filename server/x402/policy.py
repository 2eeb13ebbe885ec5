"""Decide whether a 402 may be paid, before anything is signed.

Signing an EIP-3009 authorization is irreversible: whoever holds it can move the money
until it expires. The reference SDK clients check neither payTo, maxTimeoutSeconds nor
the EIP-712 domain, and several agents have paid whatever a server asked (see the
precedents in /work/shared/notes/x402.md). So every field of a 402 is treated as
untrusted input here and compared against what we already know independently: the
canonical USDC table, the published price and payTo from ``GET /x402/pricing``, the URL we
called, and the operator's ``SpendPolicy``. Only an accept that passes every check is
handed to the signer.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from nonecap_mcp.errors import NoneCapError
from nonecap_mcp.guidance import LOCAL, Guidance

from .networks import NETWORKS, UsdcNetwork, atomic_to_usd, usd_to_atomic
from .spend_policy import SpendPolicy, is_int, is_payable_address

__all__ = [
    "PAYMENT_REFUSED_GUIDANCE",
    "PAYMENT_REFUSED_POLICY_GUIDANCE",
    "PaymentRequired",
    "PaymentRequirement",
    "PolicyViolation",
    "SpendPolicy",
    "choose_requirement",
    "decode_base64_json",
    "parse_payment_required",
]

_SUPPORTED_VERSIONS = (1, 2)
_SHOWN_CHARS = 80  # hostile values are echoed to the agent; keep them short
_UINT256_DIGITS = 78  # an EIP-3009 value is a uint256; longer strings are not amounts
_UINT256_MAX = 2**256 - 1

# The server asked for something we will never sign; no setting makes it acceptable.
PAYMENT_REFUSED_GUIDANCE = LOCAL["payment_refused"]
# The request is legitimate-looking but exceeds a limit the operator chose.
PAYMENT_REFUSED_POLICY_GUIDANCE = Guidance(
    action="change_policy",
    retryable=False,
    hint=(
        "The payment exceeds this server's x402 spend policy (price cap, timeout, network "
        "or pinned payee), so nothing was signed or paid. Only the user can change the "
        "policy in the MCP server's configuration; do not retry until they do."
    ),
)


class PolicyViolation(NoneCapError):
    """A 402 was refused before signing: one field asked for more than we allow.

    ``field`` is the 402 field at fault (``payTo``, ``maxAmountRequired``, …), ``asked``
    what the server wanted and ``allowed`` what would have been accepted, so the agent and
    the user see exactly why no payment was made.
    """

    def __init__(self, field: str, asked: str, allowed: str, *, policy_limit: bool = False) -> None:
        self.field = field
        self.asked = asked
        self.allowed = allowed
        super().__init__(
            "payment_refused",
            f"Refused to sign: {field} is {asked}, allowed {allowed}. Nothing was signed or paid.",
            param=field,
            guidance=PAYMENT_REFUSED_POLICY_GUIDANCE if policy_limit else PAYMENT_REFUSED_GUIDANCE,
        )


@dataclass(frozen=True)
class PaymentRequirement:
    """One accept of a 402, normalized across x402 v1 and v2.

    ``raw`` keeps the accept exactly as received: a v2 payment must echo it verbatim in
    ``accepted``, and servers match on deep equality.
    """

    x402_version: int
    scheme: str
    network: str
    amount_atomic: int
    asset: str
    pay_to: str
    resource: str  # "" when the server did not name one
    description: str
    max_timeout_seconds: int
    extra: dict[str, Any]
    raw: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class PaymentRequired:
    """A parsed 402: its version, the usable accepts, and (v2) the top-level resource URL."""

    x402_version: int
    accepts: list[PaymentRequirement]
    error: str | None
    resource_url: str | None


def parse_payment_required(status_402_body: Any, payment_required_header: str | None) -> PaymentRequired:
    """Parse a 402 from the ``PAYMENT-REQUIRED`` header (v2) or else the JSON body (v1).

    ``status_402_body`` may be the decoded JSON, or the raw ``str``/``bytes`` body.
    Accepts that cannot be normalized (another scheme's shape, missing fields) are skipped
    so a good accept next to them can still be used; if none is usable, or the 402 itself
    is not x402, raise :class:`PolicyViolation` and nothing gets signed.
    """
    if payment_required_header:
        source = "PAYMENT-REQUIRED header"
        document = _decode_header_json(payment_required_header)
    else:
        source = "402 body"
        document = _decode_body_json(status_402_body)
    if not isinstance(document, dict):
        raise PolicyViolation(source, _show_type(document), "an x402 PaymentRequired JSON object")
    version = document.get("x402Version")
    if not is_int(version):
        raise PolicyViolation(f"{source} x402Version", _show(version), "an integer (1 or 2)")
    accepts = document.get("accepts")
    if not isinstance(accepts, list) or not accepts:
        raise PolicyViolation(f"{source} accepts", _show_type(accepts), "a non-empty list of payment requirements")

    top_resource = document.get("resource") if version == 2 else None
    resource_url: str | None = None
    resource_description = ""
    if isinstance(top_resource, dict):
        resource_url = _text(top_resource.get("url")) or None
        resource_description = _text(top_resource.get("description"))

    parsed: list[PaymentRequirement] = []
    problems: list[str] = []
    for index, accept in enumerate(accepts):
        try:
            parsed.append(_normalize_accept(accept, version, resource_url, resource_description))
        except _Malformed as exc:
            problems.append(f"accepts[{index}]: {exc}")
    if not parsed:
        if version not in _SUPPORTED_VERSIONS:
            raise PolicyViolation("x402Version", _show(version), "1 or 2")
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise PolicyViolation(source, problems[0] + more, "an accept with every required x402 field")
    error = document.get("error")
    return PaymentRequired(
        x402_version=version,
        accepts=parsed,
        error=error if isinstance(error, str) else None,
        resource_url=resource_url,
    )


def choose_requirement(
    required: PaymentRequired,
    *,
    policy: SpendPolicy,
    price_usd: Decimal,
    pricing_pay_to: str,
    resource_url: str,
) -> PaymentRequirement:
    """The first accept that passes every check, never blindly ``accepts[0]``.

    ``price_usd`` and ``pricing_pay_to`` come from ``GET /x402/pricing`` and
    ``resource_url`` is the URL we called, all known before the 402 arrived. If no accept
    passes, raise the violation of the closest candidate (the one that passed the most
    checks, earliest first), so the message names the field that actually blocked payment.
    """
    network = NETWORKS[policy.network]
    try:
        price_atomic = usd_to_atomic(price_usd)
    except (TypeError, ValueError):
        raise PolicyViolation(
            "published price", _show(price_usd), "a non-negative USD amount in whole USDC atomic units"
        ) from None
    cap_atomic = usd_to_atomic(policy.max_price_usd)

    best = (-1, PolicyViolation("accepts", "empty", "at least one payment requirement"))
    for requirement in required.accepts:
        passed, violation = _check(requirement, network, policy, price_atomic, cap_atomic, pricing_pay_to, resource_url)
        if violation is None:
            return requirement
        if passed > best[0]:
            best = (passed, violation)
    raise best[1]


def _check(
    req: PaymentRequirement,
    network: UsdcNetwork,
    policy: SpendPolicy,
    price_atomic: int,
    cap_atomic: int,
    pricing_pay_to: str,
    resource_url: str,
) -> tuple[int, PolicyViolation | None]:
    """Run the checks in order; return how many passed and the first violation (or None)."""
    amount_field = "amount" if req.x402_version == 2 else "maxAmountRequired"
    expected_network = network.caip2 if req.x402_version == 2 else network.name
    extra_name, extra_version = req.extra.get("name"), req.extra.get("version")
    transfer_method = req.extra.get("assetTransferMethod")
    pay_to = req.pay_to.lower()
    checks: list[tuple[bool, str, str, str, bool]] = [
        # (passes, field, asked, allowed, the operator could allow it by changing the policy)
        (req.x402_version in _SUPPORTED_VERSIONS, "x402Version", _show(req.x402_version), "1 or 2", False),
        (req.scheme == "exact", "scheme", _show(req.scheme), "'exact'", False),
        (req.network == expected_network, "network", _show(req.network), repr(expected_network), True),
        (req.asset.lower() == network.asset.lower(), "asset", _show(req.asset),
         f"{network.asset} (USDC on {network.name})", False),
        (extra_name == network.eip712_name, "extra.name", _show(extra_name), repr(network.eip712_name), False),
        (extra_version == network.eip712_version, "extra.version", _show(extra_version),
         repr(network.eip712_version), False),
        # v2 servers may ask for a Permit2 payload instead; we only sign EIP-3009.
        (transfer_method in (None, "eip3009"), "extra.assetTransferMethod", _show(transfer_method),
         "'eip3009' (or absent)", False),
        (is_payable_address(req.pay_to), "payTo", _show(req.pay_to), "a non-zero 20-byte address", False),
        (pay_to == pricing_pay_to.lower(), "payTo", _show(req.pay_to),
         f"{pricing_pay_to} (the payTo published at /x402/pricing)", False),
        (policy.pinned_pay_to is None or pay_to == policy.pinned_pay_to.lower(), "payTo", _show(req.pay_to),
         f"{policy.pinned_pay_to} (the pinned payTo)", True),
        (req.amount_atomic > 0, amount_field, _show_amount(req.amount_atomic), "more than 0", False),
        (req.amount_atomic <= price_atomic, amount_field, _show_amount(req.amount_atomic),
         f"at most {_show_amount(price_atomic)}, the published price", False),
        (req.amount_atomic <= cap_atomic, amount_field, _show_amount(req.amount_atomic),
         f"at most {_show_amount(cap_atomic)}, the per-payment cap", True),
        (req.max_timeout_seconds > 0, "maxTimeoutSeconds", _show(req.max_timeout_seconds), "more than 0", False),
        (req.max_timeout_seconds <= policy.max_timeout_seconds, "maxTimeoutSeconds", _show(req.max_timeout_seconds),
         f"at most {policy.max_timeout_seconds}", True),
        (not req.resource or req.resource == resource_url, "resource", _show(req.resource), repr(resource_url), False),
    ]
    for passed, (ok, name, asked, allowed, policy_limit) in enumerate(checks):
        if not ok:
            return passed, PolicyViolation(name, asked, allowed, policy_limit=policy_limit)
    return len(checks), None


class _Malformed(Exception):
    """One accept lacks a field or has the wrong type; the message names it."""


def _normalize_accept(
    accept: Any, version: int, resource_url: str | None, resource_description: str
) -> PaymentRequirement:
    """Map one accept onto PaymentRequirement (v2: ``amount`` + top-level resource; else v1)."""
    if not isinstance(accept, dict):
        raise _Malformed(f"is {_show_type(accept)}, not an object")
    amount_field = "amount" if version == 2 else "maxAmountRequired"
    amount = accept.get(amount_field)
    amount_atomic = _parse_uint256(amount)
    if amount_atomic is None:
        raise _Malformed(f"{amount_field} is {_show(amount)}, not a whole number of atomic units (uint256)")
    timeout = accept.get("maxTimeoutSeconds")
    if isinstance(timeout, float) and timeout.is_integer():
        timeout = int(timeout)  # JSON writers may print 1e9 for an integer
    if not is_int(timeout):
        raise _Malformed(f"maxTimeoutSeconds is {_show(timeout)}, not an integer")
    strings = {}
    for name in ("scheme", "network", "asset", "payTo"):
        value = accept.get(name)
        if not isinstance(value, str):
            raise _Malformed(f"{name} is {_show(value)}, not a string")
        strings[name] = value
    extra = accept.get("extra", {})
    if not isinstance(extra, dict):
        raise _Malformed(f"extra is {_show_type(extra)}, not an object")
    if version == 2:
        resource, description = resource_url or "", resource_description
    else:
        resource, description = _text(accept.get("resource")), _text(accept.get("description"))
    return PaymentRequirement(
        x402_version=version,
        scheme=strings["scheme"],
        network=strings["network"],
        amount_atomic=amount_atomic,
        asset=strings["asset"],
        pay_to=strings["payTo"],
        resource=resource,
        description=description,
        max_timeout_seconds=timeout,
        extra=extra,
        raw=accept,
    )


def decode_base64_json(value: str) -> Any:
    """Decode an x402 header: base64 (standard or URL-safe, padding optional) of JSON.

    The specs say standard base64 with padding; being lenient here costs nothing because
    the result is validated field by field anyway. Raises ``ValueError`` when undecodable.
    """
    text = value.strip()
    altchars = b"-_" if ("-" in text or "_" in text) else None
    try:
        return json.loads(base64.b64decode(text + "=" * (-len(text) % 4), altchars=altchars, validate=True))
    except (binascii.Error, ValueError, RecursionError) as exc:
        raise ValueError("not base64-encoded JSON") from exc


def _decode_header_json(value: str) -> Any:
    """The PAYMENT-REQUIRED header's document, or a refusal naming the header."""
    try:
        return decode_base64_json(value)
    except ValueError:
        raise PolicyViolation("PAYMENT-REQUIRED header", "not base64-encoded JSON", "an x402 PaymentRequired") from None


def _decode_body_json(body: Any) -> Any:
    """The 402 body as JSON, whether the caller passed it decoded or as text/bytes."""
    if isinstance(body, (bytes, bytearray, str)):
        try:
            return json.loads(body)
        except (ValueError, RecursionError):
            raise PolicyViolation("402 body", "not JSON", "an x402 PaymentRequired JSON object") from None
    return body


def _parse_uint256(value: Any) -> int | None:
    """A decimal-digit string (the spec's form) or a JSON integer within uint256, else None.

    The length check comes first: ``int()`` of thousands of digits is slow or refused.
    """
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= _UINT256_DIGITS:
        value = int(value)
    if is_int(value) and 0 <= value <= _UINT256_MAX:
        return value
    return None


def _text(value: Any) -> str:
    """An optional free-text field: the string, or "" when absent or not a string."""
    return value if isinstance(value, str) else ""


def _show(value: Any) -> str:
    """A server-supplied value as it will appear in a message: repr, truncated."""
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1] + "…"


def _show_type(value: Any) -> str:
    """Describe a value by type only, for bodies too large or odd to echo."""
    return "missing" if value is None else f"a JSON {type(value).__name__}"


def _show_amount(atomic: int) -> str:
    """Atomic units with their USD value, e.g. ``12000 ($0.012)``."""
    return f"{atomic} (${atomic_to_usd(atomic)})"
