"""Scrubs secrets out of any text before it can reach a tool result, an error or a log line.

The key material should never get near text in the first place; this is the second
line of defence for text we do not control (upstream messages, exception strings).
"""

from __future__ import annotations

import logging
import re

_API_KEY = re.compile(r"\bnc_(live|test)_[A-Za-z0-9_-]{4,}")
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)[^@\s/]+@")
_PRIVATE_KEY = re.compile(r"\b(0x)?[0-9a-fA-F]{64}\b")
_BEARER = re.compile(r"(?i)(bearer\s+)\S+")
# An x402 X-PAYMENT header is base64 JSON carrying a signed authorization, spendable by
# whoever holds it until it expires; a rail error body may echo it back to us.
_LONG_BASE64 = re.compile(r"[A-Za-z0-9+/]{80,}={0,2}")


def redact(text: str) -> str:
    """Mask API keys, bearer tokens, URL passwords, 32-byte hex keys and long base64 runs in `text`."""
    text = _API_KEY.sub(lambda m: f"nc_{m.group(1)}_…{m.group(0)[-4:]}", text)
    text = _URL_PASSWORD.sub(lambda m: f"{m.group('head')}***@", text)
    text = _BEARER.sub(r"\1[redacted]", text)
    text = _PRIVATE_KEY.sub("[redacted-hex]", text)
    return _LONG_BASE64.sub("[redacted-base64]", text)


class RedactingFormatter(logging.Formatter):
    """Formatter that redacts its whole output: message, exception traceback and stack.

    A filter only sees the message; exception text is formatted later, by the formatter,
    and an exception's message can carry a key just as well as a log message can.
    """

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))
