"""Redaction of text we did not write: tracebacks in logs, echoed payment headers, and every
secret this process knows wherever a hostile upstream echoes it back."""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, unquote

import pytest
from conftest import PROXY_PASSWORD, STATE_DIR, Agent
from mcp import Client

from nonecap_mcp.cli import setup_logging
from nonecap_mcp.config import load_settings
from nonecap_mcp.credentials import Secret
from nonecap_mcp.errors import NoneCapError
from nonecap_mcp.guidance import LOCAL
from nonecap_mcp.redaction import RedactingFormatter, redact, redact_secrets, redact_tree, remember_secret
from nonecap_mcp.sandbox import SANDBOX_API_KEY, SANDBOX_WALLET_KEY
from nonecap_mcp.tools import build_server
from nonecap_mcp.tools.errors import error_text
from nonecap_mcp.x402.client import error_text as x402_error_text

# What an x402 v1 X-PAYMENT header looks like: base64 JSON, a bearer payment until validBefore.
PAYMENT_HEADER = base64.b64encode(json.dumps({
    "x402Version": 1, "scheme": "exact", "network": "base",
    "payload": {
        "signature": "0x" + "5c" * 65,
        "authorization": {"from": "0x" + "11" * 20, "to": "0x" + "22" * 20, "value": "12000",
                          "validAfter": "1767225600", "validBefore": "1767225900", "nonce": "0x" + "ab" * 32},
    },
}, separators=(",", ":")).encode()).decode()


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Let a test install the CLI's logging, then put pytest's back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.NOTSET)


def _fail_with_key() -> None:
    raise RuntimeError(f"upstream rejected {SANDBOX_API_KEY}")


def test_logged_traceback_is_redacted(root_logging: None, capfd: pytest.CaptureFixture[str]) -> None:
    setup_logging("INFO")
    try:
        _fail_with_key()
    except RuntimeError:
        logging.getLogger("nonecap_mcp.test").exception("call failed")
    err = capfd.readouterr().err
    assert "call failed" in err and "Traceback" in err and "RuntimeError: upstream rejected nc_test_…" in err
    assert SANDBOX_API_KEY not in err
    assert logging.getLogger("httpx").level == logging.WARNING  # still pinned: httpx logs full URLs at INFO


def test_formatter_redacts_exception_chain_and_stack() -> None:
    try:
        try:
            raise ValueError(f"X-PAYMENT: {PAYMENT_HEADER}")
        except ValueError as cause:
            raise RuntimeError("key nc_live_" + "K" * 32) from cause
    except RuntimeError as exc:
        record = logging.LogRecord("t", logging.ERROR, __file__, 1, "failed: %s", ("Bearer abc",), (type(exc), exc, exc.__traceback__))
    record.stack_info = f"Stack (most recent call last):\n  header={PAYMENT_HEADER}"
    text = RedactingFormatter().format(record)
    assert "failed: Bearer [redacted]" in text and "The above exception was the direct cause" in text
    assert "K" * 32 not in text and PAYMENT_HEADER not in text and text.count("[redacted-base64]") == 2


@pytest.mark.parametrize("cut", [len(PAYMENT_HEADER), 120])  # rail error bodies are cut at 300 chars
def test_echoed_payment_header_is_redacted_in_error_text(cut: int) -> None:
    body = f'{{"error": "bad payment", "header": "{PAYMENT_HEADER[:cut]}"}}'
    text = error_text(NoneCapError("x402_http_402", f"x402 rail answered 402: {body}"))
    assert PAYMENT_HEADER[:80] not in text and '"header": "[redacted-base64]"' in text


@pytest.mark.parametrize("text", [
    "solve sol_01HZX3F8Q2W9V6T4N7K5M1P0RA failed",
    "x402_01HZX3F8Q2W9V6T4N7K5M1P0RA is not in the ledger",
    "https://shop.example/checkout/step/2?session=abc",
    "P1_SANDBOX_" + "Ab9-_x" * 8 + "_NOT_A_REAL_HCAPTCHA_TOKEN",
    "short base64 aGVsbG8gd29ybGQ= stays",
])
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact(text) == text


# -- secrets an upstream echoes back ----------------------------------------------------

# Not in conftest's SECRETS on purpose: these are checked here, in every form they can take.
ODD_PASSWORD = "p@ss/w0rd:#x"  # needs percent-encoding in a proxy URL
ODD_PASSWORD_URL = "p%40ss%2Fw0rd%3A%23x"


class EchoingAPI(BaseHTTPRequestHandler):
    """A hostile NoneCap: it puts whatever we sent (the body, the Authorization header)
    into its error messages, error codes and solve errors."""

    def log_message(self, *_args: object) -> None:  # quiet
        pass

    def _json(self, status: int, payload: object) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        sent = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        if self.path == "/rpc":  # the wallet's balance: unavailable, so get_balance answers with notes
            self._json(500, {"error": "down"})
            return
        body = json.loads(sent)
        proxy = body.get("proxy")
        password = proxy.get("password") if isinstance(proxy, dict) else unquote(str(proxy).split(":")[2].split("@")[0])
        if body["sitekey"] == "echo-422":
            self._json(422, {"error": {"code": "validation_error", "message": f"proxy rejected: {sent} ({password})", "param": "proxy"}})
        else:
            self._json(200, {"id": "solve_01ECHO", "object": "solve", "type": "hcaptcha", "status": "failed", "sitekey": body["sitekey"],
                             "url": body["url"], "error": {"code": "proxy_error", "message": f"proxy auth {password} / {sent} refused"},
                             "credits_charged": 0, "created_at": "2026-01-01T00:00:00Z"})

    def do_GET(self) -> None:  # noqa: N802
        auth = self.headers.get("Authorization", "")
        self._json(400, {"error": {"code": f"bad_header[{auth}]", "message": f"we got {auth.split()[-1]}", "param": auth}})


@pytest.fixture
def echoing_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoingAPI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _echoed_forms() -> list[str]:
    return [PROXY_PASSWORD, ODD_PASSWORD, ODD_PASSWORD_URL, json.dumps(ODD_PASSWORD)[1:-1], SANDBOX_API_KEY]


async def _agent_calls(base: str, mode: str, calls: list[tuple[str, dict[str, Any]]], **extra: str) -> list[str]:
    env = {"NONECAP_API_KEY": SANDBOX_API_KEY, "NONECAP_API_BASE": base, "NONECAP_X402_BASE": base, "NONECAP_MAX_RETRIES": "0",
           "NONECAP_STATE_DIR": str(STATE_DIR[-1]), **extra}
    async with Client(build_server(load_settings(env)), mode=mode) as client:
        agent = Agent(client)
        return [json.dumps((await agent.call(name, args)).model_dump(mode="json")) for name, args in calls]


PROXY_FORMS: list[Any] = [
    {"scheme": "http", "host": "proxy.example", "port": 8080, "username": "user", "password": PROXY_PASSWORD},
    {"scheme": "http", "host": "proxy.example", "port": 8080, "username": "user", "password": ODD_PASSWORD},
    f"http://user:{ODD_PASSWORD_URL}@proxy.example:8080",
]


@pytest.mark.anyio
@pytest.mark.parametrize("proxy", PROXY_FORMS, ids=["object", "object-odd", "url-encoded"])
@pytest.mark.parametrize("sitekey", ["echo-422", "echo-failed-solve"])
async def test_an_echoed_proxy_password_never_reaches_a_result_or_a_log(
    echoing_api: str, mode: str, proxy: Any, sitekey: str, caplog: pytest.LogCaptureFixture
) -> None:
    (result,) = await _agent_calls(echoing_api, mode, [("create_solve", {"type": "hcaptcha", "sitekey": sitekey, "url": "https://shop.example/", "proxy": proxy, "wait_seconds": 0})])
    assert "validation_error" in result or "proxy_error" in result  # the upstream's answer did arrive
    assert "[redacted]" in result
    for form in _echoed_forms():
        assert form not in result and form not in caplog.text


@pytest.mark.anyio
async def test_an_upstream_error_code_holding_the_authorization_header_is_masked(
    echoing_api: str, mode: str, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    wallet = {"NONECAP_WALLET_PRIVATE_KEY": SANDBOX_WALLET_KEY, "NONECAP_BASE_RPC_URL": f"{echoing_api}/rpc", "NONECAP_STATE_DIR": str(tmp_path)}
    balance, solve = await _agent_calls(echoing_api, mode, [("get_balance", {}), ("get_solve", {"id": "solve_01ECHO", "wait_seconds": 0})], **wallet)
    notes = json.loads(balance)["structured_content"]["notes"]
    # A "code" that is not an identifier is an echo: it is not repeated at all, only the status.
    assert any(note.startswith("credits: ") and "bad_header" not in note for note in notes), notes
    assert "bad_header" not in solve and "Bearer" not in solve and "http_4" in solve
    for text in (balance, solve, caplog.text):
        assert SANDBOX_API_KEY not in text


def test_known_secrets_are_masked_in_every_form_but_data_is_not() -> None:
    remember_secret(ODD_PASSWORD)
    for form in (ODD_PASSWORD, ODD_PASSWORD_URL, quote_plus(ODD_PASSWORD), json.dumps(ODD_PASSWORD)[1:-1]):
        assert redact_secrets(f"echo: {form}.") == "echo: [redacted]."
    tx = "0x" + "ab" * 32
    token = "P1_" + "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9" * 4
    assert redact_tree({"settlement_tx": tx, "token": token, "n": [1, ODD_PASSWORD]}) == {"settlement_tx": tx, "token": token, "n": [1, "[redacted]"]}
    remember_secret("abc")  # too short to mask everywhere it occurs
    assert redact("abcdef") == "abcdef"


def test_a_secret_wrapped_in_secret_is_known() -> None:
    value = "wallet-or-key-" + "Zq9" * 5
    Secret(value)
    assert value not in redact(f"upstream said {value}") and value not in error_text(NoneCapError("unexpected_response", value))
    assert NoneCapError(f"code-{value}", "x", guidance=LOCAL["unexpected_response"]).code == "code-[redacted]"


def test_rail_failure_text_is_redacted_before_it_is_stored() -> None:
    remember_secret(ODD_PASSWORD)
    assert x402_error_text({"error": f"bad {ODD_PASSWORD}"}, "default") == "bad [redacted]"
