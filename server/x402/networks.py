"""The USDC deployments this client will pay on, and exact USD <-> atomic-unit conversion.

The table is pinned in code on purpose: the EIP-712 domain we sign over and the asset we
accept come from here, never from a 402 response, so a hostile server cannot talk us into
signing for another token, chain or domain. Values follow the reference SDK's
``x402/mechanisms/evm/default_assets.py`` (see /work/shared/notes/x402.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

__all__ = [
    "NETWORKS",
    "USDC_DECIMALS",
    "UsdcNetwork",
    "atomic_to_usd",
    "find_network",
    "usd_to_atomic",
]

USDC_DECIMALS = 6
_MAX_ATOMIC_DIGITS = 78  # a uint256 has 78 decimal digits; nothing larger can be signed


@dataclass(frozen=True)
class UsdcNetwork:
    """One chain's canonical USDC: what we sign for (EIP-712 domain) and where we read balances."""

    name: str  # x402 v1 network name, e.g. "base"
    caip2: str  # x402 v2 network id, e.g. "eip155:8453"
    chain_id: int
    asset: str  # checksummed USDC contract address (EIP-712 verifyingContract)
    eip712_name: str
    eip712_version: str
    decimals: int
    default_rpc_url: str  # public and rate-limited; operators can override it


NETWORKS: dict[str, UsdcNetwork] = {
    "base": UsdcNetwork(
        name="base",
        caip2="eip155:8453",
        chain_id=8453,
        asset="0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
        eip712_name="USD Coin",
        eip712_version="2",
        decimals=USDC_DECIMALS,
        default_rpc_url="https://mainnet.base.org",
    ),
    "base-sepolia": UsdcNetwork(
        name="base-sepolia",
        caip2="eip155:84532",
        chain_id=84532,
        asset="0x036CbD53842c5426634e7929541eC2318f3dCF7e",
        eip712_name="USDC",
        eip712_version="2",
        decimals=USDC_DECIMALS,
        default_rpc_url="https://sepolia.base.org",
    ),
}


def find_network(name: str) -> UsdcNetwork | None:
    """The network for a v1 name (``"base"``) or a v2 CAIP-2 id (``"eip155:8453"``), else None.

    Matching is exact: network ids are case-sensitive identifiers, and anything we do not
    recognise verbatim is a network we will not pay on.
    """
    found = NETWORKS.get(name)
    if found is not None:
        return found
    return next((net for net in NETWORKS.values() if net.caip2 == name), None)


def usd_to_atomic(usd: Decimal | str) -> int:
    """Exact USD amount -> USDC atomic units (``"0.012"`` -> ``12000``).

    Floats are refused because binary fractions turn prices into near-misses
    (``0.0045`` is not representable); parse JSON prices with ``parse_float=Decimal`` or
    pass ``Decimal(str(x))``. Amounts finer than one atomic unit, negative or non-finite
    amounts raise ``ValueError`` rather than being rounded, so a limit never silently moves.
    """
    if isinstance(usd, float):
        raise TypeError("USD amounts must be Decimal or str, not float; use Decimal(str(value)).")
    try:
        amount = Decimal(usd)
    except (InvalidOperation, TypeError, ValueError):
        raise ValueError(f"not a USD amount: {usd!r}") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"USD amount must be finite and non-negative, got {usd!r}")
    # Work on the digit tuple: Decimal multiplication would round at the context precision
    # (28 digits) and hide a sub-atomic remainder, and the size is bounded before any int
    # is built, since prices can come from a server ("1e999999999", 5000-digit strings).
    _, digits, exponent = amount.as_tuple()
    shift = int(exponent) + USDC_DECIMALS  # the amount is digits * 10**shift atomic units
    if not any(digits):
        return 0
    if len(digits) + shift > _MAX_ATOMIC_DIGITS:
        raise ValueError(f"USD amount {usd!r} is too large")
    if shift >= 0:
        scaled: int = int("".join(map(str, digits))) * 10**shift
        return scaled
    kept, dropped = digits[:shift], digits[shift:]
    if any(dropped):
        raise ValueError(f"USD amount {usd!r} is finer than one USDC atomic unit (0.000001)")
    return int("".join(map(str, kept)))


def atomic_to_usd(atomic: int) -> Decimal:
    """USDC atomic units -> USD, exact and without exponent notation (``12000`` -> ``0.012``)."""
    # Built from digits, not Decimal arithmetic, so no context precision can round it.
    sign = "-" if atomic < 0 else ""
    whole, fraction = divmod(abs(atomic), 10**USDC_DECIMALS)
    return Decimal(sign + f"{whole}.{fraction:0{USDC_DECIMALS}d}".rstrip("0").rstrip("."))
