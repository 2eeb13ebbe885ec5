"""A pretend Base chain for the x402 rail: USDC balances, EIP-3009 nonces, settlements, JSON-RPC.

Only Base USDC exists on it; every other token (or chain) has a balance of 0 for everyone,
so a payment in anything else can never settle. Balances are integers of atomic units (6
decimals). `POST /rpc` answers the three read calls a wallet client makes: `eth_chainId`,
`eth_call` of `balanceOf(address)` and of `authorizationState(address,bytes32)` on USDC.

The sandbox wallet (`SANDBOX_WALLET_KEY`) is funded with 5.00 USDC at every reset. Its key
is keccak256 of a sentence saying it is not a real wallet: it is public, never fund it.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from dataclasses import dataclass
from decimal import Decimal

from nonecap_mcp.sandbox.errors import ApiError, Response
from nonecap_mcp.sandbox.request import ApiRequest
from nonecap_mcp.x402.networks import NETWORKS, atomic_to_usd, usd_to_atomic

BASE = NETWORKS["base"]
USDC_BASE = BASE.asset
# keccak256(b"nonecap sandbox wallet - not a real wallet, never fund it"): public, worthless.
SANDBOX_WALLET_KEY = "0x4feed95486e7230b04ca3d151f6f6d54da2d30361435003289ba5749880b3182"
SANDBOX_WALLET_ADDRESS = "0x4705d71779513b7A1303F8Abf8902dF38543f50A"
SANDBOX_WALLET_START_USD = Decimal("5.00")

BALANCE_OF = "70a08231"  # balanceOf(address)
AUTHORIZATION_STATE = "e94a0102"  # authorizationState(address,bytes32)
MAX_SETTLEMENTS = 10_000
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_HEX = re.compile(r"0x(?:[0-9a-fA-F]{2})*")


@dataclass(frozen=True)
class Settlement:
    """One settled payment: `value` atomic USDC moved from `payer` to `pay_to` in transaction `tx`."""

    payer: str
    pay_to: str
    nonce: str  # 0x + 64 lower-case hex
    value: int
    tx: str  # transaction hash, 0x + 64 hex, random: there is no real chain
    network: str  # as the payment named it: "base" (v1) or "eip155:8453" (v2)
    task_id: str
    time: float

    @property
    def usd(self) -> Decimal:
        """The amount in USD (USDC), exact."""
        return atomic_to_usd(self.value)


class SettleRefused(Exception):
    """The chain refused a transfer; `reason` is the x402 error reason."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def is_address(value: object) -> bool:
    """0x + 40 hex (any case: the sandbox compares addresses case-insensitively)."""
    return isinstance(value, str) and _ADDRESS.fullmatch(value) is not None


def is_base_usdc(asset: object, chain_id: int | None) -> bool:
    """Whether (asset, chain) is the one token this chain knows."""
    return chain_id == BASE.chain_id and isinstance(asset, str) and asset.lower() == USDC_BASE.lower()


class SandboxChain:
    """Balances, used nonces and settlements behind one lock. Every public method is thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._balances: dict[str, int] = {}
        self._used: set[tuple[str, str]] = set()
        self._settlements: list[Settlement] = []
        self.reset()

    def reset(self) -> None:
        """Only the sandbox wallet holds USDC (5.00); no nonce used, nothing settled."""
        with self._lock:
            self._balances = {SANDBOX_WALLET_ADDRESS.lower(): usd_to_atomic(SANDBOX_WALLET_START_USD)}
            self._used.clear()
            self._settlements.clear()

    # -- reads -------------------------------------------------------------------------

    def balance(self, address: str) -> int:
        """Base USDC of `address` in atomic units (0 for anyone never funded)."""
        with self._lock:
            return self._balances.get(address.lower(), 0)

    def balance_of(self, asset: object, chain_id: int | None, address: str) -> int:
        """Balance of any token: only Base USDC exists here, everything else is 0."""
        return self.balance(address) if is_base_usdc(asset, chain_id) else 0

    def nonce_used(self, payer: str, nonce: str) -> bool:
        """`authorizationState(payer, nonce)`: whether that authorization was already settled."""
        with self._lock:
            return (payer.lower(), nonce.lower()) in self._used

    def settlements(self) -> list[Settlement]:
        """Every settlement, oldest first; a copy."""
        with self._lock:
            return list(self._settlements)

    # -- writes ------------------------------------------------------------------------

    def set_balance(self, address: str, atomic: int) -> None:
        """Make the Base USDC balance of `address` exactly `atomic` units."""
        if not is_address(address):
            raise ValueError("address must be 0x followed by 40 hex digits")
        if isinstance(atomic, bool) or not isinstance(atomic, int) or atomic < 0:
            raise ValueError("balance must be a whole, non-negative number of atomic units")
        with self._lock:
            self._balances[address.lower()] = atomic

    def transfer_with_authorization(
        self,
        *,
        payer: str,
        pay_to: str,
        value: int,
        valid_after: int,
        valid_before: int,
        nonce: str,
        network: str,
        task_id: str,
        now: float | None = None,
    ) -> Settlement:
        """What FiatToken's transferWithAuthorization checks, atomically, then the transfer.

        The signature is checked by the caller (it needs eth_account); here: the validity
        window (`validAfter < now < validBefore`), the nonce unused for this payer, and the
        balance. Raises SettleRefused with the x402 reason, and then nothing changed.
        """
        now = time.time() if now is None else now
        key = (payer.lower(), nonce.lower())
        with self._lock:
            if not now > valid_after:
                raise SettleRefused("invalid_exact_evm_payload_authorization_valid_after")
            if not now < valid_before:
                raise SettleRefused("invalid_exact_evm_payload_authorization_valid_before")
            if key in self._used:
                raise SettleRefused("invalid_exact_evm_nonce_already_used")
            balance = self._balances.get(key[0], 0)
            if balance < value:
                raise SettleRefused("insufficient_funds")
            self._balances[key[0]] = balance - value
            self._balances[pay_to.lower()] = self._balances.get(pay_to.lower(), 0) + value
            self._used.add(key)
            settlement = Settlement(
                payer=payer,
                pay_to=pay_to,
                nonce=nonce.lower(),
                value=value,
                tx="0x" + secrets.token_hex(32),
                network=network,
                task_id=task_id,
                time=now,
            )
            self._settlements.append(settlement)
            del self._settlements[:-MAX_SETTLEMENTS]
            return settlement

    # -- JSON-RPC ----------------------------------------------------------------------

    def handle_rpc(self, request: ApiRequest) -> Response:
        """`POST /rpc`: one JSON-RPC 2.0 call or a batch; errors in the JSON-RPC form, HTTP 200."""
        if request.path != "/rpc":
            raise ApiError("not_found", "No such endpoint.")
        if request.method != "POST":
            raise ApiError("invalid_request", "Use POST for JSON-RPC.", status=405, headers=(("Allow", "POST"),))
        try:
            document = json.loads(request.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return Response(200, _rpc_error(None, -32700, "Parse error"))
        if isinstance(document, list):
            if not document:
                return Response(200, _rpc_error(None, -32600, "Invalid Request: empty batch"))
            return Response(200, [self._call(item) for item in document])  # type: ignore[arg-type]
        return Response(200, self._call(document))

    def _call(self, item: object) -> dict[str, object]:
        """One JSON-RPC call."""
        if not isinstance(item, dict) or item.get("jsonrpc") != "2.0" or not isinstance(item.get("method"), str):
            return _rpc_error(item.get("id") if isinstance(item, dict) else None, -32600, "Invalid Request")
        call_id, method, params = item.get("id"), item["method"], item.get("params", [])
        if method == "eth_chainId":
            return _rpc_result(call_id, hex(BASE.chain_id))
        if method == "net_version":
            return _rpc_result(call_id, str(BASE.chain_id))
        if method != "eth_call":
            return _rpc_error(call_id, -32601, "Method not found (the sandbox chain knows eth_chainId, net_version, eth_call)")
        if not isinstance(params, list) or not params or not isinstance(params[0], dict):
            return _rpc_error(call_id, -32602, "Invalid params: expected [{to, data}, block]")
        call = params[0]
        to, data = call.get("to"), call.get("data", call.get("input"))
        if not is_address(to) or not isinstance(data, str) or not _HEX.fullmatch(data):
            return _rpc_error(call_id, -32602, "Invalid params: `to` must be an address and `data` 0x-hex bytes")
        if to.lower() != USDC_BASE.lower():
            return _rpc_result(call_id, "0x")  # no contract there: an empty return, as a real node gives
        return self._usdc_call(call_id, data[2:].lower())

    def _usdc_call(self, call_id: object, data: str) -> dict[str, object]:
        """balanceOf and authorizationState on the sandbox USDC; anything else reverts."""
        selector, args = data[:8], data[8:]
        if selector == BALANCE_OF and len(args) in (40, 64):
            address = "0x" + args[-40:]
            return _rpc_result(call_id, _word(self.balance(address)))
        if selector == AUTHORIZATION_STATE and len(args) == 128:
            address, nonce = "0x" + args[24:64], "0x" + args[64:]
            return _rpc_result(call_id, _word(int(self.nonce_used(address, nonce))))
        return _rpc_error(call_id, 3, "execution reverted")


def _word(value: int) -> str:
    """An ABI-encoded uint256 / bool return value."""
    return "0x" + value.to_bytes(32, "big").hex()


def _rpc_result(call_id: object, result: object) -> dict[str, object]:
    return {"jsonrpc": "2.0", "id": call_id, "result": result}


def _rpc_error(call_id: object, code: int, message: str) -> dict[str, object]:
    return {"jsonrpc": "2.0", "id": call_id, "error": {"code": code, "message": message}}


def rpc_error_response(error: ApiError) -> Response:
    """An HTTP-level error on /rpc (fault, 404, 405, unreadable body) as a JSON-RPC error body."""
    code = -32005 if error.status == 429 else -32000
    return Response(error.status, _rpc_error(None, code, error.message), error.headers)
