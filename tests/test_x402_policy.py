"""The x402 spend policy: what a 402 may ask for before anything is signed.

The hostile-402 matrix goes through ``authorize_payment`` (decide, then sign) with a key
that counts its reveals: a refused 402 must raise a PolicyViolation naming the field, what
was asked and what was allowed, and must never have touched the key.
"""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from typing import Any

import pytest
from x402_reference import (
    BASE_USDC,
    OTHER_ADDRESS,
    PAY_TO,
    RESOURCE_URL,
    CountingSecret,
    b64json,
    new_wallet_key,
    v1_accept,
    v1_body,
    v2_accept,
    v2_header,
)

from nonecap_mcp.x402.networks import NETWORKS, atomic_to_usd, find_network, usd_to_atomic
from nonecap_mcp.x402.policy import (
    PaymentRequired,
    PolicyViolation,
    SpendPolicy,
    choose_requirement,
    parse_payment_required,
)
from nonecap_mcp.x402.signing import SignedPayment, authorize_payment

ZERO = "0x0000000000000000000000000000000000000000"
SEPOLIA_USDC = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
PRICE = Decimal("0.012")


# --- networks ----------------------------------------------------------------------------


def test_canonical_table_matches_the_reference_sdk() -> None:
    base, sepolia = NETWORKS["base"], NETWORKS["base-sepolia"]
    assert (base.caip2, base.chain_id, base.asset, base.eip712_name, base.eip712_version, base.decimals) == (
        "eip155:8453", 8453, BASE_USDC, "USD Coin", "2", 6
    )
    assert (sepolia.caip2, sepolia.chain_id, sepolia.asset, sepolia.eip712_name) == (
        "eip155:84532", 84532, SEPOLIA_USDC, "USDC"
    )


def test_find_network_by_v1_name_or_caip2_only() -> None:
    assert find_network("base") is find_network("eip155:8453") is NETWORKS["base"]
    assert find_network("eip155:84532") is NETWORKS["base-sepolia"]
    for unknown in ("Base", "eip155:1", "polygon", ""):
        assert find_network(unknown) is None


@pytest.mark.parametrize(
    ("usd", "atomic"),
    [("0.012", 12000), ("0.0045", 4500), (Decimal("0.003"), 3000), ("0.001", 1000), ("1", 1_000_000),
     ("0.000001", 1), ("0", 0), ("1.00", 1_000_000), ("2.5E-3", 2500), ("0E-999999999", 0),
     ("0.000001" + "0" * 5000, 1)],
)
def test_usd_to_atomic_is_exact(usd: Decimal | str, atomic: int) -> None:
    assert usd_to_atomic(usd) == atomic
    assert usd_to_atomic(str(atomic_to_usd(atomic))) == atomic


@pytest.mark.parametrize(
    "usd",
    ["0.0000001", "-0.01", "NaN", "Infinity", "twelve", "0.0000010000000000000000000000001",
     "1e999999999", "1e-999999999", "9" * 79, "0.000001" + "0" * 5000 + "1"],
    ids=["sub-atomic", "negative", "NaN", "Infinity", "text", "sub-atomic at 28 digits", "huge exponent",
         "tiny exponent", "beyond uint256", "5000 digits"],
)
def test_usd_to_atomic_refuses_to_round(usd: str) -> None:
    with pytest.raises(ValueError):
        usd_to_atomic(usd)


def test_usd_to_atomic_refuses_floats() -> None:
    with pytest.raises(TypeError, match="float"):
        usd_to_atomic(0.012)  # type: ignore[arg-type]


def test_atomic_to_usd_is_plain_decimal() -> None:
    assert str(atomic_to_usd(12000)) == "0.012"
    assert str(atomic_to_usd(10_000_000)) == "10"
    assert str(atomic_to_usd(10**40)) == "1" + "0" * 34  # no precision loss, no exponent


# --- SpendPolicy --------------------------------------------------------------------------


def test_default_policy() -> None:
    policy = SpendPolicy()
    assert (policy.network, policy.max_price_usd, policy.daily_budget_usd, policy.max_timeout_seconds) == (
        "base", Decimal("0.05"), Decimal("1.00"), 300
    )


@pytest.mark.parametrize(
    "kwargs",
    [{"network": "polygon"}, {"max_price_usd": Decimal("-1")}, {"daily_budget_usd": Decimal("0.0000001")},
     {"pinned_pay_to": ZERO}, {"pinned_pay_to": "0x123"}, {"max_timeout_seconds": 0}],
)
def test_policy_rejects_unenforceable_settings(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SpendPolicy(**kwargs)


def test_policy_rejects_float_money() -> None:
    with pytest.raises(TypeError):
        SpendPolicy(max_price_usd=0.05)  # type: ignore[arg-type]


# --- parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "encode", [lambda b: b, json.dumps, lambda b: json.dumps(b).encode()], ids=["dict", "str", "bytes"]
)
def test_parse_v1_body(encode: Any) -> None:
    required = parse_payment_required(encode(v1_body()), None)
    assert (required.x402_version, required.error, required.resource_url) == (1, "X-PAYMENT header is required", None)
    [req] = required.accepts
    assert (req.scheme, req.network, req.amount_atomic, req.asset, req.pay_to) == (
        "exact", "base", 12000, BASE_USDC, PAY_TO
    )
    assert (req.resource, req.max_timeout_seconds) == (RESOURCE_URL, 90)
    assert req.description == "uCaptcha solve: HardCaptchaTokenProxyLess"
    assert req.extra == {"name": "USD Coin", "version": "2"}
    assert req.raw == v1_accept()


def test_parse_v2_header_wins_over_body() -> None:
    accept = v2_accept(extra={"name": "USD Coin", "version": "2", "assetTransferMethod": "eip3009"})
    decoy_body = {"x402Version": 1, "accepts": [v1_accept(maxAmountRequired="1")]}
    required = parse_payment_required(decoy_body, v2_header(accept))
    assert (required.x402_version, required.resource_url) == (2, RESOURCE_URL)
    [req] = required.accepts
    assert (req.network, req.amount_atomic, req.resource, req.description) == (
        "eip155:8453", 12000, RESOURCE_URL, "uCaptcha solve"
    )
    assert req.raw == accept


def test_parse_skips_malformed_accepts_next_to_good_ones() -> None:
    body = v1_body({"scheme": "exact"}, "not an object", v1_accept())
    [req] = parse_payment_required(body, None).accepts
    assert req.raw == v1_accept()


def test_parse_accepts_json_integer_amounts_and_integral_float_timeouts() -> None:
    [req] = parse_payment_required(v1_body(v1_accept(maxAmountRequired=12000, maxTimeoutSeconds=1e9)), None).accepts
    assert (req.amount_atomic, req.max_timeout_seconds) == (12000, 10**9)


MALFORMED: list[tuple[str, Any, str | None, str]] = [
    ("body not JSON", "<html>402</html>", None, "402 body"),
    ("body bytes not JSON", b"\xff\xfe", None, "402 body"),
    ("body JSON list", [1, 2], None, "402 body"),
    ("body null", None, None, "402 body"),
    ("no version", {"accepts": [v1_accept()]}, None, "402 body x402Version"),
    ("version is a string", v1_body(x402Version="1"), None, "402 body x402Version"),
    ("version is a bool", v1_body(x402Version=True), None, "402 body x402Version"),
    ("no accepts", v1_body(accepts=[]), None, "402 body accepts"),
    ("accepts not a list", v1_body(accepts={"0": v1_accept()}), None, "402 body accepts"),
    ("amount missing", v1_body(v1_accept(maxAmountRequired=None)), None, "402 body"),
    ("amount decimal", v1_body(v1_accept(maxAmountRequired="0.012")), None, "402 body"),
    ("amount negative", v1_body(v1_accept(maxAmountRequired="-1")), None, "402 body"),
    ("amount 5000 digits", v1_body(v1_accept(maxAmountRequired="9" * 5000)), None, "402 body"),
    ("amount above uint256", v1_body(v1_accept(maxAmountRequired=str(2**256))), None, "402 body"),
    ("v1 amount field in v2", None, v2_header({**v1_accept(), "network": "eip155:8453"}), "PAYMENT-REQUIRED header"),
    ("timeout a string", v1_body(v1_accept(maxTimeoutSeconds="90")), None, "402 body"),
    ("payTo a number", v1_body(v1_accept(payTo=1)), None, "402 body"),
    ("extra a string", v1_body(v1_accept(extra="USD Coin")), None, "402 body"),
    ("header not base64", None, "%%%not-base64%%%", "PAYMENT-REQUIRED header"),
    ("header base64 of text", None, base64.b64encode(b"hello").decode(), "PAYMENT-REQUIRED header"),
    ("header JSON string", None, b64json("x402"), "PAYMENT-REQUIRED header"),
    ("unknown version, unknown shape", {"x402Version": 3, "offers": [1]}, None, "402 body accepts"),
    ("version 3, no usable accept", v1_body({"kind": "exact"}, x402Version=3), None, "x402Version"),
]


@pytest.mark.parametrize(("body", "header", "field"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_402_is_refused(body: Any, header: str | None, field: str) -> None:
    with pytest.raises(PolicyViolation) as caught:
        parse_payment_required(body, header)
    assert caught.value.field == field
    assert caught.value.code == "payment_refused"
    assert "Nothing was signed or paid." in caught.value.message


def test_refusal_does_not_echo_huge_hostile_values() -> None:
    with pytest.raises(PolicyViolation) as caught:
        parse_payment_required(v1_body(v1_accept(maxAmountRequired="9" * 5000)), None)
    assert len(caught.value.message) < 400


# --- the hostile-402 matrix -----------------------------------------------------------------

# (id, 402 body, PAYMENT-REQUIRED header, choose_requirement overrides, field, asked, allowed, policy limit)
HOSTILE: list[tuple[str, Any, str | None, dict[str, Any], str, str, str, bool]] = [
    ("above the published price", v1_body(v1_accept(maxAmountRequired="12001")), None, {},
     "maxAmountRequired", "12001 ($0.012001)", "at most 12000 ($0.012), the published price", False),
    ("above max_price", v1_body(v1_accept(maxAmountRequired="60000")), None, {"price_usd": Decimal("0.06")},
     "maxAmountRequired", "60000 ($0.06)", "at most 50000 ($0.05), the per-payment cap", True),
    ("zero amount", v1_body(v1_accept(maxAmountRequired="0")), None, {},
     "maxAmountRequired", "0 ($0)", "more than 0", False),
    ("payTo differs from /x402/pricing", v1_body(v1_accept(payTo=OTHER_ADDRESS)), None, {},
     "payTo", OTHER_ADDRESS, f"{PAY_TO} (the payTo published at /x402/pricing)", False),
    ("payTo differs from the pin (pricing compromised too)", v1_body(v1_accept(payTo=OTHER_ADDRESS)), None,
     {"pricing_pay_to": OTHER_ADDRESS, "policy": SpendPolicy(pinned_pay_to=PAY_TO)},
     "payTo", OTHER_ADDRESS, f"{PAY_TO} (the pinned payTo)", True),
    ("zero payTo", v1_body(v1_accept(payTo=ZERO)), None, {"pricing_pay_to": ZERO},
     "payTo", ZERO, "a non-zero 20-byte address", False),
    ("payTo not an address", v1_body(v1_accept(payTo="0xADBA")), None, {},
     "payTo", "0xADBA", "a non-zero 20-byte address", False),
    ("wrong asset", v1_body(v1_accept(asset=SEPOLIA_USDC)), None, {},
     "asset", SEPOLIA_USDC, f"{BASE_USDC} (USDC on base)", False),
    ("wrong network", v1_body(v1_accept(network="base-sepolia", asset=SEPOLIA_USDC)), None, {},
     "network", "'base-sepolia'", "'base'", True),
    ("CAIP-2 network in v1", v1_body(v1_accept(network="eip155:8453")), None, {},
     "network", "'eip155:8453'", "'base'", True),
    ("wrong EIP-712 name", v1_body(v1_accept(extra={"name": "USDC", "version": "2"})), None, {},
     "extra.name", "'USDC'", "'USD Coin'", False),
    ("wrong EIP-712 version", v1_body(v1_accept(extra={"name": "USD Coin", "version": "1"})), None, {},
     "extra.version", "'1'", "'2'", False),
    ("no EIP-712 domain", v1_body({k: v for k, v in v1_accept().items() if k != "extra"}), None, {},
     "extra.name", "None", "'USD Coin'", False),
    ("huge maxTimeoutSeconds", v1_body(v1_accept(maxTimeoutSeconds=10**9)), None, {},
     "maxTimeoutSeconds", "1000000000", "at most 300", True),
    ("zero maxTimeoutSeconds", v1_body(v1_accept(maxTimeoutSeconds=0)), None, {},
     "maxTimeoutSeconds", "0", "more than 0", False),
    ("negative maxTimeoutSeconds", v1_body(v1_accept(maxTimeoutSeconds=-90)), None, {},
     "maxTimeoutSeconds", "-90", "more than 0", False),
    ("unknown scheme", v1_body(v1_accept(scheme="upto")), None, {},
     "scheme", "'upto'", "'exact'", False),
    ("x402Version 3", v1_body(x402Version=3), None, {},
     "x402Version", "3", "1 or 2", False),
    ("resource mismatch", v1_body(v1_accept(resource="https://evil.example/x402/createTask")), None, {},
     "resource", "'https://evil.example/x402/createTask'", repr(RESOURCE_URL), False),
    ("published price is garbage", v1_body(), None, {"price_usd": Decimal("-0.012")},
     "published price", "Decimal('-0.012')", "a non-negative USD amount", False),
    ("published price is a float", v1_body(), None, {"price_usd": 0.012},
     "published price", "0.012", "a non-negative USD amount", False),
    ("v2 above the published price", None, v2_header(v2_accept(amount="13000")), {},
     "amount", "13000 ($0.013)", "at most 12000 ($0.012), the published price", False),
    ("v2 v1 network name", None, v2_header(v2_accept(network="base")), {},
     "network", "'base'", "'eip155:8453'", True),
    ("v2 other chain", None, v2_header(v2_accept(network="eip155:1")), {},
     "network", "'eip155:1'", "'eip155:8453'", True),
    ("v2 Permit2 transfer method", None,
     v2_header(v2_accept(extra={"name": "USD Coin", "version": "2", "assetTransferMethod": "permit2"})), {},
     "extra.assetTransferMethod", "'permit2'", "'eip3009'", False),
    ("v2 wrong payTo", None, v2_header(v2_accept(payTo=OTHER_ADDRESS)), {},
     "payTo", OTHER_ADDRESS, "/x402/pricing", False),
    ("v2 huge maxTimeoutSeconds", None, v2_header(v2_accept(maxTimeoutSeconds=10**9)), {},
     "maxTimeoutSeconds", "1000000000", "at most 300", True),
    ("v2 resource mismatch", None, v2_header(resource={"url": "https://evil.example/pay"}), {},
     "resource", "'https://evil.example/pay'", repr(RESOURCE_URL), False),
    ("x402Version 3 header", None, v2_header(x402Version=3), {},
     "x402Version", "3", "1 or 2", False),
    ("all accepts hostile: closest one reported", v1_body(
        v1_accept(scheme="upto"), v1_accept(maxTimeoutSeconds=10**9), v1_accept(network="solana")), None, {},
     "maxTimeoutSeconds", "1000000000", "at most 300", True),
]


def _choice(**overrides: Any) -> dict[str, Any]:
    """choose_requirement's keyword arguments: the rail's published price, payTo and URL."""
    return {"policy": SpendPolicy(), "price_usd": PRICE, "pricing_pay_to": PAY_TO, "resource_url": RESOURCE_URL,
            **overrides}


def _authorize(body: Any, header: str | None, **overrides: Any) -> tuple[CountingSecret, SignedPayment]:
    """Parse then authorize, as the client will; returns (key, SignedPayment)."""
    key = new_wallet_key()
    return key, authorize_payment(parse_payment_required(body, header), private_key=key, **_choice(**overrides))


@pytest.mark.parametrize(
    ("body", "header", "overrides", "field", "asked", "allowed", "policy_limit"),
    [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE],
)
def test_hostile_402_is_refused_before_signing(
    body: Any, header: str | None, overrides: dict[str, Any], field: str, asked: str, allowed: str, policy_limit: bool
) -> None:
    key = new_wallet_key()
    with pytest.raises(PolicyViolation) as caught:
        authorize_payment(parse_payment_required(body, header), private_key=key, **_choice(**overrides))
    violation = caught.value
    assert key.reveals == 0, "the wallet key was read: something may have been signed"
    assert violation.field == field
    assert asked in violation.asked
    assert allowed in violation.allowed
    assert violation.message == (
        f"Refused to sign: {field} is {violation.asked}, allowed {violation.allowed}. Nothing was signed or paid."
    )
    assert (violation.code, violation.param, violation.guidance.retryable) == ("payment_refused", field, False)
    assert violation.guidance.action == ("change_policy" if policy_limit else "none")


@pytest.mark.parametrize("good_first", [True, False])
def test_picks_the_good_accept_among_hostile_ones(good_first: bool) -> None:
    hostile = [v1_accept(payTo=OTHER_ADDRESS), v1_accept(maxAmountRequired="999999"), v1_accept(scheme="upto")]
    accepts = [v1_accept(), *hostile] if good_first else [*hostile, v1_accept()]
    key, signed = _authorize(v1_body(*accepts), None)
    assert key.reveals == 1  # the counter does see a real signature
    assert (signed.pay_to, signed.value_atomic, signed.header_name) == (PAY_TO, 12000, "X-PAYMENT")


def test_choose_returns_the_requirement_itself() -> None:
    required = parse_payment_required(None, v2_header(v2_accept(payTo=OTHER_ADDRESS), v2_accept()))
    chosen = choose_requirement(required, **_choice())
    assert chosen is required.accepts[1]


def test_case_insensitive_addresses_and_cheaper_amounts_pass() -> None:
    shouted_usdc = "0x" + BASE_USDC[2:].upper()
    body = v1_body(v1_accept(payTo=PAY_TO.lower(), asset=shouted_usdc, maxAmountRequired="11000"))
    _, signed = _authorize(body, None, pricing_pay_to="0x" + PAY_TO[2:].upper(),
                           policy=SpendPolicy(pinned_pay_to=PAY_TO))
    assert (signed.pay_to, signed.value_atomic) == (PAY_TO, 11000)


def test_accept_without_resource_is_not_a_mismatch() -> None:
    accept = {k: v for k, v in v1_accept().items() if k != "resource"}
    _, signed = _authorize(v1_body(accept), None)
    assert signed.value_atomic == 12000


def test_requirement_repr_leaves_out_the_raw_accept() -> None:
    required = parse_payment_required(v1_body(), None)
    assert isinstance(required, PaymentRequired)
    assert "raw=" not in repr(required.accepts[0])  # hostile free text stays out of logs


def test_choose_refuses_an_empty_402() -> None:
    with pytest.raises(PolicyViolation) as caught:
        choose_requirement(PaymentRequired(x402_version=1, accepts=[], error=None, resource_url=None), **_choice())
    assert caught.value.field == "accepts"


def test_unusable_accepts_are_summarized() -> None:
    with pytest.raises(PolicyViolation) as caught:
        parse_payment_required(v1_body(*[{"scheme": "exact"}] * 50), None)
    assert caught.value.asked.startswith("accepts[0]: maxAmountRequired is None")
    assert caught.value.asked.endswith("(and 49 more)")
