"""x402 signing, checked by the official reference verifiers, offline.

Every header is signed fresh here (they expire) and judged by npm ``@x402/evm@2.27.0``
(v1 ``ExactEvmSchemeV1._verify``, v2 ``ExactEvmScheme.verify``) and PyPI ``x402==2.25.0``
(its EIP-712 digest + ECDSA check, and its facilitator ``verify``). Each good header is
also tampered with, and all verifiers must then reject it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any, NamedTuple

import pytest
from x402_reference import (
    OTHER_ADDRESS,
    PAY_TO,
    RESOURCE_URL,
    b64json,
    new_wallet_key,
    npm_verifiers,
    npm_verify,
    py_facilitator_verify,
    py_signature_valid,
    tamper,
    unb64json,
    v1_accept,
    v1_body,
    v2_accept,
    v2_header,
)

from nonecap_mcp.x402.policy import PaymentRequirement, PolicyViolation, SpendPolicy, parse_payment_required
from nonecap_mcp.x402.signing import Receipt, SignedPayment, authorize_payment, decode_receipt, sign_payment

PRICE = Decimal("0.012")
NOW = 1_790_000_000


def _requirement(version: int, accept: dict[str, Any]) -> PaymentRequirement:
    """One parsed accept, without the policy: for tests of the signer itself."""
    document = v1_body(accept) if version == 1 else None
    header = v2_header(accept) if version == 2 else None
    [requirement] = parse_payment_required(document, header).accepts
    return requirement


def _good_402(version: int) -> tuple[Any, str | None]:
    """(body, PAYMENT-REQUIRED header) of the rail's documented 402 in that version."""
    return (v1_body(), None) if version == 1 else ({"error": "pay"}, v2_header())


def _accept(version: int, **overrides: Any) -> dict[str, Any]:
    return v1_accept(**overrides) if version == 1 else v2_accept(**overrides)


def _amount_field(version: int) -> str:
    return "maxAmountRequired" if version == 1 else "amount"


def _set_auth(name: str, value: str) -> Callable[[dict[str, Any]], None]:
    def change(payload: dict[str, Any]) -> None:
        payload["payload"]["authorization"][name] = value
        if name == "value" and "accepted" in payload:
            payload["accepted"]["amount"] = value
    return change


def _flip_signature_byte(payload: dict[str, Any]) -> None:
    signature = bytearray.fromhex(payload["payload"]["signature"][2:])
    signature[40] ^= 0x01  # inside s
    payload["payload"]["signature"] = "0x" + signature.hex()


def _keep(payload: dict[str, Any]) -> None:
    """No tampering: the positive control."""


class Tamper(NamedTuple):
    """One way of corrupting a good payment, and what each reference verifier must say.

    A reason of None means the verifier must accept the payment (the positive control).
    """

    name: str
    change: Callable[[dict[str, Any]], None]  # applied to the decoded header payload
    requirements: Callable[[int], dict[str, Any]]  # accept overrides, by protocol version
    npm_reason: str | None
    py_reason: str | None
    signature_intact: bool  # whether the bare EIP-712 signature check still passes


NPM_BAD_SIGNATURE, PY_BAD_SIGNATURE = "invalid_exact_evm_signature", "invalid_exact_evm_payload_signature"
TAMPERS = [
    Tamper("untouched", _keep, lambda v: {}, None, None, True),
    Tamper("value raised in the header", _set_auth("value", "12001"), lambda v: {},
           NPM_BAD_SIGNATURE, "invalid_exact_evm_payload_authorization_value_mismatch", False),
    Tamper("value raised on both sides", _set_auth("value", "24000"), lambda v: {_amount_field(v): "24000"},
           NPM_BAD_SIGNATURE, PY_BAD_SIGNATURE, False),
    Tamper("payTo changed in the requirements", _keep, lambda v: {"payTo": OTHER_ADDRESS},
           "invalid_exact_evm_recipient_mismatch", "invalid_exact_evm_payload_recipient_mismatch", True),
    Tamper("payTo changed on both sides", _set_auth("to", OTHER_ADDRESS), lambda v: {"payTo": OTHER_ADDRESS},
           NPM_BAD_SIGNATURE, PY_BAD_SIGNATURE, False),
    Tamper("signature byte flipped", _flip_signature_byte, lambda v: {}, NPM_BAD_SIGNATURE, PY_BAD_SIGNATURE, False),
    Tamper("wrong EIP-712 domain name", _keep, lambda v: {"extra": {"name": "USDC", "version": "2"}},
           NPM_BAD_SIGNATURE, PY_BAD_SIGNATURE, False),
    Tamper("wrong EIP-712 domain version", _keep, lambda v: {"extra": {"name": "USD Coin", "version": "1"}},
           NPM_BAD_SIGNATURE, PY_BAD_SIGNATURE, False),
]
CASES = pytest.mark.parametrize(
    ("version", "case"),
    [(version, case) for version in (1, 2) for case in TAMPERS],
    ids=[f"v{version}-{case.name}" for version in (1, 2) for case in TAMPERS],
)


@pytest.fixture(scope="module")
def headers() -> dict[int, SignedPayment]:
    """One fresh, policy-approved payment per protocol version."""
    signed = {}
    for version in (1, 2):
        body, header = _good_402(version)
        signed[version] = authorize_payment(
            parse_payment_required(body, header), policy=SpendPolicy(), price_usd=PRICE, pricing_pay_to=PAY_TO,
            resource_url=RESOURCE_URL, private_key=new_wallet_key(),
        )
    return signed


def _apply(headers: dict[int, SignedPayment], version: int, case: Tamper) -> tuple[str, dict[str, Any]]:
    """(tampered header, requirements to verify it against)."""
    return tamper(headers[version].header_value, case.change), _accept(version, **case.requirements(version))


@pytest.fixture(scope="module")
def npm_results(headers: dict[int, SignedPayment]) -> dict[tuple[int, str], dict[str, Any]]:
    """Every case through @x402/evm: one node process per protocol version, both at once."""
    npm_verifiers()  # install (if needed) before the two processes race for it
    with ThreadPoolExecutor(max_workers=2) as pool:
        batches = {v: pool.submit(npm_verify, v, [_apply(headers, v, case) for case in TAMPERS]) for v in (1, 2)}
        return {(v, case.name): verdict
                for v, batch in batches.items() for case, verdict in zip(TAMPERS, batch.result(), strict=True)}


@CASES
def test_npm_reference_verifier(
    npm_results: dict[tuple[int, str], dict[str, Any]], headers: dict[int, SignedPayment], version: int, case: Tamper
) -> None:
    verdict = npm_results[(version, case.name)]
    assert verdict.get("invalidReason") == case.npm_reason, verdict
    assert verdict["isValid"] is (case.npm_reason is None)
    assert verdict["payer"] == headers[version].payer


@CASES
def test_pypi_reference_verifier(headers: dict[int, SignedPayment], version: int, case: Tamper) -> None:
    header, requirements = _apply(headers, version, case)
    assert py_signature_valid(header, requirements) is case.signature_intact
    assert py_facilitator_verify(header, requirements) == (case.py_reason is None, case.py_reason)


@pytest.mark.parametrize("version", [1, 2])
def test_every_payment_gets_a_fresh_random_nonce(version: int) -> None:
    key, requirement = new_wallet_key(), _requirement(version, _accept(version))
    first, second = (sign_payment(key, requirement, now=NOW) for _ in range(2))
    assert first.nonce != second.nonce
    assert first.header_value != second.header_value
    for signed in (first, second):
        assert len(signed.nonce) == 66 and int(signed.nonce, 16) >= 0
        assert unb64json(signed.header_value)["payload"]["authorization"]["nonce"] == signed.nonce


def test_v1_header_wire_format() -> None:
    from eth_account import Account

    key = new_wallet_key()
    signed = sign_payment(key, _requirement(1, v1_accept(payTo=PAY_TO.lower())), now=NOW)
    payload = unb64json(signed.header_value)
    assert signed.header_name == "X-PAYMENT"
    assert set(payload) == {"x402Version", "scheme", "network", "payload"}
    assert (payload["x402Version"], payload["scheme"], payload["network"]) == (1, "exact", "base")
    assert payload["payload"]["authorization"] == {
        "from": Account.from_key(key.reveal()).address,
        "to": PAY_TO,  # checksummed, as the SDKs emit it
        "value": "12000",
        "validAfter": str(NOW - 600),
        "validBefore": str(NOW + 90),
        "nonce": signed.nonce,
    }
    assert len(payload["payload"]["signature"]) == 132
    assert (signed.value_atomic, signed.valid_after, signed.valid_before) == (12000, NOW - 600, NOW + 90)
    assert signed.pay_to == PAY_TO
    assert signed.payer == payload["payload"]["authorization"]["from"]


def test_v2_payload_echoes_the_accept_verbatim() -> None:
    accept = {"maxTimeoutSeconds": 90, **v2_accept(), "extra": {"version": "2", "name": "USD Coin",
              "assetTransferMethod": "eip3009"}, "outputSchema": {"x": [1, {"y": None}]}}
    signed = sign_payment(new_wallet_key(), _requirement(2, accept), now=NOW)
    assert signed.header_name == "PAYMENT-SIGNATURE"
    encoded = unb64json(signed.header_value)
    assert json.dumps(encoded["accepted"]) == json.dumps(accept)  # same keys, values and order
    assert encoded["x402Version"] == 2
    assert encoded["resource"] == {"url": RESOURCE_URL, "description": "uCaptcha solve"}
    assert set(encoded["payload"]) == {"signature", "authorization"}


def test_domain_comes_from_the_canonical_table_not_from_extra() -> None:
    """Even if a hostile extra slipped past the policy, the signature is for real USDC only."""
    from eth_account import Account
    from eth_account.messages import encode_typed_data

    hostile = _requirement(1, v1_accept(extra={"name": "Evil Coin", "version": "9"}))
    signed = sign_payment(new_wallet_key(), hostile, now=NOW)
    inner = unb64json(signed.header_value)["payload"]
    auth = inner["authorization"]
    message = {**auth, "value": int(auth["value"]), "validAfter": int(auth["validAfter"]),
               "validBefore": int(auth["validBefore"]), "nonce": bytes.fromhex(auth["nonce"][2:])}
    types = {"TransferWithAuthorization": [
        {"name": "from", "type": "address"}, {"name": "to", "type": "address"},
        {"name": "value", "type": "uint256"}, {"name": "validAfter", "type": "uint256"},
        {"name": "validBefore", "type": "uint256"}, {"name": "nonce", "type": "bytes32"}]}

    def signer_for(name: str, version: str) -> str:
        domain = {"name": name, "version": version, "chainId": 8453,
                  "verifyingContract": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"}
        encoded = encode_typed_data(domain_data=domain, message_types=types, message_data=message)
        return Account.recover_message(encoded, signature=inner["signature"])

    assert signer_for("USD Coin", "2") == signed.payer
    assert signer_for("Evil Coin", "9") != signed.payer


def test_sign_payment_refuses_an_unknown_network_without_reading_the_key() -> None:
    key = new_wallet_key()
    with pytest.raises(PolicyViolation) as caught:
        sign_payment(key, _requirement(1, v1_accept(network="polygon")))
    assert caught.value.field == "network"
    assert key.reveals == 0


def test_signed_payment_repr_hides_the_bearer_header() -> None:
    signed = sign_payment(new_wallet_key(), _requirement(1, v1_accept()), now=NOW)
    assert signed.header_value not in repr(signed)
    assert signed.nonce in repr(signed)


def test_modules_do_not_import_eth_account_at_import_time() -> None:
    code = ("import sys, nonecap_mcp.x402.signing, nonecap_mcp.x402.policy, nonecap_mcp.x402.networks; "
            "print('eth_account' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


# --- receipts ------------------------------------------------------------------------------

RAIL_SAMPLE = "eyJ0cmFuc2FjdGlvbiI6IjB4Li4uIiwic3VjY2VzcyI6dHJ1ZX0="  # the rail's documented X-PAYMENT-RESPONSE
TX = "0x" + "ab" * 32


@pytest.mark.parametrize(
    ("header", "receipt"),
    [
        (RAIL_SAMPLE, Receipt(success=True, transaction="0x...", network=None, payer=None, error_reason=None)),
        (b64json({"success": True, "transaction": TX, "network": "base", "payer": PAY_TO}),
         Receipt(success=True, transaction=TX, network="base", payer=PAY_TO, error_reason=None)),
        (b64json({"success": False, "errorReason": "insufficient_funds", "transaction": "", "network": "base",
                  "payer": PAY_TO}),
         Receipt(success=False, transaction=None, network="base", payer=PAY_TO, error_reason="insufficient_funds")),
        (b64json({"success": False, "error_reason": "invalid_network"}),
         Receipt(success=False, transaction=None, network=None, payer=None, error_reason="invalid_network")),
        (RAIL_SAMPLE.rstrip("="), Receipt(True, "0x...", None, None, None)),
    ],
    ids=["rail sample", "full", "failure", "snake_case reason", "unpadded"],
)
def test_decode_receipt(header: str, receipt: Receipt) -> None:
    assert decode_receipt(header) == receipt


@pytest.mark.parametrize(
    "header",
    [None, "", "   ", "%%%", "aGVsbG8=", b64json([True]), b64json({"transaction": TX}), b64json({"success": "true"}),
     b64json({"success": 1})],
    ids=["absent", "empty", "blank", "not base64", "not JSON", "JSON list", "no success", "success string",
         "success int"],
)
def test_decode_receipt_garbage_is_none(header: str | None) -> None:
    assert decode_receipt(header) is None
