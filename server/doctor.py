"""``nonecap-mcp doctor``: what works, what does not, and how to fix each failure, in seconds.

One line per check (✓ works, ✗ broken, – not set up or for information), each failure with a
``fix:`` line. Exit 0 when every configured rail works, 1 otherwise. It runs in a terminal, but
MCP hosts start servers with a smaller environment (no ``DBUS_*`` on Linux), so the keyring is
also probed from a child process without those variables, as a host would see it.

Nothing here prints a secret: keys are shown masked, probes report only booleans.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from contextlib import ExitStack
from functools import partial
from dataclasses import asdict, dataclass
from decimal import Decimal
from importlib import metadata
from typing import Literal, TextIO

import anyio
import anyio.to_thread

from nonecap_mcp import __version__, keystore
from nonecap_mcp.config import LEDGER_FILE, Settings, load_settings
from nonecap_mcp.credentials import (
    API_KEY_ENV,
    API_KEY_NAME,
    CredentialError,
    api_key_from_env,
    check_api_key_format,
    key_mode,
    mask_api_key,
)
from nonecap_mcp.errors import ConfigurationError, NoneCapError
from nonecap_mcp.store import DATABASE_URL_ENV, database_for, store_for
from nonecap_mcp.store.db import store_errors
from nonecap_mcp.x402.ledger import open_ledger

__all__ = ["Check", "run_doctor"]

Status = Literal["ok", "fail", "info"]
SYMBOLS = {"ok": "✓", "fail": "✗", "info": "–"}
ASCII_SYMBOLS = {"ok": "[ok]", "fail": "[FAIL]", "info": "[--]"}
PACKAGES = ("mcp", "httpx", "pydantic", "keyring", "eth-account")
PROBE_TIMEOUT = 15.0
# Run in a child without DBUS_*: what a host-started server would find. Prints booleans only.
KEYRING_PROBE = (
    "import json; from nonecap_mcp import keystore as k\n"
    "try:\n"
    "    found = {n: bool((k.read_secret_sync(n) or '').strip()) for n in ('api_key', 'wallet_private_key')}\n"
    "    print(json.dumps({'backend': k.backend_name(), **found}))\n"
    "except k.KeystoreError as e:\n"
    "    print(json.dumps({'error': str(e)}))\n"
)


@dataclass
class Check:
    """One line of the report; `counts` says whether its failure makes the exit code 1."""

    name: str
    status: Status
    detail: str
    fix: str | None = None
    counts: bool = True


def _versions() -> Check:
    found, missing = [], []
    for package in PACKAGES:
        try:
            found.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            missing.append(package)
    detail = f"Python {platform.python_version()}, nonecap-mcp {__version__}, " + ", ".join(found)
    if missing or sys.version_info < (3, 11):
        return Check("python", "fail", detail + (f"; missing {', '.join(missing)}" if missing else ""),
                     "Reinstall into Python 3.11+: `pip install --force-reinstall nonecap-mcp`.")
    return Check("python", "ok", detail)


def _keyring_here() -> tuple[str | None, str | None, dict[str, bool]]:
    """(backend, problem, which secrets it holds) as this terminal sees it."""
    try:
        backend = keystore.backend_name(timeout=5)
        held = {n: bool((keystore.read_secret_sync(n, timeout=5) or "").strip()) for n in (API_KEY_NAME, "wallet_private_key")}
        return backend, None, held
    except keystore.KeystoreError as exc:
        return None, str(exc), {}


def _keyring_from_host(env: Mapping[str, str]) -> dict[str, object]:
    """The keyring probe in a child with every DBUS_* variable removed, time-bounded."""
    child = {k: v for k, v in env.items() if not k.startswith("DBUS_")}
    try:
        result = subprocess.run([sys.executable, "-c", KEYRING_PROBE], env=child, capture_output=True, text=True,
                                timeout=PROBE_TIMEOUT, check=False)
        return json.loads(result.stdout.strip().splitlines()[-1])
    except subprocess.TimeoutExpired:
        return {"error": f"no answer within {PROBE_TIMEOUT:g} s"}
    except (ValueError, IndexError):
        return {"error": "the probe did not report (is nonecap-mcp importable by this Python?)"}


def _keyring(env: Mapping[str, str]) -> Check:
    backend, problem, held = _keyring_here()
    host = _keyring_from_host(env)
    if backend is None:
        return Check("keyring", "info", f"none usable here ({problem})",
                     "Secrets then come from the server's env: NONECAP_API_KEY, NONECAP_WALLET_PRIVATE_KEY or "
                     "NONECAP_WALLET_KEY_FILE (`wallet create --key-file`).", counts=False)
    needed = [name for name, there in held.items() if there]
    in_env = {API_KEY_NAME: bool(env.get(API_KEY_ENV, "").strip()),
              "wallet_private_key": bool(env.get("NONECAP_WALLET_PRIVATE_KEY", "").strip() or env.get("NONECAP_WALLET_KEY_FILE", "").strip())}
    if "error" not in host:
        return Check("keyring", "ok", f"{backend}; reachable from a host-like environment (no DBUS_*)")
    stranded = [name for name in needed if not in_env[name]]
    detail = f"{backend} here, but not reachable without DBUS_* as hosts start servers ({host['error']})"
    if not stranded:
        return Check("keyring", "info", detail, counts=False)
    bus = env.get("DBUS_SESSION_BUS_ADDRESS", "")
    return Check("keyring", "fail", detail + f"; a host-started server cannot read the stored {' and '.join(stranded)}",
                 f'Add "DBUS_SESSION_BUS_ADDRESS": "{bus}" to the server\'s env in the host config, or set '
                 "NONECAP_API_KEY / NONECAP_WALLET_KEY_FILE there instead (`install HOST --wallet-key-file PATH`).")


async def _api_key(settings: Settings) -> tuple[Check, bool]:
    """The key's source and format, then GET /v1/me. Second value: whether credits is configured."""
    from nonecap_mcp.auth_cli import check_key_online

    try:
        from_env = api_key_from_env(settings.env)
        if from_env is not None:
            key, source = from_env.reveal(), API_KEY_ENV
        else:
            stored = keystore.read_secret_sync(API_KEY_NAME, timeout=5)
            if stored is None or not stored.strip():
                return Check("api key", "info", "not configured: the credits rail is off",
                             "`nonecap-mcp auth login` (or NONECAP_API_KEY in the server's env) to use credits.", counts=False), False
            key, source = check_api_key_format(stored, source="the OS keyring"), "OS keyring"
    except CredentialError as exc:
        return Check("api key", "fail", str(exc), "`nonecap-mcp auth login` with the key from the dashboard."), True
    except keystore.KeystoreError as exc:
        return Check("api key", "info", f"not in {API_KEY_ENV}, and the keyring is unreadable ({exc})",
                     "`nonecap-mcp auth login`, or NONECAP_API_KEY in the server's env.", counts=False), False
    label = f"{mask_api_key(key)} ({key_mode(key)} mode, from {source})"
    try:
        account = await check_key_online(key, settings.api_base)
    except NoneCapError as exc:
        fix = ("`nonecap-mcp auth login` with a current key from the dashboard." if exc.code == "unauthorized"
               else f"Check the network and NONECAP_API_BASE ({settings.api_base}).")
        return Check("api key", "fail", f"{label}: GET /v1/me failed ({exc.code}: {exc.message})", fix), True
    if not account.credits_balance:
        return Check("api key", "fail", f"{label}: valid, 0 credits", "Top up at https://dashboard.nonecap.com/billing."), True
    return Check("api key", "ok", f"{label}: valid, account {account.id}, {account.credits_balance} credits"), True


async def _wallet(settings: Settings) -> tuple[Check, bool]:
    from nonecap_mcp.x402.networks import NETWORKS
    from nonecap_mcp.x402.wallet import load_wallet, usdc_balance

    try:
        wallet = await load_wallet(settings.env, timeout=5)
    except NoneCapError as exc:
        if exc.code == "keyring_unavailable":
            return Check("wallet", "info", "not configured: the x402 rail is off (no keyring here)",
                         "`nonecap-mcp wallet create --key-file PATH` and NONECAP_WALLET_KEY_FILE, to use x402.", counts=False), False
        return Check("wallet", "fail", exc.message, exc.guidance.hint), True
    if wallet is None:
        return Check("wallet", "info", "not configured: the x402 rail is off",
                     "`nonecap-mcp wallet create` (then fund its address with USDC on Base) to use x402.", counts=False), False
    network = NETWORKS[settings.x402_network]
    try:
        usdc = await usdc_balance(wallet.address, rpc_url=settings.rpc_url(), network=network)
    except NoneCapError as exc:
        return Check("wallet", "fail", f"{wallet.address}: balance unavailable ({exc.message})",
                     "Set NONECAP_BASE_RPC_URL to a working RPC for this network."), True
    if usdc <= 0:
        return Check("wallet", "fail", f"{wallet.address} holds 0 USDC on {network.name}",
                     f"Send USDC on {network.name} to {wallet.address}."), True
    return Check("wallet", "ok", f"{wallet.address} holds {usdc} USDC on {network.name}"), True


async def _x402_rail(settings: Settings) -> Check:
    from nonecap_mcp.x402.client import X402Client

    client = X402Client(settings.x402_base)
    try:
        table = await client.pricing()
    except NoneCapError as exc:
        return Check("x402 rail", "fail", f"price table unavailable ({exc.code}: {exc.message})",
                     f"Check the network and NONECAP_X402_BASE ({settings.x402_base}).")
    finally:
        await client.aclose()
    prices = ", ".join(f"{task} ${usd}" for task, usd in sorted(table.prices_usd.items()))
    detail = f"{prices}; payTo {table.pay_to} on {table.network}"
    pin = settings.x402_pay_to
    if pin and pin.lower() != table.pay_to.lower():
        return Check("x402 rail", "fail", f"{detail}, but NONECAP_X402_PAY_TO pins {pin}: every payment would be refused",
                     "Confirm the rail's payTo with NoneCap, then fix or remove NONECAP_X402_PAY_TO.")
    over = [task for task, usd in table.prices_usd.items() if Decimal(usd) > settings.max_price_usd]
    if over:
        return Check("x402 rail", "fail", f"{detail}; above NONECAP_MAX_PRICE_USD ({settings.max_price_usd}): {', '.join(over)}",
                     "Raise NONECAP_MAX_PRICE_USD if you accept that price.")
    return Check("x402 rail", "ok", detail + (" (matches the pin)" if pin else ""))


def _ledger(settings: Settings, configured: bool) -> Check:
    """The state dir must be writable (the ledger records each payment before it is sent), and
    the ledger (its file there, or the shared PostgreSQL) readable, naming unknown outcomes."""
    path = settings.ledger_path()
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".doctor-"):
            pass
    except OSError as exc:
        return Check("state dir", "fail", f"{path.parent} is not writable ({exc.strerror})",
                     "Set NONECAP_STATE_DIR (or --state-dir) to a directory you own.")
    store = store_for(settings, LEDGER_FILE)
    if not store.exists():
        return Check("state dir", "ok", f"{path.parent} writable; no ledger yet (no x402 payment made)")
    where = str(path) if store.url is None else "in the shared store"
    try:
        unknown = sum(p["state"] == "unknown" for p in open_ledger(store).unresolved_payments())
    except (*store_errors(), ConfigurationError) as exc:
        shown = type(exc).__name__ if store.url else str(exc)  # a PostgreSQL error may name the server
        return Check("state dir", "fail", f"ledger {where} unreadable ({shown})", "Move it aside; check the disk."
                     if store.url is None else f"Check {DATABASE_URL_ENV} and that the database is up.")
    if unknown:
        return Check("state dir", "info", f"ledger {where}: {unknown} payment(s) of unknown outcome waiting, counted as spent",
                     "Nothing to do: get_solve on those x402 ids resolves them.", counts=False)
    return Check("state dir", "ok", f"ledger {where} writable; no payment of unknown outcome")


def _store(settings: Settings) -> Check:
    """The shared store (clients, quotas) in use and whether it answers; never its password."""
    where = "the store"
    try:
        db = database_for(settings)
        where = db.describe()
        db.ping()
    except ConfigurationError as exc:  # e.g. PostgreSQL named but its driver not installed: the message says what to do
        return Check("store", "fail", exc.message, f"Check {DATABASE_URL_ENV}.")
    except Exception as exc:  # any failure to open or reach it is what this line reports
        shown = type(exc).__name__ if DATABASE_URL_ENV in settings.env else str(exc)
        return Check("store", "fail", f"{where} unreachable ({shown})", f"Check {DATABASE_URL_ENV} and that the database is up.")
    return Check("store", "ok", f"{where} reachable")


def _hosts(env: Mapping[str, str], counts: bool) -> list[Check]:
    from nonecap_mcp.install import installed_entries

    found, unreadable = installed_entries(env)
    checks = [Check("hosts", "info", f"could not read {line}", counts=False) for line in unreadable]
    for entry in found:
        where = f"{entry.host.title}: \"{entry.name}\" runs {entry.command}"
        if entry.command_exists(env):
            checks.append(Check("hosts", "ok", where))
        else:
            checks.append(Check("hosts", "fail", f"{where}, which does not exist", f"`nonecap-mcp install {entry.host.name}` again "
                                f"(or `uninstall {entry.host.name}`).", counts=counts))
    if not found:
        checks.append(Check("hosts", "info", "installed in no host yet", "`nonecap-mcp install claude-desktop` (or claude-code, "
                            "cursor, vscode, windsurf).", counts=False))
    return checks


def _operator(settings: Settings) -> Check:
    """The operator controls in force, so whoever runs the server sees what agents are held to."""
    sites = settings.site_policy()
    parts = [f"sites: {', '.join(sites.allowed_sites) or 'any'}", f"types: {', '.join(sites.allowed_types) or 'any'}",
             f"credits/day: {settings.daily_credit_budget if settings.daily_credit_budget is not None else 'no limit'}",
             f"solves/min: {settings.max_solves_per_minute or 'no limit'}"]
    fix = None if sites.allowed_sites else "Set NONECAP_ALLOWED_SITES to the sites your agents may solve for."
    return Check("operator", "ok" if sites.allowed_sites else "info", "; ".join(parts), fix, counts=False)


async def collect(settings: Settings, env: Mapping[str, str], *, sandbox: bool) -> list[Check]:
    """Every check, in the order a person would fix them."""
    checks = [_versions()]
    if not sandbox:
        checks.append(await anyio.to_thread.run_sync(_keyring, env))
    api_key, credits = await _api_key(settings)
    wallet, x402 = await _wallet(settings)
    rail = await _x402_rail(settings) if x402 else Check("x402 rail", "info", "not checked: no wallet configured", counts=False)
    checks += [api_key, wallet, rail, _ledger(settings, x402),
               await anyio.to_thread.run_sync(_store, settings), _operator(settings)]
    if not (credits or x402):
        checks.append(Check("rails", "fail", "no payment rail is configured: the tools can only explain that",
                            "`nonecap-mcp auth login` (credits) or `nonecap-mcp wallet create` (x402); "
                            "`nonecap-mcp serve --sandbox` works without either."))
    checks += _hosts(env, counts=not sandbox)
    return checks


def _sandbox_env(stack: ExitStack, base: Mapping[str, str]) -> dict[str, str]:
    """A fresh in-process sandbox and the env a host would give the server for it."""
    from nonecap_mcp.sandbox import SANDBOX_API_KEY, SANDBOX_WALLET_KEY, Sandbox

    sandbox = stack.enter_context(Sandbox())
    state = stack.enter_context(tempfile.TemporaryDirectory(prefix="nonecap-doctor-"))
    return {**{k: v for k, v in base.items() if not k.startswith("NONECAP_")},
            API_KEY_ENV: SANDBOX_API_KEY, "NONECAP_WALLET_PRIVATE_KEY": SANDBOX_WALLET_KEY,
            "NONECAP_API_BASE": sandbox.url, "NONECAP_X402_BASE": sandbox.url,
            "NONECAP_BASE_RPC_URL": f"{sandbox.url}/rpc", "NONECAP_STATE_DIR": state}


def _symbols(out: TextIO) -> dict[str, str]:
    try:
        "".join(SYMBOLS.values()).encode(getattr(out, "encoding", None) or "utf-8")
        return SYMBOLS
    except (UnicodeEncodeError, LookupError):
        return ASCII_SYMBOLS


def report(checks: list[Check], out: TextIO, *, as_json: bool) -> bool:
    """Print the checks; return whether everything that counts is fine."""
    ok = not any(c.status == "fail" and c.counts for c in checks)
    if as_json:
        print(json.dumps({"ok": ok, "checks": [asdict(c) for c in checks]}, indent=2), file=out)
        return ok
    symbols = _symbols(out)
    plain = symbols is ASCII_SYMBOLS

    def say(line: str) -> None:
        # A masked key's "…" would crash an ASCII terminal, as would any other non-ASCII text.
        print(line.replace("…", "...").encode("ascii", "replace").decode() if plain else line, file=out)

    for check in checks:
        say(f"{symbols[check.status]} {check.name}: {check.detail}")
        if check.fix and check.status != "ok":
            say(f"    fix: {check.fix}")
    say("all configured rails work" if ok else "something needs fixing (see fix: above)")
    return ok


def run_doctor(*, sandbox: bool = False, as_json: bool = False, out: TextIO | None = None,
               env: Mapping[str, str] | None = None) -> int:
    """The `doctor` command; exit 0 when every configured rail works, 1 otherwise."""
    out = sys.stdout if out is None else out
    with ExitStack() as stack:
        env = dict(os.environ if env is None else env)
        if sandbox:
            env = _sandbox_env(stack, env)
        try:
            settings = load_settings(env)
        except NoneCapError as exc:
            checks = [_versions(), Check("configuration", "fail", exc.message, "Fix or unset that variable (or flag).")]
        else:
            checks = anyio.run(partial(collect, settings, env, sandbox=sandbox))
    return 0 if report(checks, out, as_json=as_json) else 1
