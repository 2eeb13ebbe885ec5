"""The operator's x402 limits, apart from the checks of a 402 against them (`policy`).

Every start-up validates the configured limits (`config.Settings`); that needs the network
table and exact USD amounts, not the parsing and checking of payment requirements (nor the
guidance tables their refusals carry), which load with the x402 rail at its first use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeGuard

from .networks import NETWORKS, usd_to_atomic

_ZERO_ADDRESS = "0x" + "0" * 40
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


@dataclass(frozen=True)
class SpendPolicy:
    """The operator's limits; the tool arguments of an agent can never widen them."""

    network: str = "base"
    max_price_usd: Decimal = Decimal("0.05")
    daily_budget_usd: Decimal = Decimal("1.00")
    pinned_pay_to: str | None = None
    max_timeout_seconds: int = 300
    confirm_above_usd: Decimal = Decimal("0.02")

    def __post_init__(self) -> None:
        """Reject a policy that could not be enforced exactly, at configuration time."""
        if self.network not in NETWORKS:
            raise ValueError(f"unknown x402 network {self.network!r}; expected one of {sorted(NETWORKS)}")
        for name in ("max_price_usd", "daily_budget_usd", "confirm_above_usd"):
            usd_to_atomic(getattr(self, name))  # TypeError for floats, ValueError for sub-atomic or negative
        if self.pinned_pay_to is not None and not is_payable_address(self.pinned_pay_to):
            raise ValueError("pinned_pay_to must be a non-zero 0x-prefixed 20-byte address")
        if not is_int(self.max_timeout_seconds) or self.max_timeout_seconds <= 0:
            raise ValueError("max_timeout_seconds must be a positive integer")


def is_int(value: Any) -> TypeGuard[int]:
    """A real int (JSON ``true`` is a bool, which Python counts as an int)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_payable_address(value: str) -> bool:
    """0x + 40 hex and not the zero/burn address."""
    return bool(_ADDRESS.match(value)) and value.lower() != _ZERO_ADDRESS
