"""Redaction of text we did not write: exception tracebacks in logs and echoed payment headers."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator

import pytest

from nonecap_mcp.cli import setup_logging
from nonecap_mcp.errors import NoneCapError
from nonecap_mcp.redaction import RedactingFormatter, redact
from nonecap_mcp.sandbox import SANDBOX_API_KEY
from nonecap_mcp.tools.errors import error_text

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
