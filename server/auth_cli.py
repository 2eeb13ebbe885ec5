"""``nonecap-mcp auth login|status|logout``: manage the API key in the OS keyring.

Plain functions returning an exit code, so ``cli.py`` can wire them into
argparse and tests can drive them with ``StringIO``. Results go to stdout,
prompts, notes and errors to stderr; the full key is never written anywhere.
Exit codes: 0 success, 1 failure, 2 no key given, 130 interrupted.

These commands run in a terminal, never inside the stdio server, so they are
the only place that writes the keyring (a desktop keyring may show an unlock
dialog here, hence the longer :data:`keystore.CLI_TIMEOUT`).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, TextIO

import anyio

from . import keystore
from .cli_io import Console
from .credentials import (
    API_KEY_ENV,
    API_KEY_NAME,
    NO_KEY_MESSAGE,
    CredentialError,
    Secret,
    api_key_from_env,
    check_api_key_format,
    key_mode,
    mask_api_key,
)

if TYPE_CHECKING:
    from .models import Account

__all__ = ["check_key_online", "login", "logout", "status"]

_PROMPT = "NoneCap API key (input is hidden): "


async def check_key_online(key: str, api_base: str) -> Account:
    """``GET /v1/me`` with ``key``: the account it opens, or the API's error (401 for a bad key).

    One retry at most: this runs while a person waits at a terminal.
    """
    from .credits_api import CreditsAPI
    from .retry import RetryPolicy

    async def provide() -> Secret:
        return Secret(key)

    api = CreditsAPI(api_base, provide, retry=RetryPolicy(max_retries=1))
    try:
        return await api.me()
    finally:
        await api.aclose()


def _verified(key: str, console: Console) -> bool:
    """Check the key against the configured API before it is stored; say why not when it fails."""
    from .config import load_settings
    from .errors import NoneCapError

    api_base = "the configured API"
    try:
        api_base = load_settings(console.env).api_base
        account = anyio.run(partial(check_key_online, key, api_base))
    except NoneCapError as exc:
        if exc.code == "unauthorized":
            console.error(f"the API rejected key {mask_api_key(key)} (401 unauthorized: revoked, or mistyped); it was "
                          "not stored. Copy it again from the NoneCap dashboard.")
        else:
            console.error(f"could not check the key with GET {api_base}/v1/me ({exc.code}: {exc.message}); it was not "
                          "stored. Pass --no-verify to store it without checking (offline).")
        return False
    console.note(f"the key works: account {account.id}, {account.credits_balance} credits.")
    return True


def login(
    *,
    from_stdin: bool = False,
    verify: bool = True,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """Ask for the API key and store it in the OS keyring.

    Prompts without echo on a TTY; reads one line from ``stdin`` when
    ``from_stdin`` is set or stdin is not a TTY, so scripts can pipe the key
    in instead of putting it on the command line (where ``ps`` and shell
    history would see it). With ``verify`` (the default) the key is stored only
    after ``GET /v1/me`` accepted it, so a typo is caught here, not mid-task.
    """
    console = Console.of(stdin=stdin, stdout=stdout, stderr=stderr, env=env)
    raw = console.read_secret(_PROMPT, from_stdin=from_stdin, what="API key", command="auth login")
    if isinstance(raw, int):
        return raw

    try:
        key = check_api_key_format(raw)
    except CredentialError as exc:
        console.error(str(exc))
        return 1
    if verify and not _verified(key, console):
        return 1
    try:
        keystore.write_secret(API_KEY_NAME, key, timeout=keystore.CLI_TIMEOUT)
        backend = keystore.backend_name(timeout=keystore.CLI_TIMEOUT)
    except keystore.KeystoreError as exc:
        console.error(f"could not store the API key: {exc} Or set {API_KEY_ENV} in the MCP server's env instead.")
        return 1

    print(f"Stored API key {mask_api_key(key)} in the OS keyring ({backend}).", file=console.stdout)
    console.note_env_override(API_KEY_ENV, mask=mask_api_key)
    bus = console.env.get("DBUS_SESSION_BUS_ADDRESS")
    if bus:
        # Many MCP hosts start servers with an allow-listed environment that
        # drops this variable, and then the server cannot reach the keyring.
        console.note(
            "if your MCP host starts the server without DBUS_SESSION_BUS_ADDRESS, add "
            f'"DBUS_SESSION_BUS_ADDRESS": "{bus}" to the server\'s env, or set '
            f"{API_KEY_ENV} there instead.",
        )
    return 0


def status(
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """Report where the key comes from, masked, with its mode and the keyring
    backend. Exit 0 if a usable key is found, 1 otherwise.

    Describes *this* shell's environment; an MCP host may give the server a
    different one.
    """
    console = Console.of(stdout=stdout, stderr=stderr, env=env)

    try:
        from_env = api_key_from_env(console.env)
    except CredentialError as exc:
        console.error(str(exc))
        return 1

    stored: str | None = None
    keyring_problem: str | None = None
    backend = "unavailable"
    try:
        stored = keystore.read_secret_sync(API_KEY_NAME, timeout=keystore.CLI_TIMEOUT)
        backend = keystore.backend_name(timeout=keystore.CLI_TIMEOUT)
    except keystore.KeystoreError as exc:
        keyring_problem = str(exc)
    if stored is not None and not stored.strip():
        stored = None

    if from_env is not None:
        key = from_env.reveal()
        if keyring_problem:
            keyring_line = f"unavailable ({keyring_problem})"
        elif stored is None:
            keyring_line = f"{backend}, no key stored"
        else:
            keyring_line = f"{backend}, holds {mask_api_key(stored)} (unused while {API_KEY_ENV} is set)"
        print(f"API key: {mask_api_key(key)} ({key_mode(key)} mode)", file=console.stdout)
        print(f"Source:  {API_KEY_ENV} environment variable", file=console.stdout)
        print(f"Keyring: {keyring_line}", file=console.stdout)
        return 0

    if keyring_problem:
        console.error(f"could not read the OS keyring: {keyring_problem} Or set {API_KEY_ENV} instead.")
        return 1
    if stored is None:
        print(f"API key: none (checked {API_KEY_ENV} and the OS keyring: {backend})", file=console.stdout)
        console.error(NO_KEY_MESSAGE)
        return 1
    try:
        key = check_api_key_format(stored, source="the OS keyring")
    except CredentialError as exc:
        console.error(f"{exc} Run `nonecap-mcp auth login` to replace it.")
        return 1
    print(f"API key: {mask_api_key(key)} ({key_mode(key)} mode)", file=console.stdout)
    print(f"Source:  OS keyring ({backend})", file=console.stdout)
    return 0


def logout(
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """Remove the key from the OS keyring (exit 0 even if none was stored),
    and point out a key in the environment that would still be used."""
    console = Console.of(stdout=stdout, stderr=stderr, env=env)

    try:
        removed = keystore.delete_secret(API_KEY_NAME, timeout=keystore.CLI_TIMEOUT)
        backend = keystore.backend_name(timeout=keystore.CLI_TIMEOUT)
    except keystore.KeystoreError as exc:
        console.error(f"could not remove the API key from the OS keyring: {exc}")
        return 1

    if removed:
        print(f"Removed the API key from the OS keyring ({backend}).", file=console.stdout)
    else:
        print(f"No API key was stored in the OS keyring ({backend}); nothing to remove.", file=console.stdout)
    console.note_env_override(API_KEY_ENV, mask=mask_api_key, removed=True)
    return 0
