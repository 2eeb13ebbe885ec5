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


def redact(text: str) -> str:
    """Mask API keys, bearer tokens, URL passwords and 32-byte hex keys in `text`."""
    text = _API_KEY.sub(lambda m: f"nc_{m.group(1)}_…{m.group(0)[-4:]}", text)
    text = _URL_PASSWORD.sub(lambda m: f"{m.group('head')}***@", text)
    text = _BEARER.sub(r"\1[redacted]", text)
    return _PRIVATE_KEY.sub("[redacted-hex]", text)


class RedactingFilter(logging.Filter):
    """Logging filter that redacts the fully formatted message of every record it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True
