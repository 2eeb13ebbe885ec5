"""Verify an x402 `exact` payment header the way a facilitator does, independently of our signer.

The header is decoded and checked field by field against the accept the sandbox offered
(recipient, exact value, validity window), and the signer is recovered from the EIP-712
TransferWithAuthorization typed data with eth_account, which is imported only inside
`recover_signer` (the sandbox is on the MCP server's start-up path). Reasons follow the
x402 v1 spec's spelling (see the rail module's docstring for the full list).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from nonecap_mcp.sandbox.chain import is_address
from nonecap_mcp.x402.networks import NETWORKS, find_network

MIN_VALIDITY_S = 6  # validBefore must leave this long to settle, as the reference verifiers require
_UINT256_MAX = 2**256 - 1
_NONCE = re.compile(r"0x[0-9a-fA-F]{64}")
_SIGNATURE = re.compile(r"0x(?:[0-9a-fA-F]{2})+")

_EIP712_DOMAIN = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
_TRANSFER_WITH_AUTHORIZATION = [
    {"name": "from", "type": "address"},
    {"name": "to", "type": "address"},
    {"name": "value", "type": "uint256"},
    {"name": "validAfter", "type": "uint256"},
    {"name": "validBefore", "type": "uint256"},
    {"name": "nonce", "type": "bytes32"},
]


class PaymentRejected(Exception):
    """Verification failed: `reason` is the x402 error reason sent back in the 402."""

    def __init__(self, reason: str, payment: Payment | None = None) -> None:
        self.reason = reason
        self.payment = payment
        super().__init__(reason)


@dataclass(frozen=True)
class Authorization:
    """The EIP-3009 authorization of a payment, parsed (addresses as sent, nonce lower-case)."""

    payer: str
    pay_to: str
    value: int
    valid_after: int
    valid_before: int
    nonce: str
    signature: str


@dataclass(frozen=True)
class Payment:
    """A decoded X-PAYMENT (v1) or PAYMENT-SIGNATURE (v2) header."""

    version: int
    scheme: object  # v1 only
    network: object  # v1 only
    accepted: object  # v2 only: the accept the client says it paid for
    authorization: Authorization


@dataclass(frozen=True)
class Domain:
    """The EIP-712 domain a signature is checked against."""

    name: str
    version: str
    chain_id: int
    verifying_contract: str


CANONICAL_DOMAIN = Domain(
    NETWORKS["base"].eip712_name, NETWORKS["base"].eip712_version, NETWORKS["base"].chain_id, NETWORKS["base"].asset
)


@dataclass(frozen=True)
class Verified:
    """A payment that passed verification against `accept`, under `domain` on `chain_id`."""

    payment: Payment
    accept: dict[str, Any]
    domain: Domain
    network: str


def decode_payment(header_value: str, version: int) -> Payment:
    """Parse the header (standard or URL-safe base64 of JSON); PaymentRejected when unusable."""
    document = _decode_base64_json(header_value)
    if not isinstance(document, dict):
        raise PaymentRejected("invalid_payload")
    if document.get("x402Version") != version or isinstance(document.get("x402Version"), bool):
        raise PaymentRejected("invalid_x402_version")
    inner = document.get("payload")
    if not isinstance(inner, dict) or not isinstance(inner.get("authorization"), dict):
        raise PaymentRejected("invalid_payload")
    auth, signature = inner["authorization"], inner.get("signature")
    numbers = [_uint256(auth.get(name)) for name in ("value", "validAfter", "validBefore")]
    if (
        not is_address(auth.get("from"))
        or not is_address(auth.get("to"))
        or any(number is None for number in numbers)
        or not isinstance(auth.get("nonce"), str)
        or not _NONCE.fullmatch(auth["nonce"])
        or not isinstance(signature, str)
        or not _SIGNATURE.fullmatch(signature)
    ):
        raise PaymentRejected("invalid_payload")
    value, valid_after, valid_before = (int(number) for number in numbers)  # type: ignore[arg-type]
    authorization = Authorization(
        payer=auth["from"],
        pay_to=auth["to"],
        value=value,
        valid_after=valid_after,
        valid_before=valid_before,
        nonce=auth["nonce"].lower(),
        signature=signature,
    )
    return Payment(version, document.get("scheme"), document.get("network"), document.get("accepted"), authorization)


def verify_payment(payment: Payment, accepts: list[Any], now: int) -> Verified:
    """Match the payment to an offered accept and verify it against that accept.

    v1 matches on scheme and network (as the reference servers do), v2 on deep equality of
    `accepted` with an offered accept. Several candidates: the first that verifies wins,
    else the first one's reason is reported. Balance and nonce are the chain's business.
    """
    offered = [accept for accept in accepts if isinstance(accept, dict)]
    if payment.version == 1:
        candidates = [a for a in offered if a.get("scheme") == payment.scheme and a.get("network") == payment.network]
        if not candidates:
            same_scheme = any(a.get("scheme") == payment.scheme for a in offered)
            raise PaymentRejected("invalid_network" if same_scheme else "invalid_scheme", payment)
    else:
        candidates = [a for a in offered if a == payment.accepted]
        if not candidates:
            raise PaymentRejected("no_matching_payment_requirements", payment)
    first: PaymentRejected | None = None
    for accept in candidates:
        try:
            return _verify_against(payment, accept, now)
        except PaymentRejected as rejected:
            first = first or rejected
    assert first is not None
    raise first


def _verify_against(payment: Payment, accept: dict[str, Any], now: int) -> Verified:
    """The checks of the reference `exact` EVM verifiers, in their order."""
    auth = payment.authorization
    if accept.get("scheme") != "exact":
        raise PaymentRejected("invalid_scheme", payment)
    network_name = accept.get("network")
    network = find_network(network_name) if isinstance(network_name, str) else None
    if network is None or network_name != (network.name if payment.version == 1 else network.caip2):
        raise PaymentRejected("invalid_network", payment)
    extra, asset = accept.get("extra"), accept.get("asset")
    if (
        not isinstance(extra, dict)
        or not isinstance(extra.get("name"), str)
        or not isinstance(extra.get("version"), str)
        or not is_address(asset)
    ):
        raise PaymentRejected("invalid_payment_requirements", payment)
    pay_to = accept.get("payTo")
    if not isinstance(pay_to, str) or auth.pay_to.lower() != pay_to.lower():
        raise PaymentRejected("invalid_exact_evm_payload_recipient_mismatch", payment)
    amount = _uint256(accept.get("maxAmountRequired" if payment.version == 1 else "amount"))
    if amount is None or auth.value != amount:
        raise PaymentRejected("invalid_exact_evm_payload_authorization_value", payment)
    if auth.valid_before < now + MIN_VALIDITY_S:
        raise PaymentRejected("invalid_exact_evm_payload_authorization_valid_before", payment)
    if auth.valid_after > now:
        raise PaymentRejected("invalid_exact_evm_payload_authorization_valid_after", payment)
    domain = Domain(extra["name"], extra["version"], network.chain_id, asset)
    if not signed_by_payer(auth, domain):
        raise PaymentRejected("invalid_exact_evm_payload_signature", payment)
    return Verified(payment, accept, domain, network_name)


def signed_by_payer(auth: Authorization, domain: Domain) -> bool:
    """Whether the signature over (domain, authorization) recovers to `auth.payer`."""
    signer = recover_signer(auth, domain)
    return signer is not None and signer.lower() == auth.payer.lower()


def recover_signer(auth: Authorization, domain: Domain) -> str | None:
    """The address that signed this TransferWithAuthorization under `domain`, or None if unrecoverable."""
    from eth_account import Account
    from eth_account.messages import encode_typed_data
    from eth_utils.address import to_checksum_address

    try:
        full_message = {
            "types": {"EIP712Domain": _EIP712_DOMAIN, "TransferWithAuthorization": _TRANSFER_WITH_AUTHORIZATION},
            "primaryType": "TransferWithAuthorization",
            "domain": {
                "name": domain.name,
                "version": domain.version,
                "chainId": domain.chain_id,
                "verifyingContract": to_checksum_address(domain.verifying_contract),
            },
            "message": {
                "from": to_checksum_address(auth.payer),
                "to": to_checksum_address(auth.pay_to),
                "value": auth.value,
                "validAfter": auth.valid_after,
                "validBefore": auth.valid_before,
                "nonce": bytes.fromhex(auth.nonce[2:]),
            },
        }
        return str(Account.recover_message(encode_typed_data(full_message=full_message), signature=auth.signature))
    except Exception:  # malformed signature (bad length, v, s): it proves nothing
        return None


def _decode_base64_json(value: str) -> Any:
    """Standard or URL-safe base64, padding optional, of JSON; PaymentRejected otherwise."""
    text = value.strip()
    altchars = b"-_" if ("-" in text or "_" in text) else None
    try:
        return json.loads(base64.b64decode(text + "=" * (-len(text) % 4), altchars=altchars, validate=True))
    except (binascii.Error, ValueError, RecursionError):
        raise PaymentRejected("invalid_payload") from None


def _uint256(value: object) -> int | None:
    """A uint256 as the spec sends it (decimal string) or a JSON integer; None otherwise."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 78:
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _UINT256_MAX:
        return value
    return None
