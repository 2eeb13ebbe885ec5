"""The x402 wallet: key checks, resolution (env, then keyring), USDC balance, wallet CLI.

The balance tests talk JSON-RPC over real HTTP to a small server on 127.0.0.1 started
here. The leak checks matter most: no error, output or message may contain a private key.
"""

from __future__ import annotations

import io
import json
import re
import socket
import stat
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import keyring.backends.fail
import pytest
from child_process import child_env as shared_child_env
from conftest import record
from child_process import run_python
from in_process import run_main
from keyring_backends import KEYRING_FILE_ENV, MemoryKeyring
from mcp import Client

from nonecap_mcp import cli_io, keystore, wallet_cli
from nonecap_mcp.config import load_settings
from nonecap_mcp.credentials import Secret
from nonecap_mcp.errors import ConfigurationError, InvalidArgumentError, NoneCapError
from nonecap_mcp.sandbox import SANDBOX_API_KEY, SANDBOX_WALLET_KEY, Sandbox
from nonecap_mcp.tools import build_server
from nonecap_mcp.x402.networks import NETWORKS
from nonecap_mcp.x402.wallet import (
    RPC_URL_ENV,
    WALLET_KEY_ENV,
    WALLET_KEY_FILE_ENV,
    WALLET_KEY_NAME,
    Wallet,
    check_private_key,
    load_wallet,
    usdc_balance,
)

BASE = NETWORKS["base"]

# Well-known development keys (Hardhat/Anvil accounts #0 and #1) and their addresses.
KEY_A = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
ADDRESS_A = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
KEY_B = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
ADDRESS_B = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
BALANCE_ATOMIC = 12_345_678  # 12.345678 USDC


def assert_no_key(*texts: str, keys: tuple[str, ...] = (KEY_A, KEY_B)) -> None:
    """No key, in any case or prefix form, and no 64-hex-digit run at all."""
    for text in texts:
        assert re.search(r"[0-9a-fA-F]{64}", text) is None, "a 32-byte hex value leaked"
        for key in keys:
            assert key[2:].lower() not in text.lower()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test sees the developer's keyring, wallet key or RPC override."""
    for name in (WALLET_KEY_ENV, RPC_URL_ENV, "PYTHON_KEYRING_BACKEND", KEYRING_FILE_ENV):
        monkeypatch.delenv(name, raising=False)
    yield
    keystore.set_backend(None)


@pytest.fixture
def memory() -> MemoryKeyring:
    backend = MemoryKeyring()
    keystore.set_backend(backend)
    return backend


def stored(memory: MemoryKeyring) -> str | None:
    return memory.get_password(keystore.SERVICE, WALLET_KEY_NAME)


# --- a real JSON-RPC endpoint ---------------------------------------------------------


@dataclass
class Rpc:
    url: str
    requests: list[tuple[str, Any]] = field(default_factory=list)


class _RpcHandler(BaseHTTPRequestHandler):
    """Answers eth_call by the first path segment: /ok, /error, /empty, /http500, /ratelimited."""

    rpc: Rpc

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.rpc.requests.append((self.path, body))
        kind = self.path.strip("/").split("/")[0].split("?")[0]
        status, answer = 200, {"jsonrpc": "2.0", "id": body["id"], "result": "0x" + format(BALANCE_ATOMIC, "064x")}
        if kind == "error":
            answer = {"jsonrpc": "2.0", "id": body["id"], "error": {"code": -32000, "message": "execution reverted"}}
        elif kind == "ratelimited":
            status, answer = 429, {"jsonrpc": "2.0", "id": body["id"], "error": {"code": -32005, "message": "rate limit"}}
        elif kind == "empty":
            answer = {"jsonrpc": "2.0", "id": body["id"], "result": "0x"}
        elif kind == "http500":
            self.send_response(500)
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(b"oops!")
            return
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass


@pytest.fixture(scope="module")
def rpc_server() -> Iterator[Rpc]:
    rpc = Rpc(url="")
    handler = type("Handler", (_RpcHandler,), {"rpc": rpc})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    rpc.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rpc
    server.shutdown()
    server.server_close()


@pytest.fixture
def rpc(rpc_server: Rpc) -> Rpc:
    rpc_server.requests.clear()
    return rpc_server


# --- check_private_key ------------------------------------------------------------------


@pytest.mark.parametrize("given", [KEY_A, KEY_A[2:], KEY_A.upper().replace("0X", "0x"), f"  {KEY_A}\n"])
def test_accepted_key_forms_are_normalized(given: str) -> None:
    assert check_private_key(given) == KEY_A


BAD_KEYS = [
    (KEY_A[:-1], "63 hex digits"),
    (KEY_A + "0", "65 hex digits"),
    (f'"{KEY_A}"', "quotes"),
    (KEY_A[:30] + " " + KEY_A[30:], "whitespace"),
    (KEY_A[:-1] + "g", "other than 0-9"),
    (ADDRESS_A, "looks like an address"),
    ("test " * 11 + "junk", "seed phrase"),
    ("${WALLET_KEY}", "placeholder"),
    ("0x" + "0" * 64, "zero or beyond"),
    ("0x" + "f" * 64, "zero or beyond"),
]


@pytest.mark.parametrize(("bad", "hint"), BAD_KEYS)
def test_malformed_keys_are_explained_without_echo(bad: str, hint: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        check_private_key(bad, source=WALLET_KEY_ENV)
    message = caught.value.message
    assert caught.value.code == "invalid_wallet_key" and hint in message and WALLET_KEY_ENV in message
    body = re.sub(r"[^0-9a-fA-F]", "", bad)
    for start in range(0, max(0, len(body) - 8)):
        assert body[start : start + 8] not in message, "part of the key was echoed"


def test_wallet_repr_shows_only_the_address() -> None:
    wallet = Wallet(address=ADDRESS_A, private_key=Secret(KEY_A))
    assert repr(wallet) == f"Wallet(address='{ADDRESS_A}')"
    assert_no_key(repr(wallet), str(wallet), f"{wallet}")


# --- load_wallet -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_env_key_wins_over_the_keyring(memory: MemoryKeyring) -> None:
    memory.set_password(keystore.SERVICE, WALLET_KEY_NAME, KEY_B)
    wallet = await load_wallet({WALLET_KEY_ENV: KEY_A[2:]})
    assert wallet is not None and wallet.address == ADDRESS_A
    assert wallet.private_key.reveal() == KEY_A


@pytest.mark.anyio
async def test_keyring_key_is_used_when_env_is_blank(memory: MemoryKeyring) -> None:
    memory.set_password(keystore.SERVICE, WALLET_KEY_NAME, KEY_B)
    wallet = await load_wallet({WALLET_KEY_ENV: "  "})
    assert wallet is not None and wallet.address == ADDRESS_B


@pytest.mark.anyio
async def test_no_wallet_anywhere_is_none(memory: MemoryKeyring) -> None:
    assert await load_wallet({}) is None


@pytest.mark.anyio
async def test_malformed_keys_fail_with_their_source(memory: MemoryKeyring) -> None:
    with pytest.raises(ConfigurationError, match=WALLET_KEY_ENV) as from_env:
        await load_wallet({WALLET_KEY_ENV: KEY_A[:-2]})
    memory.set_password(keystore.SERVICE, WALLET_KEY_NAME, KEY_B + "zz")
    with pytest.raises(ConfigurationError, match="the OS keyring") as from_keyring:
        await load_wallet({})
    assert_no_key(from_env.value.message, from_keyring.value.message, repr(from_env.value))


@pytest.mark.anyio
async def test_unusable_keyring_points_at_the_env_var() -> None:
    keystore.set_backend(keyring.backends.fail.Keyring())
    with pytest.raises(ConfigurationError) as caught:
        await load_wallet({})
    assert caught.value.code == "keyring_unavailable"  # nothing can be stored here: not configured, not broken
    message = caught.value.message
    assert "No usable OS keyring" in message and WALLET_KEY_ENV in message and WALLET_KEY_FILE_ENV in message


# --- usdc_balance ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_balance_is_read_with_eth_call_balance_of(rpc: Rpc) -> None:
    from eth_abi import encode
    from eth_utils import keccak

    balance = await usdc_balance(ADDRESS_A, rpc_url=rpc.url + "/ok", network=BASE)
    assert balance == Decimal("12.345678") and str(balance) == "12.345678"
    [(path, request)] = rpc.requests
    expected_data = "0x" + (keccak(text="balanceOf(address)")[:4] + encode(["address"], [ADDRESS_A])).hex()
    assert path == "/ok"
    assert request["method"] == "eth_call" and request["jsonrpc"] == "2.0"
    assert request["params"] == [{"to": BASE.asset, "data": expected_data}, "latest"]


@pytest.mark.anyio
async def test_balance_can_reuse_the_callers_client(rpc: Rpc) -> None:
    async with httpx.AsyncClient() as http:
        assert await usdc_balance(ADDRESS_B, rpc_url=rpc.url + "/ok", network=BASE, http=http) == Decimal("12.345678")
    assert rpc.requests[0][1]["params"][0]["data"].endswith(ADDRESS_B[2:].lower())


SECRET_PATH = "/v2/sk-provider-secret?apikey=qwerty123"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("error", "returned an error: execution reverted (code -32000)"),
        ("ratelimited", "returned an error: rate limit (code -32005)"),
        ("empty", "returned no data for the USDC contract"),
        ("http500", "answered HTTP 500"),
    ],
)
async def test_rpc_failures_are_errors_not_zero_balances(rpc: Rpc, kind: str, says: str) -> None:
    with pytest.raises(NoneCapError) as caught:
        await usdc_balance(ADDRESS_A, rpc_url=f"{rpc.url}/{kind}{SECRET_PATH}", network=BASE)
    error = caught.value
    assert error.code == "rpc_error" and says in error.message
    assert rpc.url in error.message  # where it went, for the user ...
    assert "sk-provider-secret" not in error.message and "qwerty123" not in error.message  # ... but not the URL's key
    assert error.guidance.retryable and RPC_URL_ENV in error.guidance.hint


@pytest.mark.anyio
async def test_unreachable_rpc(rpc: Rpc) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(NoneCapError, match="Could not reach the RPC endpoint http://127.0.0.1") as caught:
        await usdc_balance(ADDRESS_A, rpc_url=f"http://127.0.0.1:{port}{SECRET_PATH}", network=BASE)
    assert caught.value.code == "rpc_error" and "sk-provider-secret" not in caught.value.message


@pytest.mark.anyio
async def test_bad_address_is_refused_before_any_request(rpc: Rpc) -> None:
    with pytest.raises(InvalidArgumentError):
        await usdc_balance(ADDRESS_A[:-1], rpc_url=rpc.url + "/ok", network=BASE)
    assert rpc.requests == []


def test_rpc_url_is_a_setting_from_env_or_flag_else_the_network_table() -> None:
    assert load_settings({}).rpc_url() == "https://mainnet.base.org"
    assert load_settings({RPC_URL_ENV: " "}).rpc_url() == "https://mainnet.base.org"
    assert load_settings({RPC_URL_ENV: "https://rpc.example/x"}).rpc_url() == "https://rpc.example/x"
    assert load_settings({RPC_URL_ENV: "https://rpc.example/x"}, base_rpc_url="https://b.example").rpc_url() == "https://b.example"
    for bad in ("http://rpc.example/x", "https://user:pw@rpc.example/", "rpc.example"):
        with pytest.raises(ConfigurationError, match=RPC_URL_ENV):
            load_settings({RPC_URL_ENV: bad})


# --- wallet CLI, in process ----------------------------------------------------------------


class TtyInput(io.StringIO):
    def isatty(self) -> bool:
        return True


def run_cli(fn: Any, *, env: dict[str, str] | None = None, **kwargs: Any) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    code = fn(stdout=stdout, stderr=stderr, env={} if env is None else env, **kwargs)
    return code, stdout.getvalue(), stderr.getvalue()


def derive(key: str) -> str:
    from eth_account import Account

    return str(Account.from_key(key).address)


def test_create_prints_only_the_address_and_keeps_the_key_in_the_keyring(memory: MemoryKeyring) -> None:
    code, out, err = run_cli(wallet_cli.create)
    assert code == 0, err
    key = stored(memory)
    assert key is not None and check_private_key(key) == key
    assert out == derive(key) + "\n"
    assert "keyring backends MemoryKeyring" in err and "not shown" in err
    assert_no_key(out, err, keys=(key,))


def test_create_refuses_to_replace_a_key_unless_forced(memory: MemoryKeyring) -> None:
    memory.set_password(keystore.SERVICE, WALLET_KEY_NAME, KEY_A)
    code, out, err = run_cli(wallet_cli.create)
    assert code == 1 and out == ""
    assert ADDRESS_A in err and "--force" in err and "nothing was changed" in err
    assert stored(memory) == KEY_A

    code, out, err = run_cli(wallet_cli.create, force=True)
    new_key = stored(memory)
    assert code == 0 and new_key not in (None, KEY_A)
    assert f"replacing the previously stored wallet {ADDRESS_A}" in err
    assert_no_key(out, err, keys=(KEY_A, new_key or ""))


def test_import_from_a_pipe(memory: MemoryKeyring) -> None:
    code, out, err = run_cli(wallet_cli.import_key, stdin=io.StringIO(KEY_A[2:].upper() + "\n"))
    assert code == 0, err
    assert out == ADDRESS_A + "\n" and stored(memory) == KEY_A
    assert_no_key(out, err)
    # The same key again is a no-op, not a conflict.
    assert run_cli(wallet_cli.import_key, stdin=io.StringIO(KEY_A))[0] == 0


def test_import_prompts_without_echo_on_a_tty(memory: MemoryKeyring, monkeypatch: pytest.MonkeyPatch) -> None:
    prompts: list[tuple[str, object]] = []

    def fake_getpass(prompt: str, stream: object = None) -> str:
        prompts.append((prompt, stream))
        return KEY_B

    monkeypatch.setattr(cli_io.getpass, "getpass", fake_getpass)
    stderr = io.StringIO()
    code = wallet_cli.import_key(stdin=TtyInput(), stdout=io.StringIO(), stderr=stderr, env={})
    assert code == 0 and stored(memory) == KEY_B
    assert prompts == [("Wallet private key, 64 hex digits (input is hidden): ", stderr)]


def test_import_over_another_key_needs_force(memory: MemoryKeyring) -> None:
    memory.set_password(keystore.SERVICE, WALLET_KEY_NAME, KEY_A)
    code, out, err = run_cli(wallet_cli.import_key, stdin=io.StringIO(KEY_B))
    assert (code, out, stored(memory)) == (1, "", KEY_A)
    code, out, err = run_cli(wallet_cli.import_key, stdin=io.StringIO(KEY_B), force=True)
    assert (code, out, stored(memory)) == (0, ADDRESS_B + "\n", KEY_B)
    assert_no_key(out, err)


@pytest.mark.parametrize(("bad", "hint"), BAD_KEYS)
def test_import_rejects_malformed_keys_without_echo(memory: MemoryKeyring, bad: str, hint: str) -> None:
    code, out, err = run_cli(wallet_cli.import_key, stdin=io.StringIO(bad + "\n"))
    assert code == 1 and out == "" and stored(memory) is None
    assert hint in err and "Nothing was stored" in err and err.count("\n") == 1
    body = re.sub(r"[^0-9a-fA-F]", "", bad)
    assert all(body[i : i + 8] not in err for i in range(max(0, len(body) - 8)))


def test_import_without_input_or_interrupted(memory: MemoryKeyring, monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = run_cli(wallet_cli.import_key, stdin=io.StringIO(""))
    assert code == 2 and err.startswith("Error: no private key was given")

    def interrupt(prompt: str, stream: object = None) -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_io.getpass, "getpass", interrupt)
    code, out, err = run_cli(wallet_cli.import_key, stdin=TtyInput())
    assert code == 130 and "nothing was stored" in err and stored(memory) is None


def test_show_prints_address_source_and_balance(memory: MemoryKeyring, rpc: Rpc) -> None:
    memory.set_password(keystore.SERVICE, WALLET_KEY_NAME, KEY_A)
    code, out, err = run_cli(wallet_cli.show, env={RPC_URL_ENV: rpc.url + "/ok"})
    assert code == 0, err
    assert out.splitlines() == [
        f"Address: {ADDRESS_A}",
        "Source:  OS keyring (keyring backends MemoryKeyring)",
        "Network: base (eip155:8453)",
        "Balance: 12.345678 USDC",
    ]
    assert err == ""


def test_show_keeps_the_address_when_the_rpc_fails(memory: MemoryKeyring, rpc: Rpc) -> None:
    env = {WALLET_KEY_ENV: KEY_B, RPC_URL_ENV: rpc.url + "/error"}
    code, out, err = run_cli(wallet_cli.show, env=env)
    assert code == 1
    assert f"Address: {ADDRESS_B}" in out and f"Source:  {WALLET_KEY_ENV} environment variable" in out
    assert "Balance: unavailable" in out
    assert err.startswith("Error: could not read the USDC balance") and "execution reverted" in err
    assert_no_key(out, err)


def test_show_without_a_wallet(memory: MemoryKeyring) -> None:
    code, out, err = run_cli(wallet_cli.show)
    assert code == 1 and out.startswith("Wallet:  none") and "wallet create" in err


def test_remove_names_the_forgotten_address(memory: MemoryKeyring) -> None:
    memory.set_password(keystore.SERVICE, WALLET_KEY_NAME, KEY_A)
    code, out, err = run_cli(wallet_cli.remove, env={WALLET_KEY_ENV: KEY_B})
    assert code == 0 and stored(memory) is None
    assert out == f"Removed wallet {ADDRESS_A} from the OS keyring (keyring backends MemoryKeyring).\n"
    assert "backup" in err and f"{WALLET_KEY_ENV} is set" in err
    code, out, _ = run_cli(wallet_cli.remove)
    assert code == 0 and "nothing to remove" in out


def test_keyring_failures_are_one_clean_line() -> None:
    keystore.set_backend(keyring.backends.fail.Keyring())
    for fn, kwargs in ((wallet_cli.create, {}), (wallet_cli.import_key, {"stdin": io.StringIO(KEY_A)}), (wallet_cli.remove, {})):
        code, out, err = run_cli(fn, **kwargs)
        assert code == 1 and out == "" and "No usable OS keyring" in err and err.count("\n") == 1
        assert_no_key(out, err)


# --- separate processes ----------------------------------------------------------------------


def child_env(**extra: str) -> dict[str, str]:
    return shared_child_env((WALLET_KEY_ENV, RPC_URL_ENV), **extra)


def test_cli_round_trip_across_processes(tmp_path: Path) -> None:
    """create, import over it, remove, sharing one keyring file: the import in a process of its own,
    the key piped into its stdin; the create before it and the remove after it in this process, each
    with a keyring detected afresh from that same environment (`in_process.environment`). So the key
    crosses a process boundary both ways. (`wallet create` as its own process: test_cli.)"""
    store = tmp_path / "keyring.json"
    env = child_env(PYTHON_KEYRING_BACKEND="keyring_backends.MemoryKeyring", **{KEYRING_FILE_ENV: str(store)})

    created = run_main(["wallet", "create"], env)
    assert created.returncode == 0, created.stderr
    [generated] = json.loads(store.read_text()).values()
    assert created.stdout == derive(generated) + "\n"

    imported = run_python("import sys; from nonecap_mcp import wallet_cli; sys.exit(wallet_cli.import_key(from_stdin=True, force=True))",
                          env, KEY_A + "\n")
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout == ADDRESS_A + "\n"
    assert list(json.loads(store.read_text()).values()) == [KEY_A]

    removed = run_main(["wallet", "remove"], env)
    assert removed.returncode == 0, removed.stderr
    assert ADDRESS_A in removed.stdout and json.loads(store.read_text()) == {}

    for proc in (created, imported, removed):
        assert_no_key(proc.stdout, proc.stderr, keys=(KEY_A, KEY_B, generated))


# --- a keyring-less machine: the key file, and errors that name every way to configure ----------


def test_create_with_a_key_file_writes_a_private_file_and_prints_only_the_address(memory: MemoryKeyring, tmp_path: Path) -> None:
    path = tmp_path / "keys" / "wallet.key"
    code, out, err = run_cli(wallet_cli.create, key_file=str(path))
    assert code == 0, err
    key = path.read_text().strip()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert out == derive(key) + "\n" and stored(memory) is None  # the keyring is not involved
    assert WALLET_KEY_FILE_ENV in err and "--wallet-key-file" in err
    assert_no_key(out, err, keys=(key,))

    code, out, err = run_cli(wallet_cli.create, key_file=str(path))
    assert code == 1 and "already exists" in err and out == ""
    assert path.read_text().strip() == key  # never overwritten: it may hold a funded key
    code, out, _ = run_cli(wallet_cli.show, env={WALLET_KEY_FILE_ENV: str(path), RPC_URL_ENV: "http://127.0.0.1:9/rpc"})
    assert f"Address: {derive(key)}" in out and f"Source:  key file {path} ({WALLET_KEY_FILE_ENV})" in out


@pytest.mark.anyio
async def test_the_key_file_is_read_through_its_variable_and_must_be_private(tmp_path: Path) -> None:
    path = keystore.write_key_file(tmp_path / "w.key", KEY_A)
    wallet = await load_wallet({WALLET_KEY_FILE_ENV: str(path)})
    assert wallet is not None and wallet.address == ADDRESS_A

    path.chmod(0o640)
    with pytest.raises(ConfigurationError) as caught:
        await load_wallet({WALLET_KEY_FILE_ENV: str(path)})
    assert "mode 640" in caught.value.message and f"chmod 600 {path}" in caught.value.message
    assert caught.value.guidance.action == "configure_payment"
    with pytest.raises(ConfigurationError, match="could not read"):
        await load_wallet({WALLET_KEY_FILE_ENV: str(tmp_path / "absent.key")})
    assert_no_key(caught.value.message, repr(caught.value))


@pytest.fixture
async def keyringless_server(sandbox: Sandbox) -> AsyncIterator[Client]:
    """A server as a host starts it on headless Linux: no keyring reachable, nothing in its env."""
    keystore.set_backend(keyring.backends.fail.Keyring())
    env = {"NONECAP_API_BASE": sandbox.url, "NONECAP_X402_BASE": sandbox.url, RPC_URL_ENV: f"{sandbox.url}/rpc"}
    async with Client(build_server(load_settings(env)), mode="legacy") as client:
        yield client


@pytest.mark.anyio
async def test_without_a_keyring_the_error_names_both_ways_to_configure(keyringless_server: Client) -> None:
    for name, args in (("create_solve", {"type": "hcaptcha", "sitekey": "sandbox-solve-1s", "url": "https://a.example/"}),
                       ("get_balance", {})):
        result = record(await keyringless_server.call_tool(name, args))
        assert result.is_error
        text = result.content[0].text  # type: ignore[union-attr]
        assert "no_payment_method" in text and '"action": "configure_payment"' in text
        for way in ("NONECAP_API_KEY", "nonecap-mcp auth login", "nonecap-mcp wallet create", "NONECAP_WALLET_KEY_FILE",
                    "cannot reach the OS keyring"):
            assert way in text, way
        assert "Could not read the x402 wallet key" not in text


@pytest.mark.anyio
async def test_a_credits_only_balance_carries_no_note_about_x402(sandbox: Sandbox) -> None:
    keystore.set_backend(keyring.backends.fail.Keyring())  # as on a host: the wallet's keyring is out of reach
    env = {"NONECAP_API_KEY": SANDBOX_API_KEY, "NONECAP_API_BASE": sandbox.url, "NONECAP_X402_BASE": sandbox.url}
    async with Client(build_server(load_settings(env)), mode="legacy") as client:
        result = record(await client.call_tool("get_balance", {}))
    assert not result.is_error and result.structured_content is not None
    assert result.structured_content["credits_balance"] == 100 and result.structured_content["notes"] == []


@pytest.mark.anyio
async def test_a_wallet_in_a_key_file_pays_through_the_server(sandbox: Sandbox, tmp_path: Path) -> None:
    path = keystore.write_key_file(tmp_path / "w.key", SANDBOX_WALLET_KEY)
    env = {"NONECAP_WALLET_KEY_FILE": str(path), "NONECAP_X402_BASE": sandbox.url, RPC_URL_ENV: f"{sandbox.url}/rpc",
           "NONECAP_STATE_DIR": str(tmp_path / "state")}
    keystore.set_backend(keyring.backends.fail.Keyring())
    async with Client(build_server(load_settings(env)), mode="legacy") as client:
        solve = record(await client.call_tool("create_solve", {"type": "hcaptcha", "sitekey": "sandbox-solve-100ms",
                                                               "url": "https://a.example/", "wait_seconds": 10}))
        balance = record(await client.call_tool("get_balance", {}))
    assert solve.structured_content is not None and solve.structured_content["status"] == "solved"
    assert solve.structured_content["rail"] == "x402"
    assert balance.structured_content is not None and balance.structured_content["usdc_balance"] == "4.988"
