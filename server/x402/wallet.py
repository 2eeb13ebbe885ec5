"""The local x402 wallet: where its key comes from, and how much USDC it holds.

The key is resolved like the API key (``credentials.resolve_api_key``):
``NONECAP_WALLET_PRIVATE_KEY`` (what an MCP host's ``env`` block passes) wins, then
the OS keyring entry ``wallet_private_key`` that ``nonecap-mcp wallet create|import``
wrote. It travels as a :class:`Secret` and is revealed only to sign.

``eth_account`` costs about half a second to import, so it is imported inside the
functions that derive an address, never at module import: a server that never pays
must not start slower for it. The balance query encodes ``balanceOf`` by hand for the
same reason.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import anyio.to_thread
import httpx

from nonecap_mcp import guidance as g
from nonecap_mcp import keystore
from nonecap_mcp.credentials import Secret
from nonecap_mcp.config import scaled
from nonecap_mcp.errors import ConfigurationError, InvalidArgumentError, NoneCapError
from nonecap_mcp.http_io import RPC_BODY_LIMIT, Redirected, ResponseTooLarge, exchange, tls_context
from nonecap_mcp.x402.networks import UsdcNetwork, atomic_to_usd

__all__ = [
    "RPC_URL_ENV",
    "WALLET_KEY_ENV",
    "WALLET_KEY_FILE_ENV",
    "WALLET_KEY_NAME",
    "Wallet",
    "address_of",
    "check_private_key",
    "load_wallet",
    "usdc_balance",
    "usdc_call",
]

WALLET_KEY_ENV = "NONECAP_WALLET_PRIVATE_KEY"
WALLET_KEY_FILE_ENV = "NONECAP_WALLET_KEY_FILE"  # a 0600 file holding the key, for machines without a keyring
WALLET_KEY_NAME = "wallet_private_key"  # keyring username under service keystore.SERVICE
RPC_URL_ENV = "NONECAP_BASE_RPC_URL"

# Public RPCs answer in well under a second; a stuck one must not hold a tool call (and
# never past its deadline: see http_io).
RPC_TIMEOUT_SECONDS = scaled(10.0)
BALANCE_OF_SELECTOR = "0x70a08231"  # keccak("balanceOf(address)")[:4]

# Valid secp256k1 private keys are 1 .. n-1.
_SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HEX_KEY = re.compile(r"(0x)?[0-9a-fA-F]{64}")
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_SEED_PHRASE_LENGTHS = {12, 15, 18, 21, 24}

WALLET_GUIDANCE = g.LOCAL["invalid_wallet_key"]
RPC_GUIDANCE = g.LOCAL["rpc_error"]


@dataclass(frozen=True)
class Wallet:
    """The paying account. Its repr shows only the address."""

    address: str  # EIP-55 checksummed
    private_key: Secret = field(repr=False)


def _key_problem(text: str) -> str:
    """Say what is wrong with a would-be key without repeating any of it: a
    malformed key is usually a real key with a copy-paste slip."""
    if text[:1] in {'"', "'"}:
        return "it is wrapped in quotes; remove them"
    if text.startswith(("$", "<")) or "{" in text:
        return "it looks like an unexpanded placeholder, not a key"
    words = text.split()
    if len(words) in _SEED_PHRASE_LENGTHS and all(word.isalpha() for word in words):
        return "it looks like a seed phrase; export that account's private key (64 hex digits) and import that"
    if any(ch.isspace() for ch in text):
        return "it contains whitespace; copy it again without line breaks or spaces"
    if text.startswith("0X"):
        return "it starts with 0X; write the prefix as a lowercase 0x (or leave it out)"
    body = text[2:] if text.startswith("0x") else text
    if not all(ch in "0123456789abcdefABCDEF" for ch in body):
        return "it contains characters other than 0-9 and a-f"
    if len(body) == 40:
        return "it looks like an address (40 hex digits), not a private key"
    if len(body) != 64:
        return f"it has {len(body)} hex digits instead of 64"
    return "it is zero or beyond the secp256k1 curve order, so no account has it"


def check_private_key(value: str, *, source: str | None = None) -> str:
    """The key as ``0x`` + 64 lowercase hex digits, or :class:`ConfigurationError`.

    Accepts the two forms wallets export (with or without ``0x``). ``source``
    names where the key came from so the user knows what to fix. The error
    never contains the value, not even partly.
    """
    text = value.strip()
    if _HEX_KEY.fullmatch(text):
        body = text[-64:].lower()
        if 0 < int(body, 16) < _SECP256K1_ORDER:
            return "0x" + body
    where = f" in {source}" if source else ""
    raise ConfigurationError(
        "invalid_wallet_key",
        f"The x402 wallet private key{where} is malformed: {_key_problem(text)}. "
        "Expected 64 hex digits, optionally prefixed with 0x.",
        guidance=WALLET_GUIDANCE,
    )


def address_of(private_key: Secret) -> str:
    """The checksummed address of a (checked) key; imports eth_account on first use."""
    from eth_account import Account

    return str(Account.from_key(private_key.reveal()).address)


async def load_wallet(env: Mapping[str, str], *, timeout: float = keystore.READ_TIMEOUT) -> Wallet | None:
    """The configured wallet, or ``None`` when neither env nor keyring has a key.

    Raises :class:`ConfigurationError` for a malformed key or an unreadable
    keyring; both messages point at :data:`WALLET_KEY_ENV` as the way around.
    Deriving the address runs in a worker thread, because the first call
    imports eth_account and would otherwise stall the event loop.
    """
    raw = env.get(WALLET_KEY_ENV, "")
    key_file = env.get(WALLET_KEY_FILE_ENV, "").strip()
    if raw.strip():
        key = check_private_key(raw, source=WALLET_KEY_ENV)
    elif key_file:
        try:
            key = check_private_key(keystore.read_key_file(key_file), source=WALLET_KEY_FILE_ENV)
        except keystore.KeystoreError as exc:
            raise ConfigurationError("invalid_wallet_key", f"{WALLET_KEY_FILE_ENV}: {exc}", guidance=WALLET_GUIDANCE) from None
    else:
        try:
            stored = await keystore.read_secret(WALLET_KEY_NAME, timeout=timeout)
        except keystore.KeyringUnavailable as exc:  # nothing could ever be stored here: not configured, not broken
            raise ConfigurationError(
                "keyring_unavailable",
                f"No x402 wallet key is readable here: {exc} Set {WALLET_KEY_ENV} or {WALLET_KEY_FILE_ENV} in the MCP "
                "server's env instead.",
            ) from None
        except keystore.KeystoreError as exc:
            raise ConfigurationError(
                "keyring_error",
                f"Could not read the x402 wallet key from the OS keyring: {exc} "
                f"Set {WALLET_KEY_ENV} in the MCP server's env instead; it takes precedence over the keyring.",
                guidance=WALLET_GUIDANCE,
            ) from None
        if stored is None or not stored.strip():
            return None
        key = check_private_key(stored, source="the OS keyring")
    secret = Secret(key)
    # Pure computation: a call that runs out of time leaves the thread to finish on its own.
    address = await anyio.to_thread.run_sync(address_of, secret, abandon_on_cancel=True)
    return Wallet(address=address, private_key=secret)


def _endpoint(rpc_url: str) -> str:
    """scheme://host[:port] only: provider URLs often carry an API key in the
    path or query, and error messages end up in transcripts."""
    try:
        url = httpx.URL(rpc_url)
    except httpx.InvalidURL:
        return "the configured RPC URL"
    if not url.host:
        return "the configured RPC URL"
    port = f":{url.port}" if url.port else ""
    return f"{url.scheme}://{url.host}{port}"


def _rpc_error(message: str) -> NoneCapError:
    return NoneCapError("rpc_error", message, guidance=RPC_GUIDANCE)


def _word_from(body: Any, status_code: int, where: str, network: UsdcNetwork, what: str) -> int:
    """The uint256 in a JSON-RPC ``eth_call`` answer, checking ``error`` first:
    an error response has no ``result`` and must not read as a zero balance (or an unused nonce)."""
    if isinstance(body, dict) and body.get("error") is not None:
        error = body["error"]
        if isinstance(error, dict):
            detail = f"{error.get('message', '')} (code {error.get('code')})".strip()
        else:
            detail = str(error)
        raise _rpc_error(f"The RPC endpoint {where} returned an error: {detail[:300]}")
    if status_code != 200:
        raise _rpc_error(f"The RPC endpoint {where} answered HTTP {status_code}.")
    result = body.get("result") if isinstance(body, dict) else None
    if result == "0x":
        raise _rpc_error(
            f"The RPC endpoint {where} returned no data for the USDC contract {network.asset}; "
            f"is it an RPC for {network.name} (chain id {network.chain_id})?"
        )
    if not (isinstance(result, str) and re.fullmatch(r"0x[0-9a-fA-F]{64}", result)):
        raise _rpc_error(f"The RPC endpoint {where} answered something that is not a {what} result.")
    return int(result, 16)


async def usdc_balance(
    address: str,
    *,
    rpc_url: str,
    network: UsdcNetwork,
    http: httpx.AsyncClient | None = None,
) -> Decimal:
    """USDC held by ``address`` on ``network``, exact, via ``eth_call balanceOf``.

    Raises ``NoneCapError("rpc_error")`` when the endpoint is unreachable,
    answers with a JSON-RPC error, or answers nonsense; never a guessed 0.
    ``http`` lets a caller reuse its client; otherwise one is made per call.
    """
    if not _ADDRESS.match(address):
        raise InvalidArgumentError("address", "The wallet address must be 0x followed by 40 hex digits.")
    data = BALANCE_OF_SELECTOR + address[2:].lower().rjust(64, "0")
    atomic = await usdc_call(data, "balanceOf", rpc_url=rpc_url, network=network, http=http)
    return atomic_to_usd(atomic)  # USDC has 6 decimals on every network we know


async def usdc_call(
    data: str, what: str, *, rpc_url: str, network: UsdcNetwork, http: httpx.AsyncClient | None = None
) -> int:
    """The uint256 (or bool) a read-only ``eth_call`` of ``data`` on the network's USDC returns.

    ``what`` names the call in errors. Raises ``NoneCapError("rpc_error")`` as :func:`usdc_balance`.
    """
    call = {"to": network.asset, "data": data}
    payload = {"jsonrpc": "2.0", "id": 1, "method": "eth_call", "params": [call, "latest"]}
    where = _endpoint(rpc_url)
    try:
        async with httpx.AsyncClient(verify=tls_context()) if http is None else nullcontext(http) as client:
            response = await exchange(client, "POST", rpc_url, json=payload, seconds=RPC_TIMEOUT_SECONDS, limit=RPC_BODY_LIMIT)
    except (httpx.HTTPError, httpx.InvalidURL, Redirected, ResponseTooLarge) as exc:
        # The exception text can contain the full URL; the type is enough.
        raise _rpc_error(f"Could not reach the RPC endpoint {where} ({type(exc).__name__}).") from None
    try:
        body = response.json()
    except ValueError:
        body = None
    return _word_from(body, response.status_code, where, network, what)
