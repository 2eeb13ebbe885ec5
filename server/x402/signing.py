"""Sign an x402 ``exact`` payment (EIP-3009 TransferWithAuthorization) and read receipts.

This is the one place a wallet key turns into money, so it is kept small: the EIP-712
domain comes from the canonical network table (a server's ``extra`` only gets as far as
the policy check), each payment gets a fresh random nonce, and :func:`authorize_payment`
is the only entry point that should be used with a 402 from the network: it runs the
policy first, so a refused 402 never reaches the key. eth_account is imported lazily
so that server start-up does not pay for it.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from nonecap_mcp.credentials import Secret

from .networks import find_network
from .policy import (
    PaymentRequired,
    PaymentRequirement,
    PolicyViolation,
    SpendPolicy,
    choose_requirement,
    decode_base64_json,
)

__all__ = [
    "PAYMENT_HEADER_V1",
    "PAYMENT_HEADER_V2",
    "Receipt",
    "SignedPayment",
    "authorize_payment",
    "decode_receipt",
    "sign_payment",
]

PAYMENT_HEADER_V1 = "X-PAYMENT"
PAYMENT_HEADER_V2 = "PAYMENT-SIGNATURE"
# validAfter sits in the past so a little clock skew between us and the chain cannot make
# the authorization "not yet valid" (x402-foundation/x402#99); the reference v1 clients
# and both reference verifiers agree on now - 600.
VALID_AFTER_SKEW_SECONDS = 600

_TRANSFER_WITH_AUTHORIZATION_TYPES = {
    "TransferWithAuthorization": [
        {"name": "from", "type": "address"},
        {"name": "to", "type": "address"},
        {"name": "value", "type": "uint256"},
        {"name": "validAfter", "type": "uint256"},
        {"name": "validBefore", "type": "uint256"},
        {"name": "nonce", "type": "bytes32"},
    ]
}


@dataclass(frozen=True)
class SignedPayment:
    """A signed authorization, ready to send, plus what the ledger must record about it.

    ``header_value`` is a bearer payment until ``valid_before``: keep it out of reprs
    and logs, and re-send this same value on retry rather than signing again.
    """

    header_name: str  # "X-PAYMENT" (v1) or "PAYMENT-SIGNATURE" (v2)
    header_value: str = field(repr=False)
    nonce: str  # 0x + 64 hex; single-use per payer on chain
    value_atomic: int
    valid_after: int
    valid_before: int
    pay_to: str
    payer: str


@dataclass(frozen=True)
class Receipt:
    """A decoded ``X-PAYMENT-RESPONSE`` / ``PAYMENT-RESPONSE`` settlement receipt."""

    success: bool
    transaction: str | None
    network: str | None
    payer: str | None
    error_reason: str | None


def sign_payment(private_key: Secret, requirement: PaymentRequirement, *, now: int | None = None) -> SignedPayment:
    """Sign ``requirement`` as-is; the caller must have passed it through the policy.

    Prefer :func:`authorize_payment`, which does. ``now`` (unix seconds) is for tests.
    The domain name, version, chain id and verifying contract are the canonical ones for
    the requirement's network, whatever the server put in ``extra``.
    """
    network = find_network(requirement.network)
    if network is None:
        raise PolicyViolation("network", repr(requirement.network), "a network from the canonical USDC table")
    from eth_account import Account
    from eth_utils.address import to_checksum_address

    account = Account.from_key(private_key.reveal())
    now = int(time.time()) if now is None else now
    nonce = os.urandom(32)
    valid_after = now - VALID_AFTER_SKEW_SECONDS
    valid_before = now + requirement.max_timeout_seconds
    pay_to = to_checksum_address(requirement.pay_to)
    message = {
        "from": account.address,
        "to": pay_to,
        "value": requirement.amount_atomic,
        "validAfter": valid_after,
        "validBefore": valid_before,
        "nonce": nonce,
    }
    domain = {
        "name": network.eip712_name,
        "version": network.eip712_version,
        "chainId": network.chain_id,
        "verifyingContract": network.asset,
    }
    signed = account.sign_typed_data(
        domain_data=domain, message_types=_TRANSFER_WITH_AUTHORIZATION_TYPES, message_data=message
    )
    inner = {
        "signature": signed.signature.to_0x_hex(),
        # uint256 fields travel as decimal strings (spec v1 §5.2).
        "authorization": {
            "from": account.address,
            "to": pay_to,
            "value": str(requirement.amount_atomic),
            "validAfter": str(valid_after),
            "validBefore": str(valid_before),
            "nonce": "0x" + nonce.hex(),
        },
    }
    payload: dict[str, Any]
    if requirement.x402_version == 2:
        payload = {"x402Version": 2, "accepted": requirement.raw, "payload": inner}
        if requirement.resource:
            payload["resource"] = {"url": requirement.resource}
            if requirement.description:
                payload["resource"]["description"] = requirement.description
        header_name = PAYMENT_HEADER_V2
    else:
        payload = {"x402Version": 1, "scheme": requirement.scheme, "network": requirement.network, "payload": inner}
        header_name = PAYMENT_HEADER_V1
    return SignedPayment(
        header_name=header_name,
        header_value=base64.b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode(),
        nonce="0x" + nonce.hex(),
        value_atomic=requirement.amount_atomic,
        valid_after=valid_after,
        valid_before=valid_before,
        pay_to=pay_to,
        payer=account.address,
    )


def authorize_payment(
    required: PaymentRequired,
    *,
    policy: SpendPolicy,
    price_usd: Decimal,
    pricing_pay_to: str,
    resource_url: str,
    private_key: Secret,
    before_signing: Callable[[PaymentRequirement], None] | None = None,
) -> SignedPayment:
    """Decide, then sign: the single choke point between a 402 and the wallet key.

    :func:`choose_requirement` raises :class:`PolicyViolation` for a 402 we will not pay,
    and then the key is never even read. ``before_signing`` gets the chosen requirement
    for the checks that need state (the rail's daily-budget pre-check); raising there
    also means nothing is signed. The atomic budget reservation itself happens after
    signing, in the ledger transaction that records the nonce this returns.
    """
    requirement = choose_requirement(
        required, policy=policy, price_usd=price_usd, pricing_pay_to=pricing_pay_to, resource_url=resource_url
    )
    if before_signing is not None:
        before_signing(requirement)
    return sign_payment(private_key, requirement)


def decode_receipt(header_value: str | None) -> Receipt | None:
    """Decode a settlement receipt leniently: only ``success`` is required.

    The rail's own sample is just ``{"transaction": "0x…", "success": true}``, while SDK
    facilitators add ``network``, ``payer`` and ``errorReason``. Absent or undecodable
    headers give None: a receipt is evidence, never a reason to fail a paid solve.
    """
    if not header_value:
        return None
    try:
        document = decode_base64_json(header_value)
    except ValueError:
        return None
    if not isinstance(document, dict) or not isinstance(document.get("success"), bool):
        return None

    def text_field(*names: str) -> str | None:
        value = next((document[name] for name in names if name in document), None)
        return value if isinstance(value, str) and value else None

    return Receipt(
        success=document["success"],
        transaction=text_field("transaction"),
        network=text_field("network"),
        payer=text_field("payer"),
        error_reason=text_field("errorReason", "error_reason"),
    )
