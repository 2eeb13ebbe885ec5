"""``nonecap-mcp wallet create|import|show|remove``: the x402 wallet key in the OS keyring.

Plain functions returning an exit code, like ``auth_cli``: results on stdout (the
address, so scripts can capture it), prompts, notes and errors on stderr. The private
key is never written anywhere but the keyring: not to stdout, not into a message, not
after a validation error. Exit codes: 0 success, 1 failure, 2 nothing given or bad
usage, 130 interrupted.

Losing a funded key loses its USDC, so ``create`` and ``import`` refuse to replace a
stored key unless forced, and ``remove`` says which address it just forgot.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import TextIO

import anyio

from . import keystore
from .cli_io import Console
from .credentials import Secret
from .errors import ConfigurationError, NoneCapError
from .x402.networks import NETWORKS
from .x402.wallet import (
    WALLET_KEY_ENV,
    WALLET_KEY_FILE_ENV,
    WALLET_KEY_NAME,
    address_of,
    check_private_key,
    load_wallet,
    usdc_balance,
)

__all__ = ["create", "import_key", "remove", "show"]

_PROMPT = "Wallet private key, 64 hex digits (input is hidden): "
_NO_WALLET = (
    "No x402 wallet is configured. Run `nonecap-mcp wallet create` for a new one or "
    f"`nonecap-mcp wallet import` for an existing key, or set {WALLET_KEY_ENV}."
)
_BACKUP_HINT = (
    "It is not shown. Back it up before funding the address with USDC on Base: if the keyring "
    "is lost, so is the money (read it yourself with `keyring get nonecap-mcp wallet_private_key`)."
)


def _normalized(stored: str) -> str | None:
    """A stored key in ``check_private_key`` form, ``None`` if malformed."""
    try:
        return check_private_key(stored)
    except ConfigurationError:
        return None


def _describe(stored: str) -> str:
    """The address of a stored key, for messages; never the key."""
    key = _normalized(stored)
    return "a malformed key" if key is None else address_of(Secret(key))


def _read_stored() -> str | None:
    """The keyring's wallet key, ``None`` when absent or blank."""
    stored = keystore.read_secret_sync(WALLET_KEY_NAME, timeout=keystore.CLI_TIMEOUT)
    return stored if stored is not None and stored.strip() else None


def _store(key: str, *, force: bool, console: Console, done: str) -> int:
    """Write ``key`` unless a different key is stored and ``force`` is off, then
    print the address (stdout) and ``done`` plus where the key went (stderr)."""
    address = address_of(Secret(key))
    try:
        stored = _read_stored()
        if stored is not None and _normalized(stored) != key:
            previous = _describe(stored)
            if not force:
                console.error(
                    f"a wallet key is already stored in the OS keyring ({previous}); nothing was changed. "
                    "Replacing it would lose any USDC held there. Move the funds or back up the key, then "
                    "run `nonecap-mcp wallet remove`, or pass --force.",
                )
                return 1
            console.note(f"replacing the previously stored wallet {previous}.")
        if stored is None or stored != key:
            keystore.write_secret(WALLET_KEY_NAME, key, timeout=keystore.CLI_TIMEOUT)
        backend = keystore.backend_name(timeout=keystore.CLI_TIMEOUT)
    except keystore.KeystoreError as exc:
        console.error(f"could not store the wallet key: {exc} Or set {WALLET_KEY_ENV} in the MCP server's env instead.")
        return 1
    print(address, file=console.stdout)
    console.note(f"the private key of {address} is in the OS keyring ({backend}). {done}")
    console.note_env_override(WALLET_KEY_ENV)
    return 0


def create(
    *,
    force: bool = False,
    key_file: str | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """Make a new key (``eth_account``, OS randomness), store it, print its address.

    With ``key_file`` the key goes into a new 0600 file instead of the keyring, for
    machines that have none; the server reads it through ``NONECAP_WALLET_KEY_FILE``.
    """
    from eth_account import Account

    account = Account.create()
    console = Console.of(stdout=stdout, stderr=stderr, env=env)
    if key_file is None:
        return _store(account.key.to_0x_hex(), force=force, console=console, done=_BACKUP_HINT)
    try:
        path = keystore.write_key_file(key_file, account.key.to_0x_hex())
    except keystore.KeystoreError as exc:
        console.error(f"{exc} Nothing was stored.")
        return 1
    print(account.address, file=console.stdout)
    console.note(
        f"the private key of {account.address} is in {path} (mode 0600, readable only by you); it is not shown. "
        f'Give the server "{WALLET_KEY_FILE_ENV}": "{path}" in its env (`nonecap-mcp install HOST --wallet-key-file '
        f"{path}` does that), and back the file up before funding the address: lose it and the USDC is lost.",
    )
    return 0


def import_key(
    *,
    from_stdin: bool = False,
    force: bool = False,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """Store an existing key: prompted without echo on a TTY, else one line of
    stdin (``from_stdin`` forces that), never from the command line."""
    console = Console.of(stdin=stdin, stdout=stdout, stderr=stderr, env=env)
    raw = console.read_secret(_PROMPT, from_stdin=from_stdin, what="private key", command="wallet import")
    if isinstance(raw, int):
        return raw
    try:
        key = check_private_key(raw)
    except ConfigurationError as exc:
        console.error(f"{exc.message} Nothing was stored.")
        return 1
    return _store(key, force=force, console=console, done="Fund it with USDC on Base to pay for solves.")


def show(
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """Print the wallet's address, where its key comes from, and its USDC balance
    (on NONECAP_X402_NETWORK, through NONECAP_BASE_RPC_URL or the network's public RPC).

    Exit 0 with a balance; 1 when there is no usable wallet, or when the RPC
    fails (the address is still printed, the error goes to stderr).
    """
    from .config import load_settings

    console = Console.of(stdout=stdout, stderr=stderr, env=env)
    try:
        settings = load_settings(console.env)
    except ConfigurationError as exc:
        console.error(exc.message)
        return 2
    chain = NETWORKS[settings.x402_network]

    try:
        wallet = anyio.run(partial(load_wallet, console.env, timeout=keystore.CLI_TIMEOUT))
        if console.env.get(WALLET_KEY_ENV, "").strip():
            source = f"{WALLET_KEY_ENV} environment variable"
        elif console.env.get(WALLET_KEY_FILE_ENV, "").strip():
            source = f"key file {console.env[WALLET_KEY_FILE_ENV].strip()} ({WALLET_KEY_FILE_ENV})"
        else:
            source = f"OS keyring ({keystore.backend_name(timeout=keystore.CLI_TIMEOUT)})"
    except ConfigurationError as exc:
        console.error(exc.message)
        return 1
    except keystore.KeystoreError as exc:
        console.error(f"could not read the OS keyring: {exc}")
        return 1
    if wallet is None:
        print(f"Wallet:  none (checked {WALLET_KEY_ENV}, {WALLET_KEY_FILE_ENV} and the OS keyring)", file=console.stdout)
        console.error(_NO_WALLET)
        return 1

    print(f"Address: {wallet.address}", file=console.stdout)
    print(f"Source:  {source}", file=console.stdout)
    print(f"Network: {chain.name} ({chain.caip2})", file=console.stdout)
    try:
        balance = anyio.run(partial(usdc_balance, wallet.address, rpc_url=settings.rpc_url(), network=chain))
    except NoneCapError as exc:
        print("Balance: unavailable", file=console.stdout)
        console.error(f"could not read the USDC balance: {exc.message}")
        return 1
    print(f"Balance: {balance} USDC", file=console.stdout)
    return 0


def remove(
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """Delete the key from the OS keyring (exit 0 even if none was stored),
    naming the address it belonged to, since its funds now need a backup."""
    console = Console.of(stdout=stdout, stderr=stderr, env=env)

    try:
        stored = _read_stored()
        removed = keystore.delete_secret(WALLET_KEY_NAME, timeout=keystore.CLI_TIMEOUT)
        backend = keystore.backend_name(timeout=keystore.CLI_TIMEOUT)
    except keystore.KeystoreError as exc:
        console.error(f"could not remove the wallet key from the OS keyring: {exc}")
        return 1

    if removed:
        address = _describe(stored) if stored is not None else "(a blank entry)"
        print(f"Removed wallet {address} from the OS keyring ({backend}).", file=console.stdout)
        if stored is not None:
            console.note(f"USDC still held by {address} can now only be spent with a backup of its key.")
    else:
        print(f"No wallet key was stored in the OS keyring ({backend}); nothing to remove.", file=console.stdout)
    console.note_env_override(WALLET_KEY_ENV, removed=True)
    return 0
